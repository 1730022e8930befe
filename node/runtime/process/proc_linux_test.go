package process

import (
	"os"
	"testing"
)

// TestStatusBytes reads this test process's own /proc status: its resident
// set is there and at most its peak; an unknown field or a process that is
// not there reads as 0.
func TestStatusBytes(t *testing.T) {
	pid := os.Getpid()
	rss, hwm := StatusBytes(pid, "VmRSS"), StatusBytes(pid, "VmHWM")
	if rss == 0 || hwm < rss {
		t.Errorf("VmRSS %d, VmHWM %d: want 0 < VmRSS <= VmHWM", rss, hwm)
	}
	if rss%1024 != 0 {
		t.Errorf("VmRSS %d: want bytes, a multiple of 1 KiB", rss)
	}
	if got := StatusBytes(pid, "RSS"); got != 0 {
		t.Errorf("field RSS (only a suffix of VmRSS) read as %d, want 0", got)
	}
	if got := StatusBytes(pid, "NoSuchField"); got != 0 {
		t.Errorf("an unknown field read as %d, want 0", got)
	}
	if got := StatusBytes(1<<30, "VmRSS"); got != 0 {
		t.Errorf("a process that is not there read as %d, want 0", got)
	}
}
