package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
)

// The end-to-end tests drive the real binary, as a user would: real
// daemons in their own processes, real TCP on loopback.

var builtBinary string

// binary builds spotmesh once for the package's end-to-end tests.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds the binary and runs daemons")
	}
	if builtBinary != "" {
		return builtBinary
	}
	dir, err := os.MkdirTemp("", "spotmesh-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "spotmesh")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	builtBinary = bin
	return bin
}

// cli runs one CLI command to completion.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("spotmesh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// daemon starts `spotmesh run` for a home and stops it, by its own PID,
// when the test ends; it checks the daemon exits 0 on SIGTERM.
func daemon(t *testing.T, home string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(home, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "run", "--home", home, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon %s: exit on SIGTERM: %v", home, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("daemon %s: still running 30s after SIGTERM, killed", home)
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("daemon %s log:\n%s", home, b)
		}
	})
	// Up when its API answers.
	eventually(t, 30*time.Second, func() error {
		_, err := runCLI(t, "id", "--home", home)
		return err
	})
}

// eventually polls f until it returns nil or the time is up.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bookOf(t *testing.T, home string, args ...string) api.BookResponse {
	t.Helper()
	var b api.BookResponse
	out := mustCLI(t, append([]string{"--home", home, "book", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("book --json: %v\n%s", err, out)
	}
	return b
}

func has(b api.BookResponse, key string) bool {
	for _, o := range b.Offers {
		if o.Key == key {
			return true
		}
	}
	return false
}

func TestTwoDaemonsThroughCLI(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "A"), filepath.Join(dir, "B")
	mustCLI(t, "init", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0")
	daemon(t, a)
	var id api.IDResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "id", "--home", a, "--json")), &id); err != nil {
		t.Fatal(err)
	}
	if len(id.Addrs) == 0 || !strings.Contains(id.Addrs[0], "/p2p/"+id.PeerID.String()) {
		t.Fatalf("id: want addresses ending in /p2p/<id>, got %v", id.Addrs)
	}
	mustCLI(t, "init", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", id.Addrs[0])
	daemon(t, b)
	eventually(t, 20*time.Second, func() error {
		out := mustCLI(t, "--home", b, "peers", "--json")
		if !strings.Contains(out, id.PeerID.String()) {
			return errors.New("B is not connected to A")
		}
		return nil
	})

	// An offer added on A appears in B's book, and a query finds it.
	out := mustCLI(t, "--home", a, "offer", "add", "--profile", "c4m8", "--vcpu", "4", "--mem", "8GiB",
		"--disk", "40GiB", "--slots", "10", "--price", "0.04USD/h", "--region", "eu-de", "--max", "72h",
		"--renewable", "--key", "web-1", "--json")
	var st api.OfferStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Key != "web-1" {
		t.Fatalf("offer add --json: %v %q", err, out)
	}
	eventually(t, 20*time.Second, func() error {
		if !has(bookOf(t, b, "--region", "eu", "--vcpu", ">=4", "--max-price", "0.05USD/h", "--sort", "price"), "web-1") {
			return errors.New("offer not in B's book")
		}
		return nil
	})
	if has(bookOf(t, b, "--region", "us"), "web-1") || has(bookOf(t, b, "--max-price", "0.01USD/h"), "web-1") {
		t.Fatal("a query that should not match found the offer")
	}
	if table := mustCLI(t, "--home", b, "book"); !strings.Contains(table, "web-1") || !strings.Contains(table, "0.04USD/h") {
		t.Fatalf("book table lacks the offer:\n%s", table)
	}

	// A withdrawal removes it.
	mustCLI(t, "--home", a, "offer", "rm", "web-1")
	eventually(t, 20*time.Second, func() error {
		if has(bookOf(t, b), "web-1") {
			return errors.New("withdrawn offer still in B's book")
		}
		return nil
	})
	var ls api.OffersResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", a, "offer", "ls", "--json")), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Offers) != 1 || !ls.Offers[0].Withdrawn {
		t.Fatalf("offer ls does not show the withdrawal: %+v", ls)
	}

	// An offer whose republishing ends expires on time in B's book.
	out = mustCLI(t, "--home", a, "offer", "add", "--profile", "c2m4", "--vcpu", "2", "--mem", "4GiB", "--disk", "20GiB",
		"--slots", "1", "--price", "0.02USD/h", "--region", "eu-fr", "--max", "1h", "--key", "short",
		"--ttl", "10s", "--until", "3s", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Current == nil {
		t.Fatalf("offer add --json: %v %q", err, out)
	}
	expires := st.Current.ExpiresAt
	eventually(t, 20*time.Second, func() error {
		if !has(bookOf(t, b), "short") {
			return errors.New("short-lived offer not in B's book")
		}
		return nil
	})
	var goneAt time.Time
	eventually(t, 20*time.Second, func() error {
		if has(bookOf(t, b), "short") {
			return errors.New("expired offer still in B's book")
		}
		goneAt = time.Now()
		return nil
	})
	if goneAt.Before(expires) {
		t.Fatalf("offer left the book at %v, before it expired at %v", goneAt, expires)
	}
	if late := goneAt.Sub(expires); late > 5*time.Second {
		t.Fatalf("offer left the book %v after it expired", late)
	}
}
