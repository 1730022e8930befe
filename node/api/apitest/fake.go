package apitest

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/protocol"
)

// Token is a bearer token good enough for tests.
const Token = "0123456789abcdef0123456789abcdef"

// Fake is an api.Backend in memory. Its book holds three offers from three
// sellers (keys a, b, c in eu-de, eu-fr and us-east with 4, 8 and 2 vCPUs);
// its own offers start empty. Book filters by VCPU and Limit only.
type Fake struct {
	// ID is the fake node's peer ID; Key its private key.
	ID  peer.ID
	Key crypto.PrivKey
	// Now is the fake's clock: offers are issued at Now and live 10m.
	Now time.Time
	// Registry backs Gatherer; it holds one counter, spotmesh_test_total = 1.
	Registry *prometheus.Registry
	// Appl backs Appliances: a real appliance service (NewAppliances
	// makes one), or nil for a node without one. Set it before serving.
	Appl api.Appliances

	mu         sync.Mutex // guards the fields below
	own        map[string]offers.Status
	book       []market.Entry
	lastQuery  market.Query
	connectErr error
	addErr     error
	peers      []api.PeerInfo
	// Leases backs LeaseService; NoLeases makes LeaseService return nil.
	Leases   *FakeLeases
	NoLeases bool
	// Insts are what Instances returns (one FakeInstance to begin with).
	Insts []runtime.Instance
	// Ledger backs SettleService (empty to begin with; AddSample fills
	// it); NoSettle makes SettleService return nil.
	Ledger   *FakeSettle
	NoSettle bool
	// backupData and backupErr are what Backup writes and returns
	// (SetBackup).
	backupData []byte
	backupErr  error
}

var _ api.Backend = (*Fake)(nil)

// NewFake makes a Fake.
func NewFake(t testing.TB) *Fake {
	t.Helper()
	k, id := NewKey(t)
	f := &Fake{Key: k, ID: id, Now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), own: map[string]offers.Status{}}
	f.Leases = newFakeLeases(f)
	f.Ledger = newFakeSettle()
	f.Insts = []runtime.Instance{FakeInstance(f.Now)}
	f.Registry = prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "spotmesh_test_total", Help: "A test counter."})
	f.Registry.MustRegister(c)
	c.Inc()
	_, other := NewKey(t)
	f.peers = []api.PeerInfo{{ID: other, Addrs: []string{"/ip4/127.0.0.1/tcp/4002"}, Latency: 3 * time.Millisecond}}
	for i, spec := range []offers.Spec{Spec("a", "eu-de", 4, 40000), Spec("b", "eu-fr", 8, 90000), Spec("c", "us-east", 2, 20000)} {
		sk, _ := NewKey(t)
		o, c := sign(sk, spec, f.Now, false)
		f.book = append(f.book, market.Entry{Offer: o, CID: c, ReceivedAt: f.Now.Add(time.Duration(i) * time.Second)})
	}
	return f
}

// NewKey makes an Ed25519 key and its peer ID.
func NewKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// Spec is a complete offer spec: profile c<vcpu>m<2*vcpu>, 2 GiB a vCPU,
// 40 GiB disk, 10 slots, leases of 1m to 72h.
func Spec(key, region string, vcpu uint32, micro int64) offers.Spec {
	return offers.Spec{
		Key: key, Region: region,
		Hardware:  protocol.Hardware{Profile: fmt.Sprintf("c%dm%d", vcpu, 2*vcpu), VCPU: vcpu, Memory: uint64(2*vcpu) << 30, Disk: 40 << 30, Arch: "amd64"},
		Slots:     10,
		Price:     protocol.Price{Micro: micro, Currency: "USD"},
		MinLease:  time.Minute,
		MaxLease:  72 * time.Hour,
		Renewable: true,
		Formats:   []string{"bundle"}, MaxApplianceSize: 20 << 30,
		ReceiptInterval: time.Minute, PaymentGrace: 5 * time.Minute, TTL: 10 * time.Minute,
	}
}

func sign(key crypto.PrivKey, s offers.Spec, now time.Time, withdrawn bool) (*protocol.Offer, cid.Cid) {
	id, _ := peer.IDFromPrivateKey(key)
	o := &protocol.Offer{
		Version: protocol.OfferVersion, Seller: id, Key: s.Key, Region: s.Region, Hardware: s.Hardware,
		Slots: s.Slots, Price: s.Price, MinLease: protocol.MillisOf(s.MinLease), MaxLease: protocol.MillisOf(s.MaxLease),
		Renewable: s.Renewable, Formats: s.Formats, MaxApplianceSize: s.MaxApplianceSize,
		ReceiptInterval: protocol.MillisOf(s.ReceiptInterval), PaymentGrace: protocol.MillisOf(s.PaymentGrace),
		PerBuyerCap: s.PerBuyerCap, Addrs: []string{"/ip4/127.0.0.1/tcp/4001"},
		IssuedAt: protocol.TimeOf(now), ExpiresAt: protocol.TimeOf(now.Add(10 * time.Minute)), Withdrawn: withdrawn,
	}
	b, err := protocol.Sign(o, key)
	if err != nil {
		panic(err) // the key is the seller's by construction
	}
	return o, protocol.CIDOf(b)
}

// Identity implements api.Backend.
func (f *Fake) Identity() api.Identity {
	return api.Identity{PeerID: f.ID, Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + f.ID.String()}, Version: "test", Started: f.Now}
}

// Peers implements api.Backend.
func (f *Fake) Peers() []api.PeerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.PeerInfo(nil), f.peers...)
}

// SetPeers replaces the connected peers.
func (f *Fake) SetPeers(ps []api.PeerInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = ps
}

// Connect implements api.Backend: it fails with the error SetConnectErr
// set, or returns the peer ID in addr.
func (f *Fake) Connect(ctx context.Context, addr string) (peer.ID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connectErr != nil {
		return "", f.connectErr
	}
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return "", err
	}
	return ai.ID, nil
}

// SetConnectErr makes Connect fail with err (nil: succeed).
func (f *Fake) SetConnectErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connectErr = err
}

// SetAddErr makes AddOffer fail with err (nil: succeed).
func (f *Fake) SetAddErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addErr = err
}

// AddOffer implements api.Backend: it fills an empty key from the profile
// and a zero TTL with 10m, and signs a copy with the fake's key.
func (f *Fake) AddOffer(ctx context.Context, spec offers.Spec) (offers.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		return offers.Status{}, f.addErr
	}
	if spec.Key == "" {
		spec.Key = spec.Hardware.Profile
	}
	if spec.TTL == 0 {
		spec.TTL = 10 * time.Minute
	}
	o, c := sign(f.Key, spec, f.Now, false)
	st := offers.Status{Spec: spec, Current: o, CID: c, NextPublish: f.Now.Add(spec.TTL / 2)}
	f.own[spec.Key] = st
	return st, nil
}

// Offers implements api.Backend.
func (f *Fake) Offers() []offers.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]offers.Status, 0, len(f.own))
	for _, s := range f.own {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Key < out[j].Spec.Key })
	return out
}

// WithdrawOffer implements api.Backend, with offers.ErrNotFound and
// offers.ErrWithdrawn as the node returns them.
func (f *Fake) WithdrawOffer(ctx context.Context, key string) (offers.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.own[key]
	if !ok {
		return offers.Status{}, fmt.Errorf("offer %s: %w", key, offers.ErrNotFound)
	}
	if st.Withdrawn {
		return offers.Status{}, fmt.Errorf("offer %s: %w", key, offers.ErrWithdrawn)
	}
	st.Current, st.CID = sign(f.Key, st.Spec, f.Now, true)
	st.Withdrawn, st.NextPublish = true, time.Time{}
	f.own[key] = st
	return st, nil
}

// Book implements api.Backend, filtering by VCPU and Limit only.
func (f *Fake) Book(q market.Query) []market.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastQuery = q
	limit := q.Limit
	if limit == 0 {
		limit = market.DefaultLimit
	}
	var out []market.Entry
	for _, e := range f.book {
		if q.CID.Defined() && !e.CID.Equals(q.CID) {
			continue // the fake holds no replaced copies
		}
		if q.VCPU.Contains(uint64(e.Offer.Hardware.VCPU)) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out
}

// LastQuery is the query Book saw last.
func (f *Fake) LastQuery() market.Query {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastQuery
}

// BookSize implements api.Backend.
func (f *Fake) BookSize() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.book)
}

// Gatherer implements api.Backend.
func (f *Fake) Gatherer() prometheus.Gatherer { return f.Registry }

// Serve starts an api.Server over b on a free loopback port with Token,
// and closes it when the test ends.
func Serve(t testing.TB, b api.Backend) *api.Server {
	t.Helper()
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: Token}, b)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("api server close: %v", err)
		}
	})
	return s
}

// Appliances implements api.Backend.
func (f *Fake) Appliances() api.Appliances { return f.Appl }

// NewMocknet makes a libp2p mocknet, an in-process network without
// sockets, closed when the test ends. Hosts of one mocknet reach each
// other once linked (LinkAll).
func NewMocknet(t testing.TB) mocknet.Mocknet {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	return mn
}

// NewAppliances makes a started appliance service over an in-memory
// datastore and a new host of mn, and closes it when the test ends,
// before mn closes. Its config is appliance.DefaultConfig without DHT
// announcements and with a 2s idle timeout; tweak, if not nil, changes it.
// It returns the host too, whose addresses other services fetch from.
func NewAppliances(t testing.TB, mn mocknet.Mocknet, tweak func(*appliance.Config)) (*appliance.Service, host.Host) {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	cfg := appliance.DefaultConfig()
	cfg.Provide = false
	cfg.IdleTimeout = 2 * time.Second
	cfg.ConnectTimeout = 2 * time.Second
	if tweak != nil {
		tweak(&cfg)
	}
	ds := dssync.MutexWrap(datastore.NewMapDatastore())
	s, err := appliance.New(cfg, h, ds, nil, clock.New(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("appliance service close: %v", err)
		}
	})
	return s, h
}

// LeaseService implements api.Backend.
func (f *Fake) LeaseService() api.Leases {
	if f.NoLeases {
		return nil
	}
	return f.Leases
}

// Instances implements api.Backend.
func (f *Fake) Instances() []runtime.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]runtime.Instance(nil), f.Insts...)
}
