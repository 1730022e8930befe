package procnet

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
)

// procStat is what procnet reads of /proc/<pid>/stat.
type procStat struct {
	state byte // R, S, D, Z, X, ...
	// start is the start time in clock ticks after boot (field 22).
	start uint64
}

// ended reports a process that has ended: a zombie has, only its parent
// has not reaped it yet.
func (s procStat) ended() bool { return s.state == 'Z' || s.state == 'X' || s.state == 'x' }

// parseStat parses /proc/<pid>/stat. The command name in parentheses may
// hold spaces and parentheses itself, so fields are counted from the last
// ')'.
func parseStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')' after the command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 22 in all", pid, len(f))
	}
	start, err := strconv.ParseUint(string(f[22-3]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat field 22: %v", pid, err)
	}
	return procStat{state: f[0][0], start: start}, nil
}

// runs reports whether a command line (NUL-separated, as
// /proc/<pid>/cmdline holds it) runs bin with --home home: bin is one of
// the arguments (the first, or the second under an interpreter) and
// "--home", home follow it. 'ip netns exec <ns>' may stand before it: ip
// runs so until it execs the daemon in place.
func runs(cmdline []byte, bin, home string) bool {
	args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
	if len(args) > 4 && filepath.Base(string(args[0])) == "ip" && string(args[1]) == "netns" && string(args[2]) == "exec" {
		args = args[4:]
	}
	at := -1
	for i, a := range args {
		if i > 1 {
			break
		}
		if string(a) == bin {
			at = i
			break
		}
	}
	if at < 0 {
		return false
	}
	for i := at + 1; i < len(args); i++ {
		a := string(args[i])
		if a == "--home="+home || a == "--home" && i+1 < len(args) && string(args[i+1]) == home {
			return true
		}
	}
	return false
}

// procState is what a recorded PID runs now.
type procState int

const (
	// procGone: no process at that PID, or one that has ended.
	procGone procState = iota
	// procOurs: the node's daemon: the testnet's binary with the node's
	// home, started at the recorded time.
	procOurs
	// procOther: some other process holds the PID now.
	procOther
)

// probe tells what n.PID runs now, with words for people when it is not
// the node's daemon.
func probe(bin string, n Node) (procState, string) {
	if n.PID <= 0 {
		return procGone, "never started"
	}
	st, err := readStat(n.PID)
	if err != nil {
		return procGone, fmt.Sprintf("pid %d has exited", n.PID)
	}
	if st.ended() {
		reap(n.PID)
		return procGone, fmt.Sprintf("pid %d has exited", n.PID)
	}
	if st.start != n.StartTime {
		return procOther, fmt.Sprintf("pid %d was reused: it runs a process started at tick %d, not the node's (tick %d)", n.PID, st.start, n.StartTime)
	}
	cl, err := readCmdline(n.PID)
	if err != nil || len(cl) == 0 {
		// No command line with the node's start time: it is exiting (its
		// memory is gone before it turns zombie). spawn waits out the
		// other such moment, just after exec.
		return procGone, fmt.Sprintf("pid %d has exited", n.PID)
	}
	if !runs(cl, bin, n.Home) {
		shown := string(bytes.ReplaceAll(bytes.TrimRight(cl, "\x00"), []byte{0}, []byte{' '}))
		if len(shown) > 120 {
			shown = shown[:120] + "…"
		}
		return procOther, fmt.Sprintf("pid %d runs %q, not %s --home %s", n.PID, shown, bin, n.Home)
	}
	return procOurs, ""
}
