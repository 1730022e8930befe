package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
)

// freePort picks a TCP port on loopback that is free now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// procAlive says whether pid names a live process: one that exists and is
// not a zombie (an orphaned instance is reaped by whoever is PID 1, which
// in a container may never do it).
func procAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	state := b[i+2]
	return state != 'Z' && state != 'X' && state != 'x'
}

// sellerProc is one run of a seller's daemon, started and killed by the
// test itself.
type sellerProc struct {
	cmd  *exec.Cmd
	done chan error
	logf *os.File
}

// startSeller starts `spotmesh run` for home and waits until its API
// answers. The caller stops it; a cleanup kills it by its PID if it still
// runs when the test ends.
func startSeller(t *testing.T, home, logName string) *sellerProc {
	t.Helper()
	logf, err := os.Create(filepath.Join(home, logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "run", "--home", home, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &sellerProc{cmd: cmd, done: make(chan error, 1), logf: logf}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-p.done
				t.Errorf("seller daemon %s: still running 30s after SIGTERM, killed", home)
			}
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("seller daemon %s (%s):\n%s", home, logName, b)
		}
	})
	eventually(t, 30*time.Second, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("seller daemon exited at start: %v", err)
		default:
		}
		_, err := runCLI(t, "id", "--home", home)
		return err
	})
	return p
}

// kill9 kills the daemon with SIGKILL and waits for it.
func (p *sellerProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 the seller: %v", err)
	}
	err := <-p.done
	p.done <- err
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the seller did not die of SIGKILL: %v", err)
	}
}

func instancesOf(t *testing.T, home string) map[string]api.Instance {
	t.Helper()
	var r api.InstancesResponse
	out := mustCLI(t, "--home", home, "instances", "ls", "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("instances ls --json: %v\n%s", err, out)
	}
	m := make(map[string]api.Instance, len(r.Instances))
	for _, in := range r.Instances {
		m[in.LeaseID] = in
	}
	return m
}

func sellerLeases(t *testing.T, home string) map[string]api.Lease {
	t.Helper()
	var r api.LeasesResponse
	out := mustCLI(t, "--home", home, "lease", "ls", "--role", "seller", "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("lease ls --json: %v\n%s", err, out)
	}
	m := make(map[string]api.Lease, len(r.Leases))
	for _, l := range r.Leases {
		m[l.ID] = l
	}
	return m
}

func echoSays(endpoint string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + endpoint + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestSellerCrashKeepsLeases: kill -9 the seller's daemon while two
// leases run, let the shorter one's end pass while it is down, restart
// it: the expired lease's instance is terminated at once, the other runs
// on as before (same process, endpoint answers, the buyer sees it
// running), and the buyer can still end it.
func TestSellerCrashKeepsLeases(t *testing.T) {
	binary(t) // skips under -short
	dir := t.TempDir()
	a, b := filepath.Join(dir, "A"), filepath.Join(dir, "B")
	port := freePort(t)
	mustCLI(t, "init", "--home", a, "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port))
	seller := startSeller(t, a, "daemon-1.log")
	var idA api.IDResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "id", "--home", a, "--json")), &idA); err != nil || len(idA.Addrs) == 0 {
		t.Fatalf("id of A: %v %+v", err, idA)
	}
	mustCLI(t, "init", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", idA.Addrs[0])
	daemon(t, b)

	mustCLI(t, "--home", a, "offer", "add", "--profile", "c1m1", "--vcpu", "1", "--mem", "1GiB", "--disk", "1GiB",
		"--slots", "2", "--price", "0.01USD/h", "--region", "eu-de", "--min", "1s", "--max", "1h", "--formats", "bundle", "--key", "echo")
	// offerCID is the CID of the offer's version in B's book now: A
	// republishes it, under a new CID, when its free capacity changes.
	offerCID := func() string {
		t.Helper()
		var cid string
		eventually(t, 20*time.Second, func() error {
			for _, o := range bookOf(t, b).Offers {
				if o.Key == "echo" {
					cid = o.CID
					return nil
				}
			}
			return errors.New("offer not in B's book")
		})
		return cid
	}
	offerCID()
	echo, err := drivertest.BuildEcho(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var appl api.Appliance
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", b, "appliance", "add", echo, "--format", "bundle", "--json")), &appl); err != nil {
		t.Fatal(err)
	}

	// Every instance is stopped by its PID when the test ends, whatever
	// the daemons did: its process group SIGTERM, then SIGKILL.
	var pids []int
	t.Cleanup(func() {
		for _, pid := range pids {
			if procAlive(pid) {
				_ = syscall.Kill(-pid, syscall.SIGTERM)
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, pid := range pids {
			for procAlive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if procAlive(pid) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	newLease := func(length string) api.Lease {
		t.Helper()
		var l api.Lease
		var out string
		eventually(t, 20*time.Second, func() error {
			var err error
			out, err = runCLI(t, "--home", b, "lease", "new", "--offer", offerCID(), "--appliance", appl.CID, "--for", length, "--wait", "--json")
			if err != nil && !strings.Contains(err.Error(), "no offer") {
				t.Fatal(err)
			}
			return err
		})
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("lease new --json: %v\n%s", err, out)
		}
		if l.State != "running" || l.Endpoint == "" || l.ID == "" {
			t.Fatalf("lease new --for %s --wait: %+v", length, l)
		}
		if got, err := echoSays(l.Endpoint); err != nil || !strings.Contains(got, "lease "+l.ID) {
			t.Fatalf("the endpoint of %s says %q, %v", l.ID, got, err)
		}
		return l
	}
	// The long lease first: the short one then needs no fetch and is
	// still running when the seller is killed.
	l2 := newLease("60s")
	l1 := newLease("4s")
	inst := instancesOf(t, a)
	i1, i2 := inst[l1.ID], inst[l2.ID]
	if i1.PID <= 0 || i2.PID <= 0 || i1.PID == i2.PID {
		t.Fatalf("A's instances: %+v", inst)
	}
	pids = append(pids, i1.PID, i2.PID)
	if !procAlive(i1.PID) || !procAlive(i2.PID) {
		t.Fatalf("instance processes not alive: %d %d", i1.PID, i2.PID)
	}

	// kill -9 A while both run.
	seller.kill9(t)
	killedAt := time.Now()
	if !killedAt.Before(l1.Ends) {
		t.Fatalf("setup too slow: L1 had ended (%v) before the seller was killed (%v)", l1.Ends, killedAt)
	}
	t.Logf("seller killed %v before L1's end", l1.Ends.Sub(killedAt).Round(time.Millisecond))
	for _, pid := range []int{i1.PID, i2.PID} {
		if !procAlive(pid) {
			t.Fatalf("instance %d died with the seller's daemon", pid)
		}
	}

	// Wait, with the seller down, until L1's end has passed.
	eventually(t, time.Until(l1.Ends)+10*time.Second, func() error {
		if !time.Now().After(l1.Ends.Add(200 * time.Millisecond)) {
			return fmt.Errorf("L1 ends at %v", l1.Ends)
		}
		return nil
	})
	if !procAlive(i1.PID) {
		t.Fatalf("L1's instance %d ended while no daemon ran", i1.PID)
	}

	// Restart A on the same home: L1's instance goes at once.
	restartAt := time.Now()
	startSeller(t, a, "daemon-2.log")
	t.Logf("seller restarted, API up in %v", time.Since(restartAt).Round(time.Millisecond))
	eventually(t, 10*time.Second, func() error {
		if procAlive(i1.PID) {
			return fmt.Errorf("L1's instance %d still runs after the restart", i1.PID)
		}
		return nil
	})
	t.Logf("L1's instance gone %v after the restart began", time.Since(restartAt).Round(time.Millisecond))
	eventually(t, 10*time.Second, func() error {
		l := sellerLeases(t, a)[l1.ID]
		if l.State != "ended" {
			return fmt.Errorf("A's L1: state %q", l.State)
		}
		if l.Cause != "expired" {
			t.Errorf("A's L1 ended with cause %q, want expired", l.Cause)
		}
		return nil
	})

	// L2 runs on as before: the same process, its endpoint answers, and
	// both sides say running.
	if in := instancesOf(t, a)[l2.ID]; in.PID != i2.PID || in.State != "running" || in.Endpoint != l2.Endpoint {
		t.Fatalf("A's L2 instance after the restart: %+v, before: %+v", in, i2)
	}
	if !procAlive(i2.PID) {
		t.Fatalf("L2's instance %d is gone", i2.PID)
	}
	if got, err := echoSays(l2.Endpoint); err != nil || !strings.Contains(got, "lease "+l2.ID) {
		t.Fatalf("L2's endpoint after the restart says %q, %v", got, err)
	}
	if l := sellerLeases(t, a)[l2.ID]; l.State != "running" || !l.Ends.Equal(l2.Ends) {
		t.Fatalf("A's L2 after the restart: %+v, want running until %v", l, l2.Ends)
	}
	eventually(t, 20*time.Second, func() error {
		var got api.Lease
		out, err := runCLI(t, "--home", b, "lease", "show", l2.ID, "--json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			return err
		}
		if got.State != "running" {
			return fmt.Errorf("B's lease show %s: %s", l2.ID, got.State)
		}
		return nil
	})

	// The buyer ends L2: its process goes.
	mustCLI(t, "--home", b, "lease", "end", l2.ID)
	eventually(t, 10*time.Second, func() error {
		if procAlive(i2.PID) {
			return fmt.Errorf("L2's instance %d still runs after lease end", i2.PID)
		}
		return nil
	})
	if l := sellerLeases(t, a)[l2.ID]; l.State != "ended" {
		t.Errorf("A's L2 after lease end: %+v", l)
	}
}
