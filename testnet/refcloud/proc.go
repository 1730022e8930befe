package refcloud

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// groupUsage sums the CPU time (utime+stime and that of waited-for
// children) and the peak resident memory (VmHWM) of the live processes of
// the process group pgid, from /proc. USER_HZ is 100 on Linux.
func groupUsage(pgid int) (cpu time.Duration, peak uint64) {
	d, err := os.Open("/proc")
	if err != nil {
		return 0, 0
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 15 || f[0][0] == 'Z' {
			continue
		}
		if g, _ := strconv.Atoi(string(f[2])); g != pgid {
			continue
		}
		var ticks uint64
		for _, k := range []int{11, 12, 13, 14} { // fields 14 to 17
			v, _ := strconv.ParseUint(string(f[k]), 10, 64)
			ticks += v
		}
		cpu += time.Duration(ticks) * 10 * time.Millisecond
		peak += vmHWM(n)
	}
	return cpu, peak
}

func vmHWM(pid string) uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("VmHWM:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
	return kb << 10
}
