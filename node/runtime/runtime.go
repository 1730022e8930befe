package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
)

// Config tunes a Runtime. Start from DefaultConfig.
type Config struct {
	// PollInterval is the period of polling the driver for instance
	// states, usage and capacity.
	PollInterval time.Duration
	// FastPollInterval is the period while some instance is provisioning,
	// so that a buyer waiting for it learns soon that it runs.
	FastPollInterval time.Duration
	// CallTimeout bounds one driver call made by a poll.
	CallTimeout time.Duration
}

// DefaultConfig returns the configuration of a node.
func DefaultConfig() Config {
	return Config{
		PollInterval:     5 * time.Second,
		FastPollInterval: 250 * time.Millisecond,
		CallTimeout:      30 * time.Second,
	}
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("runtime config: %s = %v: %s: %w", field, v, want, ErrInvalid)
	}
	switch {
	case c.PollInterval <= 0:
		return bad("PollInterval", c.PollInterval, "want a positive duration such as 5s")
	case c.FastPollInterval <= 0 || c.FastPollInterval > c.PollInterval:
		return bad("FastPollInterval", c.FastPollInterval, "want a positive duration no longer than PollInterval, such as 250ms")
	case c.CallTimeout <= 0:
		return bad("CallTimeout", c.CallTimeout, "want a positive duration such as 30s")
	}
	return nil
}

// EventKind tells what an Event reports.
type EventKind int

const (
	// InstanceChanged: an instance appeared or its state changed.
	InstanceChanged EventKind = iota + 1
	// CapacityChanged: the first capacity known, or free resources or a
	// profile's free slots changed.
	CapacityChanged
)

// Event is a change the Runtime saw.
type Event struct {
	Kind EventKind
	// Instance is the instance as last seen (InstanceChanged).
	Instance Instance
	// Previous is its state before, "" when the Runtime had not seen it.
	Previous State
	// Recovered marks instances reported by the driver's Recover at Start.
	Recovered bool
	// Capacity is the capacity as last seen (CapacityChanged).
	Capacity Capacity
}

// Runtime polls a driver on a schedule and reports instance state changes
// and capacity changes through a callback. The lease service provisions and
// terminates through it, so that the next poll comes at once.
type Runtime struct {
	cfg    Config
	d      Driver
	clk    clock.Clock
	log    *slog.Logger
	notify func(Event)

	// polls carries poll requests to the loop; a nil done asks for no
	// answer.
	polls chan chan error

	mu        sync.RWMutex // guards the fields below
	instances map[string]Instance
	capacity  Capacity
	hasCap    bool
	load      float64
	lastPoll  time.Time
	started   bool
	closed    bool

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New makes a Runtime over d. notify receives every Event, one at a time,
// from the Runtime's own goroutine (and from Start for the recovered
// instances); it must not block for long, and must not call PollNow. nil
// drops events. The Runtime does not own d: whoever built d closes it.
func New(cfg Config, d Driver, clk clock.Clock, log *slog.Logger, notify func(Event)) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d == nil || clk == nil || log == nil {
		return nil, fmt.Errorf("runtime: New needs a driver, a clock and a logger: %w", ErrInvalid)
	}
	if notify == nil {
		notify = func(Event) {}
	}
	r := &Runtime{
		cfg: cfg, d: d, clk: clk, log: log.With("service", "runtime", "driver", d.Name()), notify: notify,
		polls:     make(chan chan error, 16),
		instances: map[string]Instance{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Start asks the driver to recover the instances it knew (re-adopting
// those that still run), reports each as an Event with Recovered set, and
// starts polling. ctx bounds the recovery.
func (r *Runtime) Start(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return fmt.Errorf("runtime start: %w", ErrClosed)
	case r.started:
		r.mu.Unlock()
		return nil
	}
	r.started = true
	r.mu.Unlock()

	list, err := r.d.Recover(ctx)
	if err != nil {
		r.mu.Lock()
		r.started = false
		r.mu.Unlock()
		return fmt.Errorf("runtime start: recover %s instances: %w", r.d.Name(), err)
	}
	r.mu.Lock()
	for _, in := range list {
		r.instances[in.LeaseID] = in
	}
	r.lastPoll = r.clk.Now()
	r.mu.Unlock()
	live := 0
	for _, in := range list {
		if in.State.Live() {
			live++
		}
		r.notify(Event{Kind: InstanceChanged, Instance: in, Recovered: true})
	}
	r.log.Info("runtime started", "instances", len(list), "live", live)
	r.wg.Add(1)
	go r.loop()
	r.kick()
	return nil
}

// Close stops polling and waits for the Runtime's goroutine. It does not
// touch the instances or the driver. Close is idempotent.
func (r *Runtime) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// Provision provisions an instance through the driver, and has the next
// poll come at once.
func (r *Runtime) Provision(ctx context.Context, spec Spec) (Instance, error) {
	if err := r.usable("provision " + spec.LeaseID); err != nil {
		return Instance{}, err
	}
	in, err := r.d.Provision(ctx, spec)
	if err != nil {
		return Instance{}, err
	}
	r.kick()
	return in, nil
}

// Terminate terminates an instance through the driver, and has the next
// poll come at once.
func (r *Runtime) Terminate(ctx context.Context, leaseID string) (Instance, error) {
	if err := r.usable("terminate " + leaseID); err != nil {
		return Instance{}, err
	}
	in, err := r.d.Terminate(ctx, leaseID)
	if err != nil {
		return Instance{}, err
	}
	r.kick()
	return in, nil
}

// Extend moves an instance's end through the driver (its lease was
// renewed), and has the next poll come at once.
func (r *Runtime) Extend(ctx context.Context, leaseID string, ends time.Time) (Instance, error) {
	if err := r.usable("extend " + leaseID); err != nil {
		return Instance{}, err
	}
	in, err := r.d.Extend(ctx, leaseID, ends)
	if err != nil {
		return Instance{}, err
	}
	r.kick()
	return in, nil
}

// Instance returns an instance as the last poll saw it.
func (r *Runtime) Instance(leaseID string) (Instance, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	in, ok := r.instances[leaseID]
	return in, ok
}

// Instances returns every instance as the last poll saw it, by lease ID.
func (r *Runtime) Instances() []Instance {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Instance, 0, len(r.instances))
	for _, in := range r.instances {
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.LeaseID, b.LeaseID) })
	return out
}

// Capacity returns the capacity as the last poll saw it; false before the
// first poll that reached the driver.
func (r *Runtime) Capacity() (Capacity, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.capacity, r.hasCap
}

// Load is the CPU load of the live instances between the last two polls,
// as a fraction of the cloud's total vCPU (0.5: half of it busy).
func (r *Runtime) Load() float64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.load
}

// PollNow polls the driver at once and returns when the poll is done,
// with its error. It must not be called from the notify callback.
func (r *Runtime) PollNow(ctx context.Context) error {
	if err := r.usable("poll"); err != nil {
		return err
	}
	r.mu.RLock()
	started := r.started
	r.mu.RUnlock()
	if !started {
		return fmt.Errorf("poll: call Start first: %w", ErrInvalid)
	}
	done := make(chan error, 1)
	select {
	case r.polls <- done:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return fmt.Errorf("poll: %w", ErrClosed)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return fmt.Errorf("poll: %w", ErrClosed)
	}
}

func (r *Runtime) usable(op string) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return nil
}

// kick asks the loop for a poll without waiting for it.
func (r *Runtime) kick() {
	select {
	case r.polls <- nil:
	default: // a poll is pending already
	}
}

func (r *Runtime) loop() {
	defer r.wg.Done()
	t := r.clk.Timer(r.cfg.PollInterval)
	defer t.Stop()
	for {
		var done chan error
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case done = <-r.polls:
		}
		err := r.poll(r.ctx)
		if done != nil {
			done <- err
		}
		next := r.cfg.PollInterval
		if r.anyProvisioning() {
			next = r.cfg.FastPollInterval
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

func (r *Runtime) anyProvisioning() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, in := range r.instances {
		if in.State == StateProvisioning {
			return true
		}
	}
	return false
}

// poll lists the instances and the capacity, records them and reports the
// changes. Only the loop calls it.
func (r *Runtime) poll(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	list, lerr := r.d.List(cctx)
	if lerr != nil {
		lerr = fmt.Errorf("poll %s instances: %w", r.d.Name(), lerr)
		if ctx.Err() == nil {
			r.log.Warn("poll instances failed", "err", lerr)
		}
	}
	capa, cerr := r.d.Capacity(cctx)
	if cerr != nil {
		cerr = fmt.Errorf("poll %s capacity: %w", r.d.Name(), cerr)
		if ctx.Err() == nil {
			r.log.Warn("poll capacity failed", "err", cerr)
		}
	}
	now := r.clk.Now()

	var events []Event
	r.mu.Lock()
	if lerr == nil {
		var cpu time.Duration
		next := make(map[string]Instance, len(list))
		for _, in := range list {
			prev, seen := r.instances[in.LeaseID]
			if !seen || prev.State != in.State {
				events = append(events, Event{Kind: InstanceChanged, Instance: in, Previous: prev.State})
			}
			if seen && in.Usage.CPU > prev.Usage.CPU {
				cpu += in.Usage.CPU - prev.Usage.CPU
			}
			next[in.LeaseID] = in
		}
		r.instances = next
		total := r.capacity.Total.VCPU
		if cerr == nil {
			total = capa.Total.VCPU
		}
		if dt := now.Sub(r.lastPoll); dt > 0 && total > 0 {
			r.load = cpu.Seconds() / dt.Seconds() / float64(total)
		}
		r.lastPoll = now
	}
	if cerr == nil {
		if !r.hasCap || capacityChanged(r.capacity, capa) {
			events = append(events, Event{Kind: CapacityChanged, Capacity: capa})
		}
		r.capacity, r.hasCap = capa, true
	}
	r.mu.Unlock()

	for _, ev := range events {
		if ev.Kind == InstanceChanged {
			r.log.Info("instance state", "lease", ev.Instance.LeaseID, "from", ev.Previous, "to", ev.Instance.State, "endpoint", ev.Instance.Endpoint, "reason", ev.Instance.Reason)
		}
		r.notify(ev)
	}
	return errors.Join(lerr, cerr)
}

// capacityChanged reports a change of what offers publish: the total, the
// free resources, or a profile's free slots.
func capacityChanged(a, b Capacity) bool {
	if a.Total != b.Total || a.Free != b.Free || len(a.Profiles) != len(b.Profiles) {
		return true
	}
	for i := range a.Profiles {
		if a.Profiles[i] != b.Profiles[i] {
			return true
		}
	}
	return false
}
