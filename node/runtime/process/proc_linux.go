package process

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of CPU times and start times in
// /proc/<pid>/stat. It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what the driver reads of /proc/<pid>/stat.
type procStat struct {
	pid     int
	state   byte // R, S, D, Z, X, ...
	pgrp    int
	session int
	// cpu is utime+stime+cutime+cstime: the process's CPU time and that of
	// its children it has waited for, in clock ticks.
	cpu uint64
	// start is the start time in clock ticks after boot (field 22): with
	// the PID, it names one process across PID reuse.
	start uint64
	// rss is the resident set in pages.
	rss uint64
}

// gone reports a process that has ended (a zombie is ended, only not yet
// reaped).
func (s procStat) gone() bool { return s.state == 'Z' || s.state == 'X' || s.state == 'x' }

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, b)
}

// parseStat parses the contents of /proc/<pid>/stat. The command name in
// parentheses may hold spaces and parentheses itself, so fields are counted
// from the last ')'.
func parseStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')' after the command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 22", pid, len(f))
	}
	num := func(n int) (uint64, error) {
		v, err := strconv.ParseInt(string(f[n-3]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat field %d: %v", pid, n, err)
		}
		if v < 0 {
			return 0, nil
		}
		return uint64(v), nil
	}
	s := procStat{pid: pid, state: f[0][0]}
	var vals [25]uint64
	for _, n := range []int{5, 6, 14, 15, 16, 17, 22, 24} {
		v, err := num(n)
		if err != nil {
			return procStat{}, err
		}
		vals[n] = v
	}
	s.pgrp, s.session = int(vals[5]), int(vals[6])
	s.cpu = vals[14] + vals[15] + vals[16] + vals[17]
	s.start, s.rss = vals[22], vals[24]
	return s, nil
}

// scanProcs reads the stat of every process on the machine. Processes that
// end during the scan are skipped.
func scanProcs() ([]procStat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]procStat, 0, len(names))
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		s, err := readStat(pid)
		if err != nil {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// groupMembers returns the live processes of the process group pgid that
// started no earlier than its leader (start ticks).
func groupMembers(all []procStat, pgid int, start uint64) []procStat {
	var out []procStat
	for _, s := range all {
		if s.pgrp == pgid && s.start >= start && !s.gone() {
			out = append(out, s)
		}
	}
	return out
}

// vmHWM reads the peak resident set of a process, in bytes; 0 when
// unknown.
func vmHWM(pid int) uint64 { return StatusBytes(pid, "VmHWM") }

// StatusBytes reads a size field of /proc/<pid>/status ("VmRSS", "VmHWM",
// ...), in bytes; 0 when the process or the field is not there.
func StatusBytes(pid int, field string) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("\n"+field+":"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 1 {
		return 0
	}
	kb, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}

// ticks converts clock ticks to a duration.
func ticks(t uint64) time.Duration { return time.Duration(t) * (time.Second / clockTicks) }

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("MemTotal:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 1 {
		return 0
	}
	kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
	return kb << 10
}
