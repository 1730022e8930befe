package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// crashChildEnv, when set to a directory, makes the test binary run
// crashChild instead of the tests (see TestMain).
const crashChildEnv = "SPOTMESH_STORE_CRASH_CHILD"

// crashOptions make badger rotate its memtable WAL and value-log files
// often, so that acknowledged commits sit in rotated-out files when the
// process dies.
func crashOptions(dir string) Options {
	o := DefaultOptions(dir)
	o.MemTableSize = 1 << 20
	o.ValueLogFileSize = 1 << 20
	o.GCInterval = 0
	return o
}

// crashValue is the value of key; every 7th is big enough for the value log.
func crashValue(key string, i int) []byte {
	if i%7 == 0 {
		return bytes.Repeat([]byte(key+";"), (40<<10)/(len(key)+1))
	}
	return []byte("v=" + key)
}

// crashChild writes durably from 8 goroutines forever and prints each key
// once its Update has returned; the parent kills it with SIGKILL.
func crashChild(dir string) {
	db, err := Open(crashOptions(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("crash/%d/%d", w, i)
				err := db.Update(func(tx *Txn) error {
					if err := tx.Set([]byte(key), crashValue(key, i)); err != nil {
						return err
					}
					// Soft writes in between must not break recovery.
					return nil
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, "crash child:", err)
					os.Exit(3)
				}
				if i%5 == 0 {
					_ = db.UpdateSoft(func(tx *Txn) error {
						return tx.Set([]byte("soft/"+key), []byte("s"))
					})
				}
				out.Lock()
				// One write per line: a line in the pipe is a whole ack.
				fmt.Fprintf(os.Stdout, "ack %s %d\n", key, i)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashDurability: every key whose durable Update returned in a process
// that is then SIGKILLed is there after reopening.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{}
	sc := bufio.NewScanner(stdout)
	const killAfter = 3000
	killed := false
	for sc.Scan() {
		var key string
		var i int
		if _, err := fmt.Sscanf(sc.Text(), "ack %s %d", &key, &i); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked[key] = i
		if len(acked) == killAfter && !killed {
			// Kill mid-write; acks already in the pipe still count.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited before the kill: %v\n%s", err, stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", err, stderr.String())
	}
	t.Logf("child acknowledged %d durable updates before it was killed", len(acked))

	opts := crashOptions(dir)
	opts.Logger = testLogger(t)
	db := openTest(t, opts)
	missing := 0
	err = db.View(func(tx *Txn) error {
		for key, i := range acked {
			v, err := tx.Get([]byte(key))
			if err != nil || !bytes.Equal(v, crashValue(key, i)) {
				missing++
				if missing <= 5 {
					t.Errorf("acknowledged %s: %d bytes, %v", key, len(v), err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged updates lost", missing, len(acked))
	}
	// The database is usable after recovery.
	if err := db.Update(func(tx *Txn) error { return tx.Set([]byte("after"), []byte("crash")) }); err != nil {
		t.Fatal(err)
	}
	if s := stderr.String(); strings.Contains(s, "crash child:") {
		t.Fatalf("child failed: %s", s)
	}
}
