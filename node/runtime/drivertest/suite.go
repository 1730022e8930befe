package drivertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/runtime"
)

// Option tunes Run.
type Option func(*options)

type options struct {
	pid       func(d runtime.Driver, leaseID string) int
	timeout   time.Duration
	wallGrace time.Duration
}

// WithPID tells the suite the PID, on this machine, of an instance's main
// process when the driver's Instance.PID is 0 (an http driver whose cloud
// runs here), so that the suite checks the process is gone after
// Terminate. Without it, the check is skipped for such drivers.
func WithPID(f func(d runtime.Driver, leaseID string) int) Option {
	return func(o *options) { o.pid = f }
}

// WithTimeout sets how long an instance may take from Provision to
// running (default 30 s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithWallGrace tells the suite how long after a lease's end the driver's
// wall-time backstop terminates an instance, so that the Extend test waits
// past the old end plus that grace (default 0: no grace). Keep it short
// in tests: the Extend test waits that long.
func WithWallGrace(d time.Duration) Option {
	return func(o *options) { o.wallGrace = d }
}

// Run runs the conformance suite against the driver that newDriver makes.
// newDriver is called once per subtest with that subtest's t and returns a
// fresh driver (its own state directory, its own cloud) on which Recover
// was called; the suite closes it at the end of the subtest, after
// terminating what it provisioned.
func Run(t *testing.T, newDriver func(t *testing.T) runtime.Driver, opts ...Option) {
	o := options{timeout: 30 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	echo := Echo(t)
	gw := NewGateway(t)
	s := &suite{
		o:     o,
		newD:  newDriver,
		gw:    gw,
		exe:   gw.Add(t, ExecutableBundle(t, echo)),
		tar:   gw.Add(t, TarBundle(t, echo, map[string]string{"data/hello.txt": "hello from the bundle\n"})),
		junk:  gw.AddBytes(t, "junk.bin", junk()),
		httpc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	t.Run("Capacity", s.testCapacity)
	t.Run("LifecycleExecutable", func(t *testing.T) { s.testLifecycle(t, s.exe, false) })
	t.Run("LifecycleTar", func(t *testing.T) { s.testLifecycle(t, s.tar, true) })
	t.Run("Errors", s.testErrors)
	t.Run("Exit", s.testExit)
	t.Run("RefusedAppliance", s.testRefused)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("Extend", s.testExtend)
}

type suite struct {
	o              options
	newD           func(t *testing.T) runtime.Driver
	gw             *Gateway
	exe, tar, junk runtime.Appliance
	httpc          *http.Client
}

func junk() []byte {
	b := make([]byte, 4096)
	_, _ = rand.Read(b)
	copy(b, "JUNK: not a bundle")
	return b
}

// driver makes a driver for t, and has every instance the test provisions
// terminated and every process it saw killed when t ends.
func (s *suite) driver(t *testing.T) (runtime.Driver, *tracker) {
	d := s.newD(t)
	tr := &tracker{d: d}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close driver: %v", err)
		}
	})
	t.Cleanup(tr.cleanup)
	return d, tr
}

// tracker remembers the leases and processes of one test.
type tracker struct {
	d     runtime.Driver
	mu    sync.Mutex
	lease []string
	procs []proc
}

type proc struct {
	pid   int
	start uint64
}

func (tr *tracker) addLease(id string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.lease = append(tr.lease, id)
}

func (tr *tracker) addPID(pid int) {
	if pid <= 0 {
		return
	}
	start, ok := startTicks(pid)
	if !ok {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.procs = append(tr.procs, proc{pid, start})
}

func (tr *tracker) cleanup() {
	tr.mu.Lock()
	leases, procs := slices.Clone(tr.lease), slices.Clone(tr.procs)
	tr.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range leases {
		_, _ = tr.d.Terminate(ctx, id)
	}
	for _, p := range procs {
		KillProcess(p.pid, p.start)
	}
}

// KillProcess sends SIGKILL to the process group led by pid, and to pid,
// if pid is still the process that started at start (clock ticks after
// boot, field 22 of /proc/<pid>/stat).
func KillProcess(pid int, start uint64) {
	if s, ok := startTicks(pid); !ok || s != start {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// startTicks reads the start time of a live process; false when there is
// none with that PID or it is a zombie.
func startTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// LeaseID returns a fresh lease ID.
func LeaseID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "lease-" + hex.EncodeToString(b)
}

// Spec returns the suite's spec of a lease: 1 vCPU, 256 MiB of memory,
// 64 MiB of disk, ending in an hour, an access key and one variable
// (GREETING=hello).
func Spec(leaseID string, app runtime.Appliance) runtime.Spec {
	return runtime.Spec{
		LeaseID:   leaseID,
		Appliance: app,
		Limits:    runtime.Limits{VCPU: 1, Memory: 256 << 20, Disk: 64 << 20},
		AccessKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest key of " + leaseID,
		Ends:      time.Now().Add(time.Hour),
		Env:       map[string]string{"GREETING": "hello"},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// WaitState polls d until the instance is in one of the states, failing t
// after timeout or when it reaches another ended state.
func WaitState(t testing.TB, d runtime.Driver, leaseID string, timeout time.Duration, want ...runtime.State) runtime.Instance {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last runtime.Instance
	for {
		in, err := d.Instance(context.Background(), leaseID)
		if err != nil {
			t.Fatalf("instance %s: %v", leaseID, err)
		}
		if slices.Contains(want, in.State) {
			return in
		}
		if !in.State.Live() {
			t.Fatalf("instance %s is %s (%s), want %v", leaseID, in.State, in.Reason, want)
		}
		last = in
		if time.Now().After(deadline) {
			t.Fatalf("instance %s still %s after %v, want %v", leaseID, last.State, timeout, want)
		}
		wait(20 * time.Millisecond)
	}
}

// wait pauses a poll loop between two looks at a condition.
func wait(d time.Duration) { <-time.After(d) }

// Get fetches http://endpoint/path and returns the body.
func (s *suite) get(endpoint, path string) (string, error) {
	resp, err := s.httpc.Get("http://" + endpoint + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), nil
}

func (s *suite) mustGet(t *testing.T, endpoint, path string) string {
	t.Helper()
	b, err := s.get(endpoint, path)
	if err != nil {
		t.Fatalf("instance endpoint %s: %v", endpoint, err)
	}
	return b
}

func (s *suite) pidOf(d runtime.Driver, in runtime.Instance) int {
	if in.PID > 0 {
		return in.PID
	}
	if s.o.pid != nil {
		return s.o.pid(d, in.LeaseID)
	}
	return 0
}

// start provisions and waits until the instance runs.
func (s *suite) start(t *testing.T, d runtime.Driver, tr *tracker, spec runtime.Spec) runtime.Instance {
	t.Helper()
	tr.addLease(spec.LeaseID)
	in, err := d.Provision(ctxT(t), spec)
	if err != nil {
		t.Fatalf("provision %s: %v", spec.LeaseID, err)
	}
	if in.LeaseID != spec.LeaseID || !in.State.Live() {
		t.Fatalf("provision returned lease %q in state %s, want %q provisioning or running", in.LeaseID, in.State, spec.LeaseID)
	}
	in = WaitState(t, d, spec.LeaseID, s.o.timeout, runtime.StateRunning)
	tr.addPID(s.pidOf(d, in))
	if in.Endpoint == "" {
		t.Fatal("a running instance has no endpoint")
	}
	return in
}

func (s *suite) testCapacity(t *testing.T) {
	d, _ := s.driver(t)
	c, err := d.Capacity(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Profiles) == 0 {
		t.Error("no hardware profiles")
	}
	for _, p := range c.Profiles {
		if p.Hardware.Profile == "" || p.Hardware.VCPU == 0 || p.Hardware.Memory == 0 {
			t.Errorf("profile %+v: want a name, vCPU and memory", p.Hardware)
		}
		if p.Slots != c.Free.Fits(p.Hardware) {
			t.Errorf("profile %s: %d slots, but %d fit in the free %+v", p.Hardware.Profile, p.Slots, c.Free.Fits(p.Hardware), c.Free)
		}
	}
	if c.Total.VCPU == 0 || c.Total.Memory == 0 || c.Total.Instances == 0 {
		t.Errorf("total %+v: want vCPU, memory and instance slots", c.Total)
	}
	if c.Free.VCPU > c.Total.VCPU || c.Free.Memory > c.Total.Memory || c.Free.Instances > c.Total.Instances {
		t.Errorf("free %+v exceeds total %+v", c.Free, c.Total)
	}
}

func (s *suite) testLifecycle(t *testing.T, app runtime.Appliance, isTar bool) {
	d, tr := s.driver(t)
	ctx := ctxT(t)
	cap0, err := d.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := LeaseID()
	spec := Spec(id, app)
	if isTar {
		// Read through Open rather than Path, as the node hands it.
		path := app.Path
		spec.Appliance.Path = ""
		spec.Appliance.Open = func(context.Context) (io.ReadCloser, error) { return os.Open(path) }
	}
	t0 := time.Now()
	in := s.start(t, d, tr, spec)
	if got := s.mustGet(t, in.Endpoint, "/"); got != "lease "+id+"\n" {
		t.Fatalf("endpoint answers %q, want the lease ID", got)
	}
	t.Logf("provision to answering: %v (%s bundle of %d bytes)", time.Since(t0).Round(time.Millisecond), map[bool]string{false: "executable", true: "tar"}[isTar], app.Size)
	if got := s.mustGet(t, in.Endpoint, "/key"); got != spec.AccessKey {
		t.Errorf("access key file holds %q, want %q", got, spec.AccessKey)
	}
	for k, want := range map[string]string{"GREETING": "hello", "SPOTMESH_LEASE_ID": id} {
		if got := s.mustGet(t, in.Endpoint, "/env?name="+k); got != want {
			t.Errorf("$%s = %q, want %q", k, got, want)
		}
	}
	if isTar {
		if got := s.mustGet(t, in.Endpoint, "/file?name=data/hello.txt"); got != "hello from the bundle\n" {
			t.Errorf("bundle file data/hello.txt = %q", got)
		}
	}
	if in.Limits != spec.Limits {
		t.Errorf("limits %+v, want %+v", in.Limits, spec.Limits)
	}
	if len(in.Enforced) == 0 {
		t.Errorf("no limit enforced (notes: %q)", in.LimitNotes)
	}
	if in.Created.IsZero() || in.Started.IsZero() || !in.Ended.IsZero() {
		t.Errorf("times: created %v started %v ended %v: want the first two set, not the last", in.Created, in.Started, in.Ended)
	}
	list, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(list, func(x runtime.Instance) bool { return x.LeaseID == id }); i < 0 || !list[i].State.Live() {
		t.Errorf("List does not hold the running instance: %+v", list)
	}
	cap1, err := d.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cap1.Free.Instances != cap0.Free.Instances-1 || cap1.Free.Memory != cap0.Free.Memory-spec.Limits.Memory {
		t.Errorf("free capacity with one instance %+v, before %+v: want one slot and 256 MiB less", cap1.Free, cap0.Free)
	}
	pid := s.pidOf(d, in)
	var start uint64
	if pid > 0 {
		var ok bool
		if start, ok = startTicks(pid); !ok {
			t.Fatalf("instance process %d is not running", pid)
		}
	}

	// Usage grows.
	u0 := in.Usage
	s.mustGet(t, in.Endpoint, "/burn?ms=300")
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err = d.Instance(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if in.Usage.CPU >= 150*time.Millisecond && in.Usage.Wall > u0.Wall && in.Usage.MemoryPeak > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage %+v after 300 ms of CPU, before %+v: want CPU >= 150ms, wall grown, a memory peak", in.Usage, u0)
		}
		wait(20 * time.Millisecond)
	}
	used := in.Usage

	// Terminate.
	out, err := d.Terminate(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if out.State != runtime.StateTerminated || out.Ended.IsZero() {
		t.Fatalf("after Terminate: state %s, ended %v; want terminated with an end", out.State, out.Ended)
	}
	if out.Usage.CPU < used.CPU || out.Usage.Wall < used.Wall {
		t.Errorf("usage went back at the end: %+v, before %+v", out.Usage, used)
	}
	s.waitUnreachable(t, in.Endpoint)
	if pid > 0 {
		waitGone(t, pid, start)
	}
	again, err := d.Terminate(ctx, id)
	if err != nil || again.State != runtime.StateTerminated {
		t.Errorf("second Terminate: %v, state %s; want no error, terminated", err, again.State)
	}
	w1, err := d.Instance(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := d.Instance(ctx, id)
	if w1.State != runtime.StateTerminated || w1.Usage.Wall != w2.Usage.Wall || w1.Usage.Wall != out.Usage.Wall {
		t.Errorf("ended instance: state %s, wall %v then %v (at Terminate %v): want terminated with the wall time frozen", w1.State, w1.Usage.Wall, w2.Usage.Wall, out.Usage.Wall)
	}
	cap2, err := d.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cap2.Free != cap0.Free {
		t.Errorf("free capacity after Terminate %+v, want it back to %+v", cap2.Free, cap0.Free)
	}
}

// waitUnreachable polls an endpoint until it refuses connections.
func (s *suite) waitUnreachable(t *testing.T, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.get(endpoint, "/"); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoint %s still answers after Terminate", endpoint)
		}
		wait(20 * time.Millisecond)
	}
}

// waitGone polls until the process pid that started at start is gone and
// reaped.
func waitGone(t *testing.T, pid int, start uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if s, ok := startTicks(pid); ok && s != start {
			return // the PID names another process now
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still there (running or not reaped) after Terminate", pid)
		}
		wait(10 * time.Millisecond)
	}
}

func (s *suite) testErrors(t *testing.T) {
	d, tr := s.driver(t)
	ctx := ctxT(t)
	if _, err := d.Instance(ctx, "no-such-lease"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Instance of an unknown lease: %v, want ErrNotFound", err)
	}
	if _, err := d.Terminate(ctx, "no-such-lease"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Terminate of an unknown lease: %v, want ErrNotFound", err)
	}
	bad := Spec("../escape", s.exe)
	if _, err := d.Provision(ctx, bad); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("Provision with lease ID %q: %v, want ErrInvalid", bad.LeaseID, err)
	}
	bad = Spec(LeaseID(), s.exe)
	bad.Limits.VCPU = 0
	if _, err := d.Provision(ctx, bad); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("Provision with 0 vCPU: %v, want ErrInvalid", err)
	}
	bad = Spec(LeaseID(), s.exe)
	bad.Env = map[string]string{"PORT": "1"}
	if _, err := d.Provision(ctx, bad); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("Provision replacing PORT: %v, want ErrInvalid", err)
	}
	c, err := d.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := Spec(LeaseID(), s.exe)
	big.Limits.VCPU = c.Free.VCPU + 1
	tr.addLease(big.LeaseID)
	if _, err := d.Provision(ctx, big); !errors.Is(err, runtime.ErrNoCapacity) {
		t.Errorf("Provision of %d vCPU with %d free: %v, want ErrNoCapacity", big.Limits.VCPU, c.Free.VCPU, err)
	}
	spec := Spec(LeaseID(), s.exe)
	s.start(t, d, tr, spec)
	if _, err := d.Provision(ctx, spec); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("second Provision of one lease: %v, want ErrExists", err)
	}
	if _, err := d.Terminate(ctx, spec.LeaseID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Provision(ctx, spec); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("Provision of a terminated lease: %v, want ErrExists", err)
	}
}

func (s *suite) testExit(t *testing.T) {
	d, tr := s.driver(t)
	ctx := ctxT(t)
	spec := Spec(LeaseID(), s.exe)
	in := s.start(t, d, tr, spec)
	pid := s.pidOf(d, in)
	start, _ := startTicks(pid)
	s.mustGet(t, in.Endpoint, "/exit?code=3")
	out := WaitState(t, d, spec.LeaseID, 10*time.Second, runtime.StateExited)
	if out.ExitCode != 3 || out.Reason == "" || out.Ended.IsZero() {
		t.Errorf("exited instance: code %d, reason %q, ended %v; want 3, a reason, an end", out.ExitCode, out.Reason, out.Ended)
	}
	if pid > 0 {
		waitGone(t, pid, start)
	}
	again, err := d.Terminate(ctx, spec.LeaseID)
	if err != nil || again.State != runtime.StateExited {
		t.Errorf("Terminate of an exited instance: %v, state %s; want no error and exited kept", err, again.State)
	}
	c, err := d.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Free.Instances != c.Total.Instances {
		t.Errorf("an exited instance still holds capacity: free %+v, total %+v", c.Free, c.Total)
	}
}

func (s *suite) testRefused(t *testing.T) {
	d, tr := s.driver(t)
	ctx := ctxT(t)
	cases := []struct {
		name string
		app  runtime.Appliance
	}{
		{"not a bundle", s.junk},
		{"format not run", func() runtime.Appliance { a := s.exe; a.Format = "qcow2"; return a }()},
	}
	for _, c := range cases {
		spec := Spec(LeaseID(), c.app)
		tr.addLease(spec.LeaseID)
		in, err := d.Provision(ctx, spec)
		if err != nil {
			if !errors.Is(err, runtime.ErrAppliance) {
				t.Errorf("%s: Provision: %v, want ErrAppliance", c.name, err)
			}
			continue
		}
		if in.State == runtime.StateFailed {
			continue
		}
		out := WaitState(t, d, spec.LeaseID, s.o.timeout, runtime.StateFailed)
		if out.Reason == "" {
			t.Errorf("%s: failed without a reason", c.name)
		}
	}
	cap1, err := d.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cap1.Free.Instances != cap1.Total.Instances {
		t.Errorf("refused appliances hold capacity: free %+v, total %+v", cap1.Free, cap1.Total)
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	d, tr := s.driver(t)
	ctx := ctxT(t)
	const n = 3
	specs := make([]runtime.Spec, n)
	for i := range specs {
		specs[i] = Spec(LeaseID(), s.exe)
		tr.addLease(specs[i].LeaseID)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range specs {
		wg.Go(func() { _, errs[i] = d.Provision(ctx, specs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("provision %d: %v", i, err)
		}
	}
	for _, spec := range specs {
		in := WaitState(t, d, spec.LeaseID, s.o.timeout, runtime.StateRunning)
		tr.addPID(s.pidOf(d, in))
		if got := s.mustGet(t, in.Endpoint, "/"); got != "lease "+spec.LeaseID+"\n" {
			t.Errorf("endpoint of %s answers %q", spec.LeaseID, got)
		}
	}
	for i := range specs {
		wg.Go(func() { _, errs[i] = d.Terminate(ctx, specs[i].LeaseID) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("terminate %d: %v", i, err)
		}
	}
	list, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.State != runtime.StateTerminated {
			t.Errorf("%s is %s after Terminate", in.LeaseID, in.State)
		}
	}
}

// testExtend provisions an instance with a short end, extends it, and
// checks that it outlives the old end plus the wall grace, and that
// Extend refuses an unknown or ended instance.
func (s *suite) testExtend(t *testing.T) {
	d, tr := s.driver(t)
	ctx := ctxT(t)
	if _, err := d.Extend(ctx, LeaseID(), time.Now().Add(time.Hour)); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Extend of an unknown lease: %v, want ErrNotFound", err)
	}
	spec := Spec(LeaseID(), s.exe)
	spec.Ends = time.Now().Add(3 * time.Second)
	s.start(t, d, tr, spec)
	newEnds := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	in, err := d.Extend(ctx, spec.LeaseID, newEnds)
	if err != nil {
		t.Fatalf("extend %s: %v", spec.LeaseID, err)
	}
	if !in.Ends.Equal(newEnds) || !in.State.Live() {
		t.Errorf("extended instance: ends %v, state %s; want %v, live", in.Ends, in.State, newEnds)
	}
	// Past the old end and its grace, the instance still runs.
	past := spec.Ends.Add(s.o.wallGrace + 500*time.Millisecond)
	for time.Now().Before(past) {
		in, err := d.Instance(ctx, spec.LeaseID)
		if err != nil {
			t.Fatalf("instance %s: %v", spec.LeaseID, err)
		}
		if !in.State.Live() {
			t.Fatalf("extended instance ended at its old end: %s (%s)", in.State, in.Reason)
		}
		wait(50 * time.Millisecond)
	}
	if _, err := d.List(ctx); err != nil { // a poll runs the backstop too
		t.Fatal(err)
	}
	in, err = d.Instance(ctx, spec.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	if !in.State.Live() || !in.Ends.Equal(newEnds) {
		t.Fatalf("after the old end: state %s (%s), ends %v; want live, %v", in.State, in.Reason, in.Ends, newEnds)
	}
	s.mustGet(t, in.Endpoint, "/")
	if _, err := d.Terminate(ctx, spec.LeaseID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Extend(ctx, spec.LeaseID, newEnds); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("Extend of a terminated instance: %v, want ErrInvalid", err)
	}
}
