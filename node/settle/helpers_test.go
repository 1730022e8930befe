package settle

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
	)
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() && os.Getenv("SETTLE_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is two or more parties on one mock clock and a mocknet.
type env struct {
	t   testing.TB
	clk *clock.Mock
	lim protocol.Limits
	cfg Config
	mn  mocknet.Mocknet
	// tcp: parties get real libp2p hosts on 127.0.0.1.
	tcp bool
}

func newEnv(t testing.TB) *env {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC))
	cfg := DefaultConfig()
	cfg.Probe = false
	cfg.Resend = time.Second
	cfg.ClaimAfter = 10 * time.Second
	cfg.RequestTimeout = 5 * time.Second
	cfg.DialTimeout = 2 * time.Second
	e := &env{t: t, clk: clk, lim: protocol.DefaultLimits(), cfg: cfg, mn: mocknet.New()}
	t.Cleanup(func() { _ = e.mn.Close() })
	return e
}

// party is one node: a key, a host, a store, a queue and the service.
type party struct {
	*Service
	e      *env
	clk    clock.Clock
	cfg    Config
	key    crypto.PrivKey
	id     peer.ID
	h      host.Host
	dir    string
	db     *store.DB
	q      *store.Queue
	leases *fakeLeases
	meter  *fakeMeter
	// tamper, if set, rewrites the seller's receipts after signing.
	tamper func(r *protocol.UsageReceipt, raw []byte) []byte
}

func (e *env) party() *party {
	e.t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	p := &party{e: e, clk: e.clk, cfg: e.cfg, key: key, id: id, dir: e.t.TempDir(), meter: &fakeMeter{}}
	p.leases = &fakeLeases{p: p, m: make(map[cid.Cid]*Lease)}
	if e.tcp {
		p.h, err = libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.DisableRelay(), libp2p.DisableMetrics())
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { _ = p.h.Close() })
		p.open()
		return p
	}
	n := len(e.mn.Peers()) + 1
	p.h, err = e.mn.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip4/100.64.0.%d/tcp/4001", n)))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, other := range e.mn.Peers() {
		if other != p.h.ID() {
			if _, err := e.mn.LinkPeers(p.h.ID(), other); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	p.open()
	return p
}

// open opens the party's store and queue and starts its service.
func (p *party) open() {
	t := p.e.t
	t.Helper()
	opts := store.DefaultOptions(p.dir)
	opts.MemTableSize = 4 << 20
	opts.GCInterval = 0
	opts.Clock = p.clk
	db, err := store.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	q := store.NewQueue(db, store.QueueOptions{Clock: p.clk, MinBackoff: time.Second, MaxBackoff: time.Second})
	s, err := New(p.cfg, Deps{DB: db, Queue: q, Key: p.key, Leases: p.leases, Meter: p.meter, Clock: p.clk, Limits: p.e.lim, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.tamper = p.tamper
	p.Service, p.db, p.q = s, db, q
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), p.h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
}

// close stops the service, queue and store, as a node shutting down.
func (p *party) close() {
	if p.Service == nil {
		return
	}
	_ = p.Service.Close()
	_ = p.q.Close()
	if err := p.db.Close(); err != nil {
		p.e.t.Errorf("close store: %v", err)
	}
	p.Service = nil
}

// fakeLeases is one party's leases.
type fakeLeases struct {
	p  *party
	mu sync.Mutex
	m  map[cid.Cid]*Lease // guarded by mu
}

func (f *fakeLeases) Lease(id cid.Cid, sold bool) (*Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.m[id]
	if !ok || l.Sold != sold {
		return nil, fmt.Errorf("lease %s: %w", id, ErrNotFound)
	}
	c := *l
	return &c, nil
}

func (f *fakeLeases) List(sold bool) ([]*Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Lease
	for _, l := range f.m {
		if l.Sold == sold {
			c := *l
			out = append(out, &c)
		}
	}
	return out, nil
}

// End ends a lease sold, as the lease service does, and tells the service.
func (f *fakeLeases) End(_ context.Context, id cid.Cid, detail string) error {
	f.set(id, func(l *Lease) {
		if l.State != protocol.StateEnded {
			l.State, l.Cause, l.Ended = protocol.StateEnded, protocol.CauseEndedBySeller, f.p.clk.Now()
		}
	})
	f.p.LeaseChanged(true, id)
	return nil
}

func (f *fakeLeases) set(id cid.Cid, fn func(*Lease)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.m[id])
}

func (f *fakeLeases) get(id cid.Cid) Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.m[id]
}

// fakeMeter reports fixed, growing counters.
type fakeMeter struct{ calls sync.Map }

func (m *fakeMeter) Usage(_ context.Context, id cid.Cid) (Usage, bool) {
	v, _ := m.calls.LoadOrStore(id, new(int64))
	n := v.(*int64)
	*n += 10
	return Usage{CPU: time.Duration(*n) * time.Millisecond, MemoryPeak: 64 << 20}, true
}

// terms are a lease's terms for tests.
type terms struct {
	price    protocol.Price
	slots    uint32
	length   time.Duration
	interval time.Duration
	grace    time.Duration
	start    time.Time // zero: now
}

func defaultTerms() terms {
	return terms{
		price:    protocol.Price{Micro: 123457, Currency: "USD"}, // 0.123457 USD/h: rounding matters
		slots:    3,
		length:   2 * time.Hour,
		interval: time.Second,
		grace:    5 * time.Second,
	}
}

// deal signs a lease between seller and buyer and gives both a copy, in
// state running (with endpoint), as the lease service would.
func (e *env) deal(seller, buyer *party, tm terms, endpoint string) cid.Cid {
	e.t.Helper()
	now := e.clk.Now()
	start := tm.start
	if start.IsZero() {
		start = now
	}
	nonce := make([]byte, protocol.NonceSize)
	_, _ = rand.Read(nonce)
	p := protocol.LeaseProposal{
		Version: protocol.LeaseProposalVersion, Buyer: buyer.id, Seller: seller.id,
		Offer: protocol.Link{Cid: protocol.CIDOf([]byte("offer"))}, OfferKey: "c4m8",
		Slots: tm.slots, Start: protocol.TimeOf(start), Length: protocol.MillisOf(tm.length),
		Price: tm.price, Appliance: protocol.Link{Cid: protocol.CIDOf([]byte("appliance"))},
		ApplianceSize: 1 << 20, ApplianceFormat: "bundle",
		ReceiptInterval: protocol.MillisOf(tm.interval), PaymentGrace: protocol.MillisOf(tm.grace),
		Nonce: nonce, IssuedAt: protocol.TimeOf(now), ExpiresAt: protocol.TimeOf(now.Add(time.Minute)),
	}
	if _, err := protocol.Sign(&p, buyer.key); err != nil {
		e.t.Fatal(err)
	}
	l := &protocol.Lease{Version: protocol.LeaseVersion, Seller: seller.id, Proposal: p, AcceptedAt: protocol.TimeOf(now)}
	raw, err := protocol.Sign(l, seller.key)
	if err != nil {
		e.t.Fatal(err)
	}
	id := protocol.CIDOf(raw)
	ends := start.Add(tm.length)
	for _, side := range []struct {
		p    *party
		sold bool
	}{{seller, true}, {buyer, false}} {
		side.p.leases.mu.Lock()
		side.p.leases.m[id] = &Lease{ID: id, Sold: side.sold, Lease: l, State: protocol.StateRunning, Ends: ends, Endpoint: endpoint}
		side.p.leases.mu.Unlock()
	}
	buyer.LeaseChanged(false, id)
	seller.LeaseChanged(true, id)
	waitFor(e.t, "billing to start", func() bool {
		var ok bool
		_ = seller.db.View(func(t *store.Txn) error {
			_, ok, _ = getState(t, true, id)
			return nil
		})
		return ok
	})
	return id
}

// end ends a lease on both sides at its end (expired) or now.
func (e *env) end(seller, buyer *party, id cid.Cid, cause protocol.EndCause) {
	now := e.clk.Now()
	for _, side := range []struct {
		p    *party
		sold bool
	}{{seller, true}, {buyer, false}} {
		side.p.leases.set(id, func(l *Lease) {
			l.State, l.Cause = protocol.StateEnded, cause
			l.Ended = now
			if now.After(l.Ends) {
				l.Ended = l.Ends
			}
		})
		if side.p.Service != nil {
			side.p.LeaseChanged(side.sold, id)
		}
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// summary reads a party's billing of a lease, failing the test on error.
func (p *party) summary(id cid.Cid) *Summary {
	p.e.t.Helper()
	s, err := p.Summary(id)
	if err != nil {
		p.e.t.Fatal(err)
	}
	return s
}

// caughtUp reports whether the seller issued every receipt due by now and
// the buyer answered them all.
func caughtUp(seller *party, id cid.Cid, want uint64) bool {
	var st *state
	_ = seller.db.View(func(t *store.Txn) error {
		st, _, _ = getState(t, true, id)
		return nil
	})
	return st != nil && st.Seq >= want && st.Answered == st.Seq
}

// advance moves the clock in steps, waiting after each for the seller to
// issue the receipts due and the buyer to answer them.
func (e *env) advance(seller *party, id cid.Cid, d, step time.Duration, since time.Time, interval time.Duration) {
	e.t.Helper()
	for done := time.Duration(0); done < d; {
		s := min(step, d-done)
		e.clk.Add(s)
		done += s
		want := uint64(e.clk.Now().Sub(since) / interval)
		waitFor(e.t, fmt.Sprintf("receipts to %d answered", want), func() bool { return caughtUp(seller, id, want) })
	}
}

// poll waits up to d for cond, and says whether it came to hold.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}
