package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/spotmesh/spotmesh/node/runtime"
	"golang.org/x/sys/unix"
)

// rlimit is one resource limit to set in a child.
type rlimit struct {
	resource int
	name     string // RLIMIT_DATA, ...
	limit    string // runtime.Limit…
	value    uint64 // soft limit
	hard     uint64
}

// spawnSpec is one process to start.
type spawnSpec struct {
	path, dir string
	env       []string
	out       *os.File
	cgroup    *os.File // nil: no cgroup
	rlimits   []rlimit
}

// spawned is a started process.
type spawned struct {
	pid   int
	start uint64 // start ticks
	// early says the rlimits were set before the program ran (ptrace
	// stop at exec); false: just after it started.
	early bool
}

// spawn starts a process in its own session and process group, in a
// cgroup if given, with rlimits set before its program runs a single
// instruction: the child stops at exec under ptrace (PTRACE_TRACEME), the
// driver sets the limits with prlimit(2) and detaches. Where ptrace is not
// permitted, the limits are set right after the start instead. The
// process is not waited for here: the driver reaps it with wait4.
func spawn(s spawnSpec) (spawned, error) {
	out, err := spawnOnce(s, true)
	if errors.Is(err, syscall.EPERM) {
		out, err = spawnOnce(s, false)
	}
	return out, err
}

func spawnOnce(s spawnSpec, trace bool) (spawned, error) {
	// The thread that starts a traced child is its tracer: only it may
	// wait for the exec stop and detach.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()

	var cmd *exec.Cmd
	var err error
	// A freshly written executable may be held open for writing by a
	// child of a concurrent fork until that child execs: ETXTBSY. It
	// passes in milliseconds.
	for attempt := 0; attempt < 20; attempt++ {
		cmd = &exec.Cmd{
			Path: s.path, Args: []string{s.path}, Dir: s.dir, Env: s.env,
			Stdout: s.out, Stderr: s.out,
			SysProcAttr: &syscall.SysProcAttr{Setsid: true, Ptrace: trace},
		}
		if s.cgroup != nil {
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = int(s.cgroup.Fd())
		}
		err = cmd.Start()
		if !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
	if err != nil {
		return spawned{}, err
	}
	pid := cmd.Process.Pid
	// The driver reaps with wait4 from now on; Release drops os/exec's
	// handle (its pidfd) without waiting.
	fail := func(err error) (spawned, error) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
		_ = cmd.Process.Release()
		return spawned{}, err
	}
	if trace {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
			return fail(fmt.Errorf("wait for the exec stop of %d: %w", pid, err))
		}
		if !ws.Stopped() {
			_ = cmd.Process.Release()
			return spawned{}, fmt.Errorf("process %d ended at exec (status %v)", pid, ws)
		}
	}
	for _, l := range s.rlimits {
		lim := unix.Rlimit{Cur: l.value, Max: l.hard}
		if err := unix.Prlimit(pid, l.resource, &lim, nil); err != nil {
			return fail(fmt.Errorf("prlimit %s of %d: %w", l.name, pid, err))
		}
	}
	if trace {
		if err := unix.PtraceDetach(pid); err != nil {
			return fail(fmt.Errorf("detach from %d: %w", pid, err))
		}
	}
	_ = cmd.Process.Release()
	st, err := readStat(pid)
	if err != nil {
		// It ended already; the record still needs its start time, which
		// the zombie would have shown: keep 0, which no live process has
		// after boot, so it is never mistaken for another.
		return spawned{pid: pid, early: trace}, nil
	}
	return spawned{pid: pid, start: st.start, early: trace}, nil
}

// rlimitsFor turns a lease's limits into rlimits: memory as RLIMIT_DATA
// (private writable memory: heap, anonymous mappings; unlike RLIMIT_AS it
// does not count the address space that Go or the JVM reserve without
// using), disk as RLIMIT_FSIZE (the largest file written), CPU time as
// RLIMIT_CPU backstop (vCPU × the lease's length + slack: SIGXCPU at the
// soft limit, SIGKILL 5 s of CPU later), and RLIMIT_NOFILE.
func rlimitsFor(lim runtime.Limits, wall time.Duration, slack time.Duration, nofile uint64) []rlimit {
	rl := []rlimit{
		{resource: unix.RLIMIT_DATA, name: "RLIMIT_DATA", limit: runtime.LimitMemory, value: lim.Memory, hard: lim.Memory},
		{resource: unix.RLIMIT_FSIZE, name: "RLIMIT_FSIZE", limit: runtime.LimitDisk, value: lim.Disk, hard: lim.Disk},
		{resource: unix.RLIMIT_NOFILE, name: "RLIMIT_NOFILE", limit: runtime.LimitOpenFiles, value: nofile, hard: nofile},
		{resource: unix.RLIMIT_CORE, name: "RLIMIT_CORE", value: 0, hard: 0},
	}
	if wall > 0 {
		cpu := uint64((time.Duration(lim.VCPU)*wall + slack + time.Second - 1) / time.Second)
		rl = append(rl, rlimit{resource: unix.RLIMIT_CPU, name: "RLIMIT_CPU", limit: runtime.LimitCPUTime, value: cpu, hard: cpu + 5})
	}
	return rl
}

// enforcements reports rlimits as enforced limits.
func enforcements(rl []rlimit) []runtime.Enforcement {
	var out []runtime.Enforcement
	for _, l := range rl {
		if l.limit == "" {
			continue
		}
		out = append(out, runtime.Enforcement{Limit: l.limit, Mechanism: "rlimit", Control: l.name, Value: strconv.FormatUint(l.value, 10)})
	}
	return out
}
