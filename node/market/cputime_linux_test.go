package market

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time of the calling OS thread: with the goroutine
// locked to its thread, the difference of two readings is the CPU a
// query took, without the time the thread waited for a core, which a
// busy shared machine adds to wall-clock percentiles.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
