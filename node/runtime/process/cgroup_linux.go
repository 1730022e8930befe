package process

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spotmesh/spotmesh/node/runtime"
	"golang.org/x/sys/unix"
)

// cgroupControllers are the cgroup v2 controllers the driver sets limits
// with.
var cgroupControllers = []string{"cpu", "memory", "pids"}

// cgroups is where instance cgroups go on this machine, found once by New.
type cgroups struct {
	// base is <mount>/<CgroupParent>/<hash of the state dir>; "" when
	// cgroup v2 is not used.
	base string
	// controllers are those enabled for the cgroups under base.
	controllers map[string]bool
	// note says why cgroups, or some controllers, are not used.
	note string
}

// setupCgroups finds a writable cgroup2 mount, creates the parent cgroups
// and enables the controllers it can in them.
func setupCgroups(cfg Config) cgroups {
	if cfg.Cgroup == "off" {
		return cgroups{note: "cgroup v2 limits disabled by configuration (Cgroup = off)"}
	}
	mounts := []string{cfg.Cgroup}
	if cfg.Cgroup == "auto" {
		mounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}
	}
	mount := ""
	for _, m := range mounts {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			mount = m
			break
		}
	}
	if mount == "" {
		return cgroups{note: fmt.Sprintf("cgroup v2 not available: %s is not a cgroup2 mount (a cgroup v1 machine?); limits are rlimits only", strings.Join(mounts, " nor "))}
	}
	sum := sha256.Sum256([]byte(cfg.Dir))
	base := filepath.Join(mount, cfg.CgroupParent, hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(base, 0o755); err != nil {
		return cgroups{note: fmt.Sprintf("cgroup v2 not usable: create %s: %v; limits are rlimits only", base, err)}
	}
	// Enable the controllers level by level, from the mount down to base
	// (whose subtree_control is what instance cgroups get), one by one so
	// that a missing one does not keep the others off.
	var notes []string
	levels := []string{mount}
	rel, _ := filepath.Rel(mount, base)
	p := mount
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		levels = append(levels, p)
	}
	for _, lvl := range levels {
		avail := readWords(filepath.Join(lvl, "cgroup.controllers"))
		for _, c := range cgroupControllers {
			if !slices.Contains(avail, c) {
				continue
			}
			if slices.Contains(readWords(filepath.Join(lvl, "cgroup.subtree_control")), c) {
				continue
			}
			if err := os.WriteFile(filepath.Join(lvl, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
				notes = append(notes, fmt.Sprintf("enable %s in %s: %v", c, lvl, err))
			}
		}
	}
	enabled := map[string]bool{}
	for _, c := range readWords(filepath.Join(base, "cgroup.subtree_control")) {
		enabled[c] = true
	}
	var missing []string
	for _, c := range cgroupControllers {
		if !enabled[c] {
			missing = append(missing, c)
		}
	}
	note := ""
	if len(missing) > 0 {
		note = fmt.Sprintf("cgroup v2 at %s lacks the %s controller(s) (bound to cgroup v1, or not delegated), so %s not set",
			mount, strings.Join(missing, ", "), limitFiles(missing))
		if len(notes) > 0 {
			note += " (" + strings.Join(notes, "; ") + ")"
		}
	}
	return cgroups{base: base, controllers: enabled, note: note}
}

func limitFiles(controllers []string) string {
	var f []string
	for _, c := range controllers {
		f = append(f, c+".max")
	}
	return strings.Join(f, ", ")
}

func readWords(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// create makes the cgroup of one instance and sets its limits. It returns
// the cgroup's path, the limits set and notes on those that were not.
func (c cgroups) create(leaseID string, lim runtime.Limits, maxPIDs uint64) (string, []runtime.Enforcement, []string) {
	if c.base == "" {
		return "", nil, []string{c.note}
	}
	path := filepath.Join(c.base, leaseID)
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", nil, []string{fmt.Sprintf("cgroup v2 not used: create %s: %v", path, err)}
	}
	var enf []runtime.Enforcement
	var notes []string
	if c.note != "" {
		notes = append(notes, c.note)
	}
	set := func(controller, file, value, limit string) {
		if !c.controllers[controller] {
			return
		}
		if err := os.WriteFile(filepath.Join(path, file), []byte(value), 0); err != nil {
			notes = append(notes, fmt.Sprintf("cgroup %s = %s: %v", file, value, err))
			return
		}
		enf = append(enf, runtime.Enforcement{Limit: limit, Mechanism: "cgroup", Control: file, Value: value})
	}
	const period = 100000
	set("memory", "memory.max", strconv.FormatUint(lim.Memory, 10), runtime.LimitMemory)
	if c.controllers["memory"] {
		_ = os.WriteFile(filepath.Join(path, "memory.swap.max"), []byte("0"), 0) // no swap where swap is accounted
	}
	set("cpu", "cpu.max", fmt.Sprintf("%d %d", uint64(lim.VCPU)*period, period), runtime.LimitVCPU)
	set("pids", "pids.max", strconv.FormatUint(maxPIDs, 10), runtime.LimitPIDs)
	return path, enf, notes
}

// cgroupCPU reads the CPU time of every process that ever ran in a cgroup
// (cpu.stat usage_usec, present without the cpu controller).
func cgroupCPU(path string) (time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join(path, "cpu.stat"))
	if err != nil {
		return 0, false
	}
	_, rest, ok := bytes.Cut(b, []byte("usage_usec "))
	if !ok {
		return 0, false
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	us, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

// cgroupMemory reads a cgroup's peak and current memory (memory.peak needs
// Linux 5.19; current stands in for the peak before it).
func cgroupMemory(path string) (peak, current uint64, ok bool) {
	read := func(f string) (uint64, bool) {
		b, err := os.ReadFile(filepath.Join(path, f))
		if err != nil {
			return 0, false
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return v, err == nil
	}
	current, ok = read("memory.current")
	if !ok {
		return 0, 0, false
	}
	if p, ok := read("memory.peak"); ok {
		return p, current, true
	}
	return current, current, true
}

// cgroupProcs lists the processes in a cgroup.
func cgroupProcs(path string) []int {
	var pids []int
	for _, w := range readWords(filepath.Join(path, "cgroup.procs")) {
		if pid, err := strconv.Atoi(w); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// signalCgroup sends sig to every process in a cgroup; SIGKILL goes
// through cgroup.kill where the kernel has it (5.14), which races with no
// fork.
func signalCgroup(path string, sig syscall.Signal) {
	if path == "" {
		return
	}
	if sig == syscall.SIGKILL && os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	for _, pid := range cgroupProcs(path) {
		_ = syscall.Kill(pid, sig)
	}
}

// removeCgroup removes an instance's cgroup once its processes are gone,
// waiting up to a second for the kernel to let go of killed ones.
func removeCgroup(path string) error {
	if path == "" {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ {
		err = os.Remove(path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return err
		}
		signalCgroup(path, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// cgroupOpen opens a cgroup directory for CLONE_INTO_CGROUP.
func cgroupOpen(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY, 0)
}
