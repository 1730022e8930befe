package runtime_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	"github.com/spotmesh/spotmesh/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var total = runtime.Resources{VCPU: 4, Memory: 8 << 30, Disk: 100 << 30, Instances: 10}

type harness struct {
	t      *testing.T
	clk    *clock.Mock
	fake   *drivertest.Fake
	rt     *runtime.Runtime
	events chan runtime.Event
}

func newHarness(t *testing.T, prepare func(*drivertest.Fake)) *harness {
	t.Helper()
	h := &harness{t: t, clk: clock.NewMock(), events: make(chan runtime.Event, 100)}
	h.clk.Set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	h.fake = drivertest.NewFake(h.clk, total)
	if prepare != nil {
		prepare(h.fake)
	}
	rt, err := runtime.New(runtime.DefaultConfig(), h.fake, h.clk, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ev runtime.Event) { h.events <- ev })
	if err != nil {
		t.Fatal(err)
	}
	h.rt = rt
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return h
}

// next returns the next event, failing after a second of real time.
func (h *harness) next() runtime.Event {
	h.t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(5 * time.Second):
		h.t.Fatal("no event")
		return runtime.Event{}
	}
}

// advanceUntil moves the mock clock in steps until an event of kind comes,
// as the loop may not have armed its timer when the clock first moves.
func (h *harness) advanceUntil(step time.Duration, kind runtime.EventKind) runtime.Event {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.clk.Add(step)
		select {
		case ev := <-h.events:
			if ev.Kind == kind {
				return ev
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	h.t.Fatalf("no event of kind %d after advancing the clock", kind)
	return runtime.Event{}
}

func (h *harness) drain() {
	for {
		select {
		case <-h.events:
		default:
			return
		}
	}
}

func spec(id string) runtime.Spec {
	return runtime.Spec{
		LeaseID:   id,
		Appliance: runtime.Appliance{CID: cid.MustParse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")},
		Limits:    runtime.Limits{VCPU: 1, Memory: 1 << 30, Disk: 10 << 30},
	}
}

func TestRecoveredAtStart(t *testing.T) {
	h := newHarness(t, func(f *drivertest.Fake) {
		if _, err := f.Provision(context.Background(), spec("old")); err != nil {
			t.Fatal(err)
		}
	})
	ev := h.next()
	if ev.Kind != runtime.InstanceChanged || !ev.Recovered || ev.Instance.LeaseID != "old" || ev.Previous != "" {
		t.Fatalf("first event %+v, want the recovered instance", ev)
	}
	if _, ok := h.rt.Instance("old"); !ok {
		t.Error("recovered instance not known")
	}
	// The first poll follows at once: capacity.
	ev = h.next()
	if ev.Kind != runtime.CapacityChanged || ev.Capacity.Free.Instances != total.Instances-1 {
		t.Fatalf("second event %+v, want the first capacity, one slot taken", ev)
	}
}

func TestStateChangesOnSchedule(t *testing.T) {
	h := newHarness(t, func(f *drivertest.Fake) { f.SetAutoRun(false) })
	cfg := runtime.DefaultConfig()
	h.next() // first capacity
	in, err := h.rt.Provision(context.Background(), spec("a"))
	if err != nil || in.State != runtime.StateProvisioning {
		t.Fatalf("provision: %v %s", err, in.State)
	}
	// Provision has the next poll come at once.
	got := map[runtime.EventKind]runtime.Event{}
	for len(got) < 2 {
		ev := h.next()
		got[ev.Kind] = ev
	}
	if ev := got[runtime.InstanceChanged]; ev.Instance.State != runtime.StateProvisioning || ev.Previous != "" {
		t.Errorf("after provision: %+v", ev)
	}
	if ev := got[runtime.CapacityChanged]; ev.Capacity.Free.VCPU != 3 || ev.Capacity.Profiles[0].Slots != 3 {
		t.Errorf("capacity after provision: %+v", ev.Capacity)
	}
	// While provisioning, polls come every FastPollInterval.
	if err := h.fake.SetState("a", runtime.StateRunning, ""); err != nil {
		t.Fatal(err)
	}
	ev := h.advanceUntil(cfg.FastPollInterval, runtime.InstanceChanged)
	if ev.Previous != runtime.StateProvisioning || ev.Instance.State != runtime.StateRunning {
		t.Errorf("%+v, want provisioning → running", ev)
	}
	// Then every PollInterval: a fast step alone does not poll.
	if err := h.fake.SetState("a", runtime.StateExited, "exited with status 1"); err != nil {
		t.Fatal(err)
	}
	h.clk.Add(cfg.FastPollInterval)
	select {
	case ev := <-h.events:
		if ev.Kind == runtime.InstanceChanged {
			t.Errorf("polled after %v though nothing provisions: %+v", cfg.FastPollInterval, ev)
		}
	case <-time.After(50 * time.Millisecond):
	}
	ev = h.advanceUntil(cfg.PollInterval, runtime.InstanceChanged)
	if ev.Previous != runtime.StateRunning || ev.Instance.State != runtime.StateExited || ev.Instance.Reason == "" {
		t.Errorf("%+v, want running → exited with a reason", ev)
	}
}

func TestTerminateAndCapacityBack(t *testing.T) {
	h := newHarness(t, nil)
	h.next()
	if _, err := h.rt.Provision(context.Background(), spec("a")); err != nil {
		t.Fatal(err)
	}
	if err := h.rt.PollNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.drain()
	out, err := h.rt.Terminate(context.Background(), "a")
	if err != nil || out.State != runtime.StateTerminated {
		t.Fatalf("terminate: %v %s", err, out.State)
	}
	if err := h.rt.PollNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sawState, sawCap bool
	for !sawState || !sawCap {
		ev := h.next()
		switch ev.Kind {
		case runtime.InstanceChanged:
			sawState = ev.Instance.State == runtime.StateTerminated && ev.Previous == runtime.StateRunning
		case runtime.CapacityChanged:
			sawCap = ev.Capacity.Free == total
		}
	}
	c, ok := h.rt.Capacity()
	if !ok || c.Free != total {
		t.Errorf("capacity %+v %v", c, ok)
	}
	if ins := h.rt.Instances(); len(ins) != 1 || ins[0].State != runtime.StateTerminated {
		t.Errorf("instances %+v", ins)
	}
}

func TestLoad(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := h.rt.Provision(context.Background(), spec("a")); err != nil {
		t.Fatal(err)
	}
	if err := h.rt.PollNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 2 s of CPU in 5 s on 4 vCPU: a load of 0.1.
	if err := h.fake.AddUsage("a", 2*time.Second, 1<<20); err != nil {
		t.Fatal(err)
	}
	h.clk.Add(5 * time.Second)
	if err := h.rt.PollNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := h.rt.Load(); math.Abs(l-0.1) > 1e-9 {
		t.Errorf("load %v, want 0.1", l)
	}
}

func TestDriverDown(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := h.rt.Provision(context.Background(), spec("a")); err != nil {
		t.Fatal(err)
	}
	if err := h.rt.PollNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.drain()
	h.fake.SetError(errors.New("connection refused"))
	err := h.rt.PollNow(context.Background())
	if !errors.Is(err, runtime.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("poll of a driver that is down: %v", err)
	}
	if in, ok := h.rt.Instance("a"); !ok || in.State != runtime.StateRunning {
		t.Errorf("a failed poll changed what is known: %+v %v", in, ok)
	}
	select {
	case ev := <-h.events:
		t.Errorf("event from a failed poll: %+v", ev)
	default:
	}
	h.fake.SetError(nil)
	if err := h.rt.PollNow(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestClosed(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.Close()
	h.rt.Close()
	if _, err := h.rt.Provision(context.Background(), spec("a")); !errors.Is(err, runtime.ErrClosed) {
		t.Errorf("provision after close: %v", err)
	}
	if err := h.rt.PollNow(context.Background()); !errors.Is(err, runtime.ErrClosed) {
		t.Errorf("poll after close: %v", err)
	}
	if err := h.rt.Start(context.Background()); !errors.Is(err, runtime.ErrClosed) {
		t.Errorf("start after close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*runtime.Config)
		bad  string
	}{
		{"default", func(*runtime.Config) {}, ""},
		{"poll", func(c *runtime.Config) { c.PollInterval = 0 }, "PollInterval"},
		{"fast > poll", func(c *runtime.Config) { c.FastPollInterval = time.Minute }, "FastPollInterval"},
		{"timeout", func(c *runtime.Config) { c.CallTimeout = -1 }, "CallTimeout"},
	} {
		cfg := runtime.DefaultConfig()
		c.mod(&cfg)
		err := cfg.Validate()
		if (err == nil) != (c.bad == "") || err != nil && (!errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*runtime.Spec)
		bad  string
	}{
		{"ok", func(*runtime.Spec) {}, ""},
		{"cid lease id", func(s *runtime.Spec) { s.LeaseID = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" }, ""},
		{"empty id", func(s *runtime.Spec) { s.LeaseID = "" }, "lease ID"},
		{"dot id", func(s *runtime.Spec) { s.LeaseID = ".x" }, "lease ID"},
		{"slash id", func(s *runtime.Spec) { s.LeaseID = "a/b" }, "lease ID"},
		{"long id", func(s *runtime.Spec) { s.LeaseID = strings.Repeat("a", 129) }, "lease ID"},
		{"no appliance", func(s *runtime.Spec) { s.Appliance = runtime.Appliance{} }, "Appliance"},
		{"no vcpu", func(s *runtime.Spec) { s.Limits.VCPU = 0 }, "VCPU"},
		{"tiny memory", func(s *runtime.Spec) { s.Limits.Memory = 1000 }, "Memory"},
		{"tiny disk", func(s *runtime.Spec) { s.Limits.Disk = 0 }, "Disk"},
		{"huge key", func(s *runtime.Spec) { s.AccessKey = strings.Repeat("k", runtime.MaxAccessKey+1) }, "AccessKey"},
		{"env name", func(s *runtime.Spec) { s.Env = map[string]string{"lower": "x"} }, "Env"},
		{"env reserved", func(s *runtime.Spec) { s.Env = map[string]string{"SPOTMESH_LEASE_ID": "x"} }, "SPOTMESH_LEASE_ID"},
		{"env nul", func(s *runtime.Spec) { s.Env = map[string]string{"A": "x\x00"} }, "NUL"},
	} {
		s := spec("lease-1")
		c.mod(&s)
		err := s.Validate()
		if (err == nil) != (c.bad == "") || err != nil && (!errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestResourcesFits(t *testing.T) {
	r := runtime.Resources{VCPU: 8, Memory: 16 << 30, Disk: 100 << 30, Instances: 3}
	for _, c := range []struct {
		hw   protocol.Hardware
		want uint32
	}{
		{protocol.Hardware{VCPU: 2, Memory: 2 << 30, Disk: 10 << 30}, 3},                                         // slots bind
		{protocol.Hardware{VCPU: 4, Memory: 2 << 30, Disk: 10 << 30}, 2},                                         // vCPU binds
		{protocol.Hardware{VCPU: 1, Memory: 8 << 30, Disk: 10 << 30}, 2},                                         // memory binds
		{protocol.Hardware{VCPU: 1, Memory: 1 << 30, Disk: 60 << 30}, 1},                                         // disk binds
		{protocol.Hardware{VCPU: 16, Memory: 1 << 30, Disk: 1 << 30}, 0},                                         // too big
		{protocol.Hardware{VCPU: 0, Memory: 0, Disk: 0}, 3},                                                      // nothing asked
		{protocol.Hardware{VCPU: 1, Memory: 1, Disk: 1}, r.Fits(protocol.Hardware{VCPU: 1, Memory: 1, Disk: 1})}, // consistent
	} {
		if got := r.Fits(c.hw); got != c.want {
			t.Errorf("Fits(%+v) = %d, want %d", c.hw, got, c.want)
		}
	}
	if got := r.Sub(runtime.Limits{VCPU: 10, Memory: 1, Disk: 1}); got.VCPU != 0 || got.Instances != 2 {
		t.Errorf("Sub below zero: %+v", got)
	}
}
