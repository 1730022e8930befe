package refcloud

import (
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// setRlimits sets the lease's limits on a started process with prlimit(2).
func setRlimits(pid int, req CreateInstance) ([]Enforcement, []string) {
	type rl struct {
		res        int
		name, lim  string
		soft, hard uint64
	}
	list := []rl{
		{unix.RLIMIT_DATA, "RLIMIT_DATA", "memory", req.Limits.Memory, req.Limits.Memory},
		{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", "disk", req.Limits.Disk, req.Limits.Disk},
		{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", "open_files", 4096, 4096},
	}
	if req.Ends != nil {
		if wall := time.Until(*req.Ends); wall > 0 {
			cpu := uint64(req.Limits.VCPU)*uint64(wall/time.Second) + 60
			list = append(list, rl{unix.RLIMIT_CPU, "RLIMIT_CPU", "cpu_time", cpu, cpu + 5})
		}
	}
	var enf []Enforcement
	notes := []string{"rlimits set with prlimit(2) just after the start; no cgroup limits in the reference cloud"}
	for _, l := range list {
		if err := unix.Prlimit(pid, l.res, &unix.Rlimit{Cur: l.soft, Max: l.hard}, nil); err != nil {
			notes = append(notes, fmt.Sprintf("%s not set: %v", l.name, err))
			continue
		}
		enf = append(enf, Enforcement{Limit: l.lim, Mechanism: "rlimit", Control: l.name, Value: strconv.FormatUint(l.soft, 10)})
	}
	return enf, notes
}
