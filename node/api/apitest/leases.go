package apitest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/protocol"
)

// RefusedKey is an offer key the fake lease service always refuses with
// no_capacity.
const RefusedKey = "refuse"

// FakeEndpoint is the endpoint of every fake lease.
const FakeEndpoint = "127.0.0.1:9"

// FakeLeases is an api.Leases in memory: every proposal is granted at
// once and runs at FakeEndpoint, except to offers keyed RefusedKey. Best
// walks the Fake's book; a query that matches nothing fails with
// lease.ErrNoOffer.
type FakeLeases struct {
	f *Fake

	mu     sync.Mutex // guards the fields below
	leases map[cid.Cid]*lease.Info
	n      int
	denied []lease.Denied
	paused map[string]bool
	refuse map[string]bool
}

var _ api.Leases = (*FakeLeases)(nil)

func newFakeLeases(f *Fake) *FakeLeases {
	return &FakeLeases{f: f, leases: map[cid.Cid]*lease.Info{}, paused: map[string]bool{}, refuse: map[string]bool{RefusedKey: true}}
}

// Refuse makes proposals to offers with key refused (no_capacity).
func (l *FakeLeases) Refuse(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refuse[key] = true
}

// Paused reports whether the offer with key was paused.
func (l *FakeLeases) Paused(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.paused[key]
}

// Propose implements api.Leases.
func (l *FakeLeases) Propose(ctx context.Context, o *protocol.Offer, p lease.Params) (*lease.Info, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refuse[o.Key] {
		return nil, &lease.RejectedError{Seller: o.Seller, Offer: o.ID(), Reason: protocol.ReasonNoCapacity, Detail: "all slots are taken"}
	}
	l.n++
	id := protocol.CIDOf(fmt.Appendf(nil, "lease %d", l.n))
	pc := protocol.CIDOf(fmt.Appendf(nil, "proposal %d", l.n))
	in := &lease.Info{
		ID: id, Proposal: pc, Role: lease.RoleBuyer, Buyer: l.f.ID, Seller: o.Seller, Offer: o.ID(),
		State: protocol.StateRunning, Endpoint: FakeEndpoint, Slots: max(p.Slots, 1), Price: o.Price,
		Start: l.f.Now, Ends: l.f.Now.Add(p.Length), AcceptedAt: l.f.Now, Appliance: p.Appliance, Updated: l.f.Now,
	}
	l.leases[id] = in
	cp := *in
	return &cp, nil
}

// Add stores a lease as given (for tests of listing and ending).
func (l *FakeLeases) Add(in *lease.Info) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cp := *in
	l.leases[in.ID] = &cp
}

// Best implements api.Leases.
func (l *FakeLeases) Best(ctx context.Context, q market.Query, p lease.Params) (*lease.Info, []lease.Attempt, error) {
	var tried []lease.Attempt
	for _, e := range l.f.Book(q) {
		in, err := l.Propose(ctx, e.Offer, p)
		if err == nil {
			return in, tried, nil
		}
		tried = append(tried, lease.Attempt{Offer: e.Offer.ID(), CID: e.CID, Err: err})
	}
	return nil, tried, fmt.Errorf("lease: best: %w: %d offers tried or skipped; widen the query", lease.ErrNoOffer, len(tried))
}

func (l *FakeLeases) get(id cid.Cid) (*lease.Info, error) {
	in, ok := l.leases[id]
	if !ok {
		return nil, fmt.Errorf("lease %s: %w", id, lease.ErrNotFound)
	}
	return in, nil
}

// Renew implements api.Leases.
func (l *FakeLeases) Renew(ctx context.Context, id cid.Cid, extend time.Duration) (*lease.Info, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	in, err := l.get(id)
	if err != nil {
		return nil, err
	}
	if in.State == protocol.StateEnded {
		return nil, fmt.Errorf("lease %s: renew: %w", id, lease.ErrEnded)
	}
	in.Ends = in.Ends.Add(extend)
	in.Extensions++
	cp := *in
	return &cp, nil
}

// End implements api.Leases.
func (l *FakeLeases) End(ctx context.Context, id cid.Cid) (*lease.Info, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	in, err := l.get(id)
	if err != nil {
		return nil, err
	}
	if in.State != protocol.StateEnded {
		in.State, in.Cause, in.Endpoint = protocol.StateEnded, protocol.CauseEndedByBuyer, ""
	}
	cp := *in
	return &cp, nil
}

// Refresh implements api.Leases.
func (l *FakeLeases) Refresh(ctx context.Context, id cid.Cid) (*lease.Info, error) { return l.Get(id) }

// Get implements api.Leases.
func (l *FakeLeases) Get(id cid.Cid) (*lease.Info, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	in, err := l.get(id)
	if err != nil {
		return nil, err
	}
	cp := *in
	return &cp, nil
}

// List implements api.Leases.
func (l *FakeLeases) List(role lease.Role) ([]*lease.Info, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*lease.Info
	for _, in := range l.leases {
		if role == "" || in.Role == role {
			cp := *in
			out = append(out, &cp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	return out, nil
}

// Deny implements api.Leases.
func (l *FakeLeases) Deny(ctx context.Context, p peer.ID, note string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, d := range l.denied {
		if d.Peer == p {
			l.denied[i].Note = note
			return nil
		}
	}
	l.denied = append(l.denied, lease.Denied{Peer: p, Note: note, At: l.f.Now})
	return nil
}

// Allow implements api.Leases.
func (l *FakeLeases) Allow(ctx context.Context, p peer.ID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, d := range l.denied {
		if d.Peer == p {
			l.denied = append(l.denied[:i], l.denied[i+1:]...)
			return nil
		}
	}
	return nil
}

// ListDenied implements api.Leases.
func (l *FakeLeases) ListDenied() []lease.Denied {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]lease.Denied(nil), l.denied...)
}

func (l *FakeLeases) setPaused(key string, paused bool) error {
	l.f.mu.Lock()
	_, ok := l.f.own[key]
	l.f.mu.Unlock()
	if !ok {
		return fmt.Errorf("offer %q: %w", key, api.ErrNotFound)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paused[key] = paused
	return nil
}

// Pause implements api.Leases.
func (l *FakeLeases) Pause(ctx context.Context, key string) error { return l.setPaused(key, true) }

// Resume implements api.Leases.
func (l *FakeLeases) Resume(ctx context.Context, key string) error { return l.setPaused(key, false) }

// FakeInstance is the one instance the Fake's runtime reports.
func FakeInstance(now time.Time) runtime.Instance {
	return runtime.Instance{
		LeaseID: protocol.CIDOf([]byte("instance")).String(), State: runtime.StateRunning, Endpoint: FakeEndpoint, PID: 4242,
		Created: now, Started: now, Ends: now.Add(time.Hour),
		Limits:     runtime.Limits{VCPU: 2, Memory: 1 << 30, Disk: 10 << 30},
		Enforced:   []runtime.Enforcement{{Limit: runtime.LimitVCPU, Mechanism: "rlimit", Control: "RLIMIT_CPU", Value: "unlimited"}},
		LimitNotes: []string{"disk: not enforced: no cgroup v2"},
		Usage:      runtime.Usage{CPU: 3 * time.Second, Wall: time.Minute, MemoryPeak: 10 << 20},
	}
}
