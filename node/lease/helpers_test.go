package lease

import (
	"context"
	"crypto/rand"
	"errors"
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

	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	)
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() && os.Getenv("LEASE_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is a set of nodes on one mock clock, on a mocknet or on loopback TCP.
type env struct {
	t   testing.TB
	clk *clock.Mock
	lim protocol.Limits
	cfg Config
	mn  mocknet.Mocknet // nil: real TCP hosts
	// prodStore: the store's default options, not the small test ones.
	prodStore bool
	nodes     []*tnode
}

func newEnv(t testing.TB) *env {
	clk := clock.NewMock()
	clk.Set(time.Now())
	e := &env{t: t, clk: clk, lim: protocol.DefaultLimits(), cfg: DefaultConfig()}
	e.cfg.RequestTimeout = 20 * time.Second
	e.cfg.PublishInterval = 0
	e.mn = mocknet.New()
	t.Cleanup(func() { _ = e.mn.Close() })
	return e
}

// newTCPEnv is an env whose hosts are real libp2p hosts on 127.0.0.1.
func newTCPEnv(t testing.TB) *env {
	clk := clock.NewMock()
	clk.Set(time.Now())
	e := &env{t: t, clk: clk, lim: protocol.DefaultLimits(), cfg: DefaultConfig()}
	e.cfg.PublishInterval = 0
	return e
}

// tnode is one node of an env: a host, a store, a queue and the service.
type tnode struct {
	*Service
	e      *env
	clk    *clock.Mock
	key    crypto.PrivKey
	id     peer.ID
	h      host.Host
	dir    string
	db     *store.DB
	q      *store.Queue
	offers *fakeOffers // a seller's
	prov   *fakeProv   // a seller's
	book   *fakeBook
}

func (e *env) newHost(key crypto.PrivKey) host.Host {
	e.t.Helper()
	if e.mn == nil {
		h, err := libp2p.New(
			libp2p.Identity(key),
			libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.DisableRelay(),
			libp2p.DisableMetrics(),
		)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { _ = h.Close() })
		return h
	}
	n := len(e.mn.Peers()) + 1
	a := ma.StringCast(fmt.Sprintf("/ip4/100.64.%d.%d/tcp/4001", n/250, n%250+1))
	h, err := e.mn.AddPeer(key, a)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range e.mn.Peers() {
		if p != h.ID() {
			if _, err := e.mn.LinkPeers(h.ID(), p); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	return h
}

// add makes a started node; a seller gets fake offers and a fake runtime.
func (e *env) add(seller bool) *tnode { return e.addWithClock(seller, e.clk) }

// addWithClock is add with the node's own clock.
func (e *env) addWithClock(seller bool, clk *clock.Mock) *tnode {
	e.t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	n := &tnode{e: e, key: key, id: id, dir: e.t.TempDir(), book: &fakeBook{}, clk: clk}
	n.h = e.newHost(key)
	if seller {
		n.offers = newFakeOffers(e.t, key, clk, n.h)
		n.prov = newFakeProv()
	}
	n.open()
	e.nodes = append(e.nodes, n)
	return n
}

func (e *env) seller() *tnode { return e.add(true) }

// key is a node with a key and nothing else: no host, store or service.
func (e *env) key() *tnode {
	e.t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	return &tnode{e: e, key: key, id: id, Service: &Service{self: id, cfg: e.cfg, lim: e.lim}}
}
func (e *env) buyer() *tnode { return e.add(false) }

// open opens the node's store and queue and starts its service.
func (n *tnode) open() {
	t := n.e.t
	t.Helper()
	opts := store.DefaultOptions(n.dir)
	if !n.e.prodStore {
		opts.MemTableSize = 1 << 20
	}
	opts.GCInterval = 0
	opts.Clock = n.clk
	db, err := store.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	q := store.NewQueue(db, store.QueueOptions{Clock: n.clk, MinBackoff: time.Second, MaxBackoff: time.Second})
	d := Deps{DB: db, Queue: q, Key: n.key, Book: n.book, Clock: n.clk, Limits: n.e.lim, Logger: testLogger(t)}
	if n.offers != nil {
		d.Offers, d.Provisioner = n.offers, n.prov
	}
	s, err := New(n.e.cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), n.h); err != nil {
		t.Fatal(err)
	}
	n.Service, n.db, n.q = s, db, q
	t.Cleanup(n.close)
}

// close stops the service, queue and store, as a node shutting down.
func (n *tnode) close() {
	if n.Service == nil {
		return
	}
	_ = n.Service.Close()
	_ = n.q.Close()
	if err := n.db.Close(); err != nil {
		n.e.t.Errorf("close store: %v", err)
	}
	n.Service = nil
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sampleOffer is an offer of key with generous terms.
func sampleOffer(key string) *protocol.Offer {
	return &protocol.Offer{
		Version: protocol.OfferVersion,
		Key:     key,
		Region:  "eu-de",
		Hardware: protocol.Hardware{
			Profile: "c4m8", VCPU: 4, Memory: 8 << 30, Disk: 40 << 30, Arch: "amd64",
		},
		Price:            protocol.Price{Micro: 40000, Currency: "USD"},
		MinLease:         protocol.MillisOf(time.Minute),
		MaxLease:         protocol.MillisOf(4 * time.Hour),
		Renewable:        true,
		Formats:          []string{"bundle", "qcow2"},
		MaxApplianceSize: 1 << 30,
		ReceiptInterval:  protocol.MillisOf(time.Minute),
		PaymentGrace:     protocol.MillisOf(5 * time.Minute),
	}
}

var testAppliance = protocol.CIDOf([]byte("appliance"))

// params are a buyer's usual choices.
func params(length time.Duration) Params {
	return Params{
		Length:          length,
		Appliance:       testAppliance,
		ApplianceSize:   10 << 20,
		ApplianceFormat: "bundle",
		AccessKey:       "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITest buyer@test",
	}
}

// fakeOffers is a seller's own offers, signed with its key.
type fakeOffers struct {
	t     testing.TB
	key   crypto.PrivKey
	id    peer.ID
	clk   clock.Clock
	h     host.Host
	mu    sync.Mutex
	offer map[string]*fakeOffer // guarded by mu
	gate  chan struct{}         // guarded by mu; when set, Offer waits for it to close
	gated chan struct{}         // signalled when Offer waits at the gate
}

type fakeOffer struct {
	cur       *protocol.Offer
	cid       cid.Cid
	capacity  uint32
	withdrawn bool
	frees     []uint32
}

func newFakeOffers(t testing.TB, key crypto.PrivKey, clk clock.Clock, h host.Host) *fakeOffers {
	id, _ := peer.IDFromPrivateKey(key)
	return &fakeOffers{t: t, key: key, id: id, clk: clk, h: h, offer: map[string]*fakeOffer{}, gated: make(chan struct{}, 1)}
}

// add publishes an offer with capacity slots.
func (f *fakeOffers) add(o *protocol.Offer, capacity uint32) *protocol.Offer {
	f.mu.Lock()
	f.offer[o.Key] = &fakeOffer{capacity: capacity}
	f.mu.Unlock()
	return f.change(o.Key, func(c *protocol.Offer) {
		*c = *o
		c.Slots = capacity
	})
}

// change signs and publishes a new copy of the offer, changed by mut.
func (f *fakeOffers) change(key string, mut func(*protocol.Offer)) *protocol.Offer {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	fo := f.offer[key]
	var o protocol.Offer
	if fo.cur != nil {
		o = *fo.cur
	}
	mut(&o)
	now := f.clk.Now()
	o.Version, o.Seller, o.Sig = protocol.OfferVersion, f.id, nil
	o.IssuedAt, o.ExpiresAt = protocol.TimeOf(now), protocol.TimeOf(now.Add(10*time.Minute))
	o.Addrs = nil
	for _, a := range f.h.Addrs() {
		o.Addrs = append(o.Addrs, a.Encapsulate(ma.StringCast("/p2p/"+f.id.String())).String())
	}
	raw, err := protocol.Sign(&o, f.key)
	if err != nil {
		f.t.Errorf("sign offer: %v", err)
		return nil
	}
	fo.cur, fo.cid = &o, protocol.CIDOf(raw)
	c := o
	return &c
}

// current is the newest copy, as a buyer's book has it.
func (f *fakeOffers) current(key string) *protocol.Offer {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *f.offer[key].cur
	return &c
}

func (f *fakeOffers) withdraw(key string) {
	f.change(key, func(o *protocol.Offer) { o.Withdrawn = true })
	f.mu.Lock()
	f.offer[key].withdrawn = true
	f.mu.Unlock()
}

// hold makes Offer wait until the returned function is called.
func (f *fakeOffers) hold() (release func()) {
	g := make(chan struct{})
	f.mu.Lock()
	f.gate = g
	f.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			f.mu.Lock()
			f.gate = nil
			f.mu.Unlock()
			close(g)
		})
	}
	f.t.Cleanup(release) // before the node closes, should the test fail
	return release
}

func (f *fakeOffers) Offer(key string) (OwnOffer, error) {
	f.mu.Lock()
	g := f.gate
	f.mu.Unlock()
	if g != nil {
		select {
		case f.gated <- struct{}{}:
		default:
		}
		<-g
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fo := f.offer[key]
	if fo == nil {
		return OwnOffer{}, errors.New("no such offer")
	}
	c := *fo.cur
	return OwnOffer{Current: &c, CID: fo.cid, Capacity: fo.capacity, Withdrawn: fo.withdrawn}, nil
}

func (f *fakeOffers) SetFree(ctx context.Context, key string, free uint32) error {
	f.mu.Lock()
	fo := f.offer[key]
	if fo == nil {
		f.mu.Unlock()
		return errors.New("no such offer")
	}
	fo.frees = append(fo.frees, free)
	f.mu.Unlock()
	f.change(key, func(o *protocol.Offer) { o.Slots = free })
	return nil
}

func (f *fakeOffers) SetPaused(ctx context.Context, key string, paused bool) error {
	f.change(key, func(o *protocol.Offer) { o.Paused = paused })
	return nil
}

// lastFree is the latest free count published, if any.
func (f *fakeOffers) lastFree(key string) (uint32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fr := f.offer[key].frees
	if len(fr) == 0 {
		return 0, false
	}
	return fr[len(fr)-1], true
}

// fakeProv records the runtime calls.
type fakeProv struct {
	mu          sync.Mutex
	provisioned map[cid.Cid]int
	terminated  map[cid.Cid][]protocol.EndCause
	failWith    error
	terminates  chan cid.Cid
	extended    map[cid.Cid][]time.Time
	// extendFails fails that many Extend calls first; extendTries counts
	// the calls.
	extendFails int
	extendTries int
}

func newFakeProv() *fakeProv {
	return &fakeProv{provisioned: map[cid.Cid]int{}, terminated: map[cid.Cid][]protocol.EndCause{}, terminates: make(chan cid.Cid, 4096), extended: map[cid.Cid][]time.Time{}}
}

func (p *fakeProv) Provision(ctx context.Context, id cid.Cid, l *protocol.Lease) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.provisioned[id]++
	return p.failWith
}

func (p *fakeProv) Terminate(ctx context.Context, id cid.Cid, cause protocol.EndCause) error {
	p.mu.Lock()
	p.terminated[id] = append(p.terminated[id], cause)
	p.mu.Unlock()
	p.terminates <- id
	return nil
}

var _ Extender = (*fakeProv)(nil)

func (p *fakeProv) Extend(ctx context.Context, id cid.Cid, ends time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.extendTries++
	if p.extendFails > 0 {
		p.extendFails--
		return errors.New("cloud busy")
	}
	p.extended[id] = append(p.extended[id], ends)
	return nil
}

func (p *fakeProv) tries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.extendTries
}

func (p *fakeProv) extensions(id cid.Cid) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.extended[id]...)
}

func (p *fakeProv) provisions(id cid.Cid) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.provisioned[id]
}

func (p *fakeProv) terminations(id cid.Cid) []protocol.EndCause {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]protocol.EndCause(nil), p.terminated[id]...)
}

// fakeBook returns its entries in order.
type fakeBook struct {
	mu      sync.Mutex
	entries []market.Entry
}

func (b *fakeBook) set(offers ...*protocol.Offer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.entries = nil
	for _, o := range offers {
		c, _ := o.CID()
		b.entries = append(b.entries, market.Entry{Offer: o, CID: c})
	}
}

func (b *fakeBook) Query(q market.Query) []market.Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []market.Entry
	for _, e := range b.entries {
		if e.Offer.Slots >= q.MinSlots {
			out = append(out, e)
		}
	}
	return out
}

// sendRaw sends a raw request from n to the seller and returns the
// answer's tag and body.
func (n *tnode) sendRaw(t testing.TB, seller *tnode, req []byte) answer {
	t.Helper()
	var addrs []string
	for _, a := range seller.h.Addrs() {
		addrs = append(addrs, a.String())
	}
	tag, body, err := n.roundTrip(context.Background(), n.h, seller.id, addrs, req, tagLease, tagRejection, tagExtension, tagLeaseStat)
	if err != nil {
		t.Fatal(err)
	}
	return answer{tag, body}
}

// answer is a seller's answer frame.
type answer struct {
	tag  byte
	body []byte
}

// rejection decodes a refusal the test expects.
func rejection(t testing.TB, ans answer) *protocol.LeaseRejection {
	t.Helper()
	tag, body := ans.tag, ans.body
	if tag != tagRejection {
		t.Fatalf("answer tag 0x%02x, want a rejection", tag)
	}
	r, err := protocol.DecodeLeaseRejection(body, protocol.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.VerifySignature(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// soldLeases returns the seller's leases by ID.
func (n *tnode) leasesByID(t testing.TB, role Role) map[cid.Cid]*Info {
	t.Helper()
	all, err := n.List(role)
	if err != nil {
		t.Fatal(err)
	}
	out := map[cid.Cid]*Info{}
	for _, in := range all {
		if in.ID.Defined() {
			out[in.ID] = in
		}
	}
	return out
}

func (n *tnode) state(t testing.TB, id cid.Cid) (protocol.LeaseState, protocol.EndCause) {
	t.Helper()
	in, err := n.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return in.State, in.Cause
}

func offerCID(o *protocol.Offer) cid.Cid {
	c, err := o.CID()
	if err != nil {
		panic(err)
	}
	return c
}
