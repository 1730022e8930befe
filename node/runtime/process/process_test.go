//go:build linux

package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	"github.com/spotmesh/spotmesh/node/runtime/process"
	"github.com/spotmesh/spotmesh/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("SPOTMESH_TEST_CRASH_NODE"); dir != "" {
		crashNode(dir)
		return
	}
	dir, err := os.MkdirTemp("", "spotmesh-echo")
	if err != nil {
		panic(err)
	}
	echoPath, err = drivertest.BuildEcho(dir)
	if err != nil {
		os.RemoveAll(dir)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func testConfig(t testing.TB, dir string) process.Config {
	cfg := process.DefaultConfig()
	cfg.Dir = dir
	cfg.StopGrace = time.Second
	cfg.StartTimeout = 30 * time.Second
	cfg.Total = runtime.Resources{VCPU: 4, Memory: 4 << 30, Disk: 8 << 30, Instances: 8}
	return cfg
}

func newDriver(t testing.TB, cfg process.Config) *process.Driver {
	t.Helper()
	d, err := process.New(cfg, clock.New(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformance(t *testing.T) {
	const grace = 300 * time.Millisecond
	drivertest.Run(t, func(t *testing.T) runtime.Driver {
		cfg := testConfig(t, t.TempDir())
		cfg.WallGrace = grace
		return newDriver(t, cfg)
	}, drivertest.WithWallGrace(grace))
}

// fixture is one driver with the echo bundle and a cleanup that kills
// every instance process it started.
type fixture struct {
	t   *testing.T
	d   *process.Driver
	cfg process.Config
	gw  *drivertest.Gateway
	exe runtime.Appliance
}

// echoPath is the echo appliance, built once by TestMain.
var echoPath string

func echo(t *testing.T) string {
	if echoPath == "" {
		t.Fatal("echo appliance not built")
	}
	return echoPath
}

func newFixture(t *testing.T) *fixture {
	cfg := testConfig(t, t.TempDir())
	f := &fixture{t: t, cfg: cfg, gw: drivertest.NewGateway(t)}
	f.exe = f.gw.Add(t, echo(t))
	f.d = newDriver(t, cfg)
	t.Cleanup(func() { f.d.Close() })
	return f
}

// start provisions the spec and waits until it runs; the process group is
// killed when the test ends.
func (f *fixture) start(spec runtime.Spec) runtime.Instance {
	f.t.Helper()
	if _, err := f.d.Provision(context.Background(), spec); err != nil {
		f.t.Fatal(err)
	}
	in := drivertest.WaitState(f.t, f.d, spec.LeaseID, 30*time.Second, runtime.StateRunning)
	killAtEnd(f.t, in.PID)
	return in
}

// killAtEnd kills the process group of pid when the test ends, if pid is
// still the process it is now.
func killAtEnd(t *testing.T, pid int) {
	start, ok := startTicks(pid)
	if !ok {
		return
	}
	t.Cleanup(func() { drivertest.KillProcess(pid, start) })
}

func startTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 || f[0] == "Z" {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

func get(t *testing.T, endpoint, path string) string {
	t.Helper()
	b, err := httpGet("http://" + endpoint + path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRlimits: the lease's limits are in /proc/<pid>/limits of the
// instance, and the instance says they were enforced.
func TestRlimits(t *testing.T) {
	f := newFixture(t)
	spec := drivertest.Spec(drivertest.LeaseID(), f.exe)
	spec.Limits = runtime.Limits{VCPU: 2, Memory: 300 << 20, Disk: 50 << 20}
	spec.Ends = time.Now().Add(10 * time.Minute)
	in := f.start(spec)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(in.PID) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	limits := parseLimits(string(b))
	cpuMin := uint64(2*10*60) + 60 // vCPU × wall + slack
	want := []struct {
		name      string
		soft, max uint64
	}{
		{"Max data size", 300 << 20, 300 << 20},
		{"Max file size", 50 << 20, 50 << 20},
		{"Max open files", 4096, 4096},
		{"Max core file size", 0, 0},
	}
	for _, w := range want {
		got, ok := limits[w.name]
		if !ok || got[0] != w.soft || got[1] != w.max {
			t.Errorf("%s: %v, want %d %d", w.name, got, w.soft, w.max)
		}
	}
	if got := limits["Max cpu time"]; got[0] < cpuMin-2 || got[0] > cpuMin+2 || got[1] != got[0]+5 {
		t.Errorf("Max cpu time: %v, want about %d and 5 more", got, cpuMin)
	}
	enforced := map[string]string{}
	for _, e := range in.Enforced {
		if e.Mechanism == "rlimit" {
			enforced[e.Control] = e.Value
		}
	}
	for c, v := range map[string]string{"RLIMIT_DATA": "314572800", "RLIMIT_FSIZE": "52428800", "RLIMIT_NOFILE": "4096"} {
		if enforced[c] != v {
			t.Errorf("enforced %s = %q, want %q (all: %+v)", c, enforced[c], v, in.Enforced)
		}
	}
	if _, ok := enforced["RLIMIT_CPU"]; !ok {
		t.Errorf("RLIMIT_CPU not reported: %+v", in.Enforced)
	}
	for _, n := range in.LimitNotes {
		if strings.Contains(n, "ptrace") {
			t.Errorf("rlimits set late: %s", n)
		}
	}
	// The memory limit bites: 400 MiB does not fit in 300.
	if _, err := httpGet("http://" + in.Endpoint + "/alloc?mb=400"); err == nil {
		t.Error("allocating 400 MiB under a 300 MiB RLIMIT_DATA worked")
	}
	out := drivertest.WaitState(t, f.d, spec.LeaseID, 10*time.Second, runtime.StateExited)
	t.Logf("after allocating over the limit: %s (%s)", out.State, out.Reason)
}

// parseLimits reads /proc/<pid>/limits into name → {soft, hard};
// unlimited is max uint64.
func parseLimits(s string) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for _, line := range strings.Split(s, "\n")[1:] {
		if len(line) < 26 {
			continue
		}
		name := strings.TrimSpace(line[:26])
		f := strings.Fields(line[26:])
		if len(f) < 2 {
			continue
		}
		num := func(v string) uint64 {
			if v == "unlimited" {
				return ^uint64(0)
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
		out[name] = [2]uint64{num(f[0]), num(f[1])}
	}
	return out
}

// TestCgroup: where a cgroup v2 hierarchy is writable, the instance runs
// in its own cgroup, entered at clone, with the limits its controllers
// allow; its CPU time comes from the cgroup; the cgroup goes with the
// instance. Where the controllers are missing (a hybrid cgroup v1 machine)
// the limits part is skipped with the reason.
func TestCgroup(t *testing.T) {
	f := newFixture(t)
	spec := drivertest.Spec(drivertest.LeaseID(), f.exe)
	in := f.start(spec)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(in.PID) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var cg string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			cg = rest
		}
	}
	if !strings.HasSuffix(cg, "/"+spec.LeaseID) {
		t.Skipf("no cgroup v2 for instances on this machine (process in %q): %q", cg, in.LimitNotes)
	}
	rec := readRecord(t, f.cfg.Dir, spec.LeaseID)
	path, _ := rec["cgroup"].(string)
	if path == "" || !strings.HasSuffix(path, cg) {
		t.Fatalf("record cgroup %q, process in %q", path, cg)
	}
	cgEnforced := map[string]string{}
	for _, e := range in.Enforced {
		if e.Mechanism == "cgroup" {
			cgEnforced[e.Control] = e.Value
		}
	}
	t.Run("limits", func(t *testing.T) {
		if len(cgEnforced) == 0 {
			t.Skipf("cgroup v2 limits not available on this machine: %q", in.LimitNotes)
		}
		for file, want := range map[string]string{"memory.max": "268435456", "cpu.max": "100000 100000", "pids.max": "1024"} {
			got, err := os.ReadFile(filepath.Join(path, file))
			if err != nil {
				if _, told := cgEnforced[file]; told {
					t.Errorf("%s reported enforced but unreadable: %v", file, err)
				} else {
					t.Logf("%s not set here: %v", file, err)
				}
				continue
			}
			if strings.TrimSpace(string(got)) != want || cgEnforced[file] != want {
				t.Errorf("%s = %q (reported %q), want %q", file, got, cgEnforced[file], want)
			}
		}
	})
	// CPU comes from the cgroup.
	get(t, in.Endpoint, "/burn?ms=200")
	now, err := f.d.Instance(context.Background(), spec.LeaseID)
	if err != nil || now.Usage.CPU < 100*time.Millisecond {
		t.Errorf("usage %+v (%v) after 200 ms of CPU", now.Usage, err)
	}
	if _, err := f.d.Terminate(context.Background(), spec.LeaseID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s left after Terminate: %v", path, err)
	}
}

func readRecord(t *testing.T, dir, lease string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "instances", lease, "instance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReadopt: a new driver on the same state directory (the node after a
// crash) finds the running instance by PID and start time, reports it, and
// terminates it.
func TestReadopt(t *testing.T) {
	f := newFixture(t)
	spec := drivertest.Spec(drivertest.LeaseID(), f.exe)
	in := f.start(spec)
	get(t, in.Endpoint, "/burn?ms=100")
	before, err := f.d.Instance(context.Background(), spec.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	f.d.Close() // the node goes; the instance stays

	d2 := newDriver(t, f.cfg)
	defer d2.Close()
	got, err := d2.Instance(context.Background(), spec.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != runtime.StateRunning || got.PID != in.PID || got.Endpoint != in.Endpoint {
		t.Fatalf("re-adopted: %s pid %d %s; want running pid %d %s", got.State, got.PID, got.Endpoint, in.PID, in.Endpoint)
	}
	if got.Usage.CPU < before.Usage.CPU {
		t.Errorf("CPU went back across the restart: %v, before %v", got.Usage.CPU, before.Usage.CPU)
	}
	if get(t, got.Endpoint, "/") != "lease "+spec.LeaseID+"\n" {
		t.Error("re-adopted endpoint does not answer")
	}
	c, err := d2.Capacity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Free.Instances != c.Total.Instances-1 {
		t.Errorf("re-adopted instance not counted: free %+v total %+v", c.Free, c.Total)
	}
	start, _ := startTicks(in.PID)
	out, err := d2.Terminate(context.Background(), spec.LeaseID)
	if err != nil || out.State != runtime.StateTerminated {
		t.Fatalf("terminate re-adopted: %v %s", err, out.State)
	}
	if s, ok := startTicks(in.PID); ok && s == start {
		t.Errorf("process %d still runs after Terminate", in.PID)
	}
}

// crashNode is the node of TestCrashReadopt, in its own process: it
// provisions the echo bundle, says so on stdout, and waits to be killed.
func crashNode(dir string) {
	cfg := testConfig(nil, dir)
	d, err := process.New(cfg, clock.New(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	spec := drivertest.Spec(os.Getenv("SPOTMESH_TEST_LEASE"), runtime.Appliance{Path: os.Getenv("SPOTMESH_TEST_ECHO"), Format: "bundle"})
	in, err := d.Provision(context.Background(), spec)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("started", in.PID, in.Endpoint)
	select {}
}

// TestCrashReadopt: the node is killed with SIGKILL while its instance
// runs; the instance goes on (now a child of init), and a new node on the
// same state directory re-adopts it by PID and start time, follows it
// through /proc (it is not its child) and terminates it.
func TestCrashReadopt(t *testing.T) {
	dir := t.TempDir()
	id := drivertest.LeaseID()
	node := exec.Command(os.Args[0], "-test.run=^$")
	node.Env = append(os.Environ(), "SPOTMESH_TEST_CRASH_NODE="+dir, "SPOTMESH_TEST_ECHO="+echoPath, "SPOTMESH_TEST_LEASE="+id)
	node.Stderr = t.Output()
	out, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Process.Kill(); node.Wait() })
	var word, endpoint string
	var pid int
	if _, err := fmt.Fscan(out, &word, &pid, &endpoint); err != nil || word != "started" {
		t.Fatalf("node: %q %v", word, err)
	}
	killAtEnd(t, pid)
	if err := node.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	node.Wait()

	d := newDriver(t, testConfig(t, dir))
	defer d.Close()
	in := drivertest.WaitState(t, d, id, 30*time.Second, runtime.StateRunning)
	if in.PID != pid || in.Endpoint != endpoint {
		t.Fatalf("re-adopted pid %d at %s, the dead node started %d at %s", in.PID, in.Endpoint, pid, endpoint)
	}
	if got := get(t, endpoint, "/"); got != "lease "+id+"\n" {
		t.Fatalf("endpoint answers %q", got)
	}
	get(t, endpoint, "/burn?ms=100")
	if u, err := d.Instance(context.Background(), id); err != nil || u.Usage.CPU < 100*time.Millisecond {
		t.Errorf("usage of an adopted instance: %+v %v", u.Usage, err)
	}
	out2, err := d.Terminate(context.Background(), id)
	if err != nil || out2.State != runtime.StateTerminated {
		t.Fatalf("terminate: %v %s", err, out2.State)
	}
	if _, ok := startTicks(pid); ok {
		t.Errorf("adopted process %d survived Terminate", pid)
	}
}

// TestPIDReuse: a record whose PID now names another process (its start
// time differs) is not adopted: the instance is marked exited and the
// other process is left alone. A record whose process is gone is exited.
func TestPIDReuse(t *testing.T) {
	f := newFixture(t)
	spec := drivertest.Spec(drivertest.LeaseID(), f.exe)
	in := f.start(spec)
	if _, err := f.d.Terminate(context.Background(), spec.LeaseID); err != nil {
		t.Fatal(err)
	}
	f.d.Close()
	recDir := filepath.Join(f.cfg.Dir, "instances", spec.LeaseID)

	// An unrelated process, and a record that claims its PID but names
	// another start time: the PID was reused.
	other := exec.Command("/bin/sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	otherStart, ok := startTicks(other.Process.Pid)
	if !ok {
		t.Fatal("sleep not running")
	}
	rewrite := func(pid int, start uint64) {
		m := readRecord(t, f.cfg.Dir, spec.LeaseID)
		m["state"], m["pid"], m["start_ticks"] = "running", pid, start
		delete(m, "ended")
		delete(m, "terminating")
		delete(m, "reason")
		b, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(recDir, "instance.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(other.Process.Pid, otherStart-1)
	d2 := newDriver(t, f.cfg)
	got, err := d2.Instance(context.Background(), spec.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != runtime.StateExited {
		t.Errorf("record of a reused PID: state %s, want exited", got.State)
	}
	if s, ok := startTicks(other.Process.Pid); !ok || s != otherStart {
		t.Error("the process that reused the PID was touched")
	}
	if _, err := d2.Terminate(context.Background(), spec.LeaseID); err != nil {
		t.Fatal(err)
	}
	if s, ok := startTicks(other.Process.Pid); !ok || s != otherStart {
		t.Error("Terminate of the exited instance killed the process that reused its PID")
	}
	d2.Close()

	// A record of a process that is gone.
	rewrite(in.PID, 12345)
	d3 := newDriver(t, f.cfg)
	defer d3.Close()
	got, err = d3.Instance(context.Background(), spec.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != runtime.StateExited || got.Ended.IsZero() || !strings.Contains(got.Reason, "not watching") {
		t.Errorf("record of a gone process: %s %q, want exited while not watching", got.State, got.Reason)
	}
}

// TestTerminateEscalates: an instance that ignores SIGTERM, and a child in
// its process group that does too, are killed after the grace.
func TestTerminateEscalates(t *testing.T) {
	f := newFixture(t)
	spec := drivertest.Spec(drivertest.LeaseID(), f.exe)
	in := f.start(spec)
	get(t, in.Endpoint, "/ignore-term")
	childPID, err := strconv.Atoi(get(t, in.Endpoint, "/spawn"))
	if err != nil {
		t.Fatal(err)
	}
	killAtEnd(t, childPID)
	childStart, _ := startTicks(childPID)
	t0 := time.Now()
	out, err := f.d.Terminate(context.Background(), spec.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	if took < f.cfg.StopGrace {
		t.Errorf("terminate took %v, less than the %v grace, though the instance ignores SIGTERM", took, f.cfg.StopGrace)
	}
	if out.State != runtime.StateTerminated || !strings.Contains(out.Reason, "killed") {
		t.Errorf("state %s, reason %q; want terminated, killed", out.State, out.Reason)
	}
	if s, ok := startTicks(childPID); ok && s == childStart {
		t.Errorf("child %d of the instance survived Terminate", childPID)
	}
	if s, ok := startTicks(in.PID); ok {
		t.Errorf("instance process %d survived Terminate (start %d)", in.PID, s)
	}
}

// TestExitKillsGroup: when the main process exits, what it left in its
// process group is killed.
func TestExitKillsGroup(t *testing.T) {
	f := newFixture(t)
	spec := drivertest.Spec(drivertest.LeaseID(), f.exe)
	in := f.start(spec)
	childPID, err := strconv.Atoi(get(t, in.Endpoint, "/spawn"))
	if err != nil {
		t.Fatal(err)
	}
	killAtEnd(t, childPID)
	childStart, _ := startTicks(childPID)
	get(t, in.Endpoint, "/exit?code=0")
	drivertest.WaitState(t, f.d, spec.LeaseID, 10*time.Second, runtime.StateExited)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s, ok := startTicks(childPID); !ok || s != childStart {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d outlived its instance", childPID)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// TestWallTimeBackstop: an instance past its lease's end + grace is
// terminated by the driver itself.
func TestWallTimeBackstop(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.WallGrace = 0
	clk := clock.NewMock()
	clk.Set(time.Now())
	d, err := process.New(cfg, clk, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	gw := drivertest.NewGateway(t)
	spec := drivertest.Spec(drivertest.LeaseID(), gw.Add(t, echo(t)))
	spec.Ends = clk.Now().Add(time.Hour)
	if _, err := d.Provision(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	in := drivertest.WaitState(t, d, spec.LeaseID, 30*time.Second, runtime.StateRunning)
	killAtEnd(t, in.PID)
	clk.Add(time.Hour + time.Second)
	out, err := d.Instance(context.Background(), spec.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	if out.State != runtime.StateTerminated || !strings.Contains(out.Reason, "lease ended") {
		t.Errorf("past its end: %s %q; want terminated by the wall-time limit", out.State, out.Reason)
	}
}

// TestBundles: tar, gzipped tar, a #! script; refusals with the reason.
func TestBundles(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "run.sh")
	// A script bundle: exec the echo program (a path on this machine).
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec "+echo(t)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(dir, "bundle.tar.gz")
	if out, err := exec.Command("/bin/sh", "-c", "cd "+dir+" && mkdir b && cp "+echo(t)+" b/run && tar -C b -czf "+tgz+" .").CombinedOutput(); err != nil {
		t.Fatalf("make tgz: %v %s", err, out)
	}
	noRun := filepath.Join(dir, "norun.tar")
	if out, err := exec.Command("/bin/sh", "-c", "cd "+dir+" && mkdir c && cp "+echo(t)+" c/serve && tar -C c -cf "+noRun+" .").CombinedOutput(); err != nil {
		t.Fatalf("make tar: %v %s", err, out)
	}
	escape := filepath.Join(dir, "escape.tar")
	if out, err := exec.Command("/bin/sh", "-c", "cd "+dir+" && mkdir e && cp "+echo(t)+" e/run && tar -C e -cf "+escape+" run --transform 's,^,../,' run").CombinedOutput(); err != nil {
		t.Fatalf("make escaping tar: %v %s", err, out)
	}
	for _, c := range []struct {
		name, path string
		refused    string
	}{
		{"script", script, ""},
		{"tar.gz", tgz, ""},
		{"no run", noRun, "no regular file named run"},
		{"escape", escape, "outside the bundle"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := drivertest.Spec(drivertest.LeaseID(), f.gw.Add(t, c.path))
			in, err := f.d.Provision(context.Background(), spec)
			if c.refused != "" {
				if !errors.Is(err, runtime.ErrAppliance) || !strings.Contains(err.Error(), c.refused) {
					t.Fatalf("Provision: %v, want ErrAppliance saying %q", err, c.refused)
				}
				if _, err := os.Stat(filepath.Join(f.cfg.Dir, "instances", spec.LeaseID)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("refused instance left its directory: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			killAtEnd(t, in.PID)
			in = drivertest.WaitState(t, f.d, spec.LeaseID, 30*time.Second, runtime.StateRunning)
			if got := get(t, in.Endpoint, "/"); got != "lease "+spec.LeaseID+"\n" {
				t.Errorf("answers %q", got)
			}
			if _, err := f.d.Terminate(context.Background(), spec.LeaseID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStartTimeout: an instance that never listens on its PORT fails.
func TestStartTimeout(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.StartTimeout = 300 * time.Millisecond
	d := newDriver(t, cfg)
	defer d.Close()
	gw := drivertest.NewGateway(t)
	script := filepath.Join(t.TempDir(), "run")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := drivertest.Spec(drivertest.LeaseID(), gw.Add(t, script))
	in, err := d.Provision(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	killAtEnd(t, in.PID)
	out := drivertest.WaitState(t, d, spec.LeaseID, 10*time.Second, runtime.StateFailed)
	if !strings.Contains(out.Reason, "did not accept connections") {
		t.Errorf("reason %q", out.Reason)
	}
	if s, ok := startTicks(in.PID); ok {
		t.Errorf("process %d of the failed instance still runs (start %d)", in.PID, s)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := process.DefaultConfig()
	ok.Dir = "/tmp/x"
	for _, c := range []struct {
		name string
		mod  func(*process.Config)
		bad  string
	}{
		{"ok", func(*process.Config) {}, ""},
		{"relative dir", func(c *process.Config) { c.Dir = "x" }, "Dir"},
		{"bind host", func(c *process.Config) { c.BindHost = "localhost" }, "BindHost"},
		{"unspecified bind without advertise", func(c *process.Config) { c.BindHost = "0.0.0.0" }, "AdvertiseHost"},
		{"grace", func(c *process.Config) { c.StopGrace = 0 }, "StopGrace"},
		{"cgroup", func(c *process.Config) { c.Cgroup = "sys/fs" }, "Cgroup"},
		{"cgroup parent", func(c *process.Config) { c.CgroupParent = "../x" }, "CgroupParent"},
		{"profile", func(c *process.Config) { c.Profiles = []protocol.Hardware{{Profile: "x"}} }, "Profiles[0]"},
	} {
		cfg := ok
		c.mod(&cfg)
		err := cfg.Validate()
		if c.bad == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), c.bad) {
			t.Errorf("%s: %v, want ErrInvalid naming %s", c.name, err, c.bad)
		}
	}
}

var httpc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpGet(url string) (string, error) {
	resp, err := httpc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), nil
}
