package drivertest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/protocol"
)

var _ runtime.Driver = (*Fake)(nil)

// Fake is an in-memory driver for the tests of services that use one: no
// process runs, endpoints are made up, and the test moves instances
// between states, adds usage and makes calls fail. Instances go from
// provisioning to running at the first look after Provision unless
// AutoRun is off. Its methods are safe for concurrent use.
type Fake struct {
	clk clock.Clock

	mu       sync.Mutex // guards the fields below
	total    runtime.Resources
	profiles []protocol.Hardware
	insts    map[string]*runtime.Instance
	autoRun  bool
	err      error
	port     int
	closed   bool
}

// NewFake makes a fake cloud of the given size offering the profiles
// (one of 1 vCPU, 512 MiB, 1 GiB when none).
func NewFake(clk clock.Clock, total runtime.Resources, profiles ...protocol.Hardware) *Fake {
	if len(profiles) == 0 {
		profiles = []protocol.Hardware{{Profile: "p1m512", VCPU: 1, Memory: 512 << 20, Disk: 1 << 30, Arch: "amd64"}}
	}
	return &Fake{clk: clk, total: total, profiles: profiles, insts: map[string]*runtime.Instance{}, autoRun: true, port: 20000}
}

// SetAutoRun sets whether instances run at the first look after Provision.
func (f *Fake) SetAutoRun(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.autoRun = on
}

// SetError makes every call fail with err (wrapped) until set to nil: a
// cloud that is down.
func (f *Fake) SetError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// SetState moves an instance to state s with a reason; an ended state
// sets its end time.
func (f *Fake) SetState(leaseID string, s runtime.State, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.insts[leaseID]
	if !ok {
		return fmt.Errorf("fake: %s: %w", leaseID, runtime.ErrNotFound)
	}
	in.State, in.Reason = s, reason
	if !s.Live() && in.Ended.IsZero() {
		in.Ended = f.clk.Now()
	}
	return nil
}

// AddUsage adds CPU time and raises the memory peak of an instance.
func (f *Fake) AddUsage(leaseID string, cpu time.Duration, memPeak uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.insts[leaseID]
	if !ok {
		return fmt.Errorf("fake: %s: %w", leaseID, runtime.ErrNotFound)
	}
	in.Usage.CPU += cpu
	in.Usage.MemoryPeak = max(in.Usage.MemoryPeak, memPeak)
	return nil
}

func (f *Fake) check(op string) error {
	switch {
	case f.closed:
		return fmt.Errorf("fake %s: %w", op, runtime.ErrClosed)
	case f.err != nil:
		return fmt.Errorf("fake %s: %w: %w", op, runtime.ErrUnavailable, f.err)
	}
	return nil
}

// Name implements runtime.Driver.
func (f *Fake) Name() string { return "fake" }

// Recover implements runtime.Driver.
func (f *Fake) Recover(ctx context.Context) ([]runtime.Instance, error) { return f.List(ctx) }

// Capacity implements runtime.Driver.
func (f *Fake) Capacity(context.Context) (runtime.Capacity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("capacity"); err != nil {
		return runtime.Capacity{}, err
	}
	c := runtime.Capacity{Total: f.total, Free: f.freeLocked()}
	for _, in := range f.insts {
		if in.State.Live() {
			c.Utilization.Instances++
			c.Utilization.CPU += in.Usage.CPU
		}
	}
	for _, hw := range f.profiles {
		c.Profiles = append(c.Profiles, runtime.Profile{Hardware: hw, Slots: c.Free.Fits(hw)})
	}
	return c, nil
}

func (f *Fake) freeLocked() runtime.Resources {
	free := f.total
	for _, in := range f.insts {
		if in.State.Live() {
			free = free.Sub(in.Limits)
		}
	}
	return free
}

// Provision implements runtime.Driver.
func (f *Fake) Provision(ctx context.Context, spec runtime.Spec) (runtime.Instance, error) {
	if err := spec.Validate(); err != nil {
		return runtime.Instance{}, fmt.Errorf("provision: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("provision " + spec.LeaseID); err != nil {
		return runtime.Instance{}, err
	}
	if _, ok := f.insts[spec.LeaseID]; ok {
		return runtime.Instance{}, fmt.Errorf("provision %s: %w", spec.LeaseID, runtime.ErrExists)
	}
	if !f.freeLocked().Covers(spec.Limits) {
		return runtime.Instance{}, fmt.Errorf("provision %s: %w", spec.LeaseID, runtime.ErrNoCapacity)
	}
	now := f.clk.Now()
	f.port++
	in := &runtime.Instance{
		LeaseID: spec.LeaseID, State: runtime.StateProvisioning, Endpoint: fmt.Sprintf("127.0.0.1:%d", f.port), ExitCode: -1,
		Created: now, Started: now, Ends: spec.Ends, Limits: spec.Limits,
		Enforced: []runtime.Enforcement{{Limit: runtime.LimitMemory, Mechanism: "cloud", Control: "fake", Value: fmt.Sprint(spec.Limits.Memory)}},
	}
	f.insts[spec.LeaseID] = in
	return f.view(in), nil
}

// view copies an instance with its wall time. f.mu is held.
func (f *Fake) view(in *runtime.Instance) runtime.Instance {
	out := *in
	out.Enforced = slices.Clone(in.Enforced)
	end := f.clk.Now()
	if !in.Ended.IsZero() {
		end = in.Ended
	}
	out.Usage.Wall = max(0, end.Sub(in.Started))
	return out
}

// look is one look at an instance: AutoRun moves it to running. f.mu is
// held.
func (f *Fake) look(in *runtime.Instance) runtime.Instance {
	if f.autoRun && in.State == runtime.StateProvisioning {
		in.State = runtime.StateRunning
	}
	return f.view(in)
}

// Instance implements runtime.Driver.
func (f *Fake) Instance(_ context.Context, leaseID string) (runtime.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("instance " + leaseID); err != nil {
		return runtime.Instance{}, err
	}
	in, ok := f.insts[leaseID]
	if !ok {
		return runtime.Instance{}, fmt.Errorf("instance %s: %w", leaseID, runtime.ErrNotFound)
	}
	return f.look(in), nil
}

// List implements runtime.Driver.
func (f *Fake) List(context.Context) ([]runtime.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("list"); err != nil {
		return nil, err
	}
	out := make([]runtime.Instance, 0, len(f.insts))
	for _, in := range f.insts {
		out = append(out, f.look(in))
	}
	slices.SortFunc(out, func(a, b runtime.Instance) int { return cmp.Compare(a.LeaseID, b.LeaseID) })
	return out, nil
}

// Terminate implements runtime.Driver.
func (f *Fake) Terminate(_ context.Context, leaseID string) (runtime.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("terminate " + leaseID); err != nil {
		return runtime.Instance{}, err
	}
	in, ok := f.insts[leaseID]
	if !ok {
		return runtime.Instance{}, fmt.Errorf("terminate %s: %w", leaseID, runtime.ErrNotFound)
	}
	if in.State.Live() {
		in.State, in.Reason, in.Ended = runtime.StateTerminated, "terminated", f.clk.Now()
	}
	return f.view(in), nil
}

// Extend implements runtime.Driver.
func (f *Fake) Extend(_ context.Context, leaseID string, ends time.Time) (runtime.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("extend " + leaseID); err != nil {
		return runtime.Instance{}, err
	}
	in, ok := f.insts[leaseID]
	if !ok {
		return runtime.Instance{}, fmt.Errorf("extend %s: %w", leaseID, runtime.ErrNotFound)
	}
	if !in.State.Live() {
		return runtime.Instance{}, fmt.Errorf("extend %s: the instance has ended (%s): %w", leaseID, in.State, runtime.ErrInvalid)
	}
	if ends.IsZero() || !ends.After(f.clk.Now()) {
		return runtime.Instance{}, fmt.Errorf("extend %s: end %s is not in the future: %w", leaseID, ends.UTC().Format(time.RFC3339), runtime.ErrInvalid)
	}
	in.Ends = ends
	return f.view(in), nil
}

// Close implements runtime.Driver.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}
