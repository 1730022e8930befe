package node_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	)
}

func spec(key string) offers.Spec {
	return offers.Spec{
		Key:      key,
		Region:   "eu-de",
		Hardware: protocol.Hardware{Profile: "c4m8", VCPU: 4, Memory: 8 << 30, Disk: 40 << 30, Arch: "amd64"},
		Slots:    10,
		Price:    protocol.Price{Micro: 40000, Currency: "USD"},
		MaxLease: 72 * time.Hour,
	}
}

// offerToBuyer waits until seller and buyer are in each other's offers
// mesh (an offer published while a subscription is still on its way would
// reach the buyer only at the next republish, minutes later), has the
// seller offer sp and waits until the offer is in the buyer's book.
func offerToBuyer(ctx context.Context, t testing.TB, seller, buyer *node.Node, sp offers.Spec) protocol.OfferID {
	t.Helper()
	if err := testnet.WaitFor(ctx, func() bool { return seller.MeshPeers() > 0 && buyer.MeshPeers() > 0 }); err != nil {
		t.Fatal("buyer and seller never met in the offers topic's mesh")
	}
	st, err := seller.AddOffer(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	id := st.Current.ID()
	if err := testnet.WaitFor(ctx, func() bool { _, ok := bookSlots(buyer, id); return ok }); err != nil {
		t.Fatal("the offer did not reach the buyer")
	}
	return id
}

// bookSlots is the slots offer id has in n's book, and whether it is there.
func bookSlots(n *node.Node, id protocol.OfferID) (uint32, bool) {
	e, ok := n.MarketBook().Get(id)
	if !ok {
		return 0, false
	}
	return e.Offer.Slots, true
}

func initHome(t testing.TB, dir string, bootstrap ...string) node.Config {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Home = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Bootstrap = bootstrap
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func start(t testing.TB, cfg node.Config, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestRestartKeepsKeyOffersAndBook(t *testing.T) {
	dir := t.TempDir()
	acfg := initHome(t, filepath.Join(dir, "A"))
	a := start(t, acfg)
	aID := a.ID()
	bcfg := initHome(t, filepath.Join(dir, "B"), a.Identity().Addrs[0])
	b := start(t, bcfg)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Wait for B to see A on the topic before publishing.
	if err := testnet.WaitFor(ctx, func() bool { return len(a.Peers()) > 0 }); err != nil {
		t.Fatal("B never connected to A")
	}
	st, err := a.AddOffer(ctx, spec("warm-1"))
	if err != nil {
		t.Fatal(err)
	}
	id := st.Current.ID()
	if err := testnet.WaitFor(ctx, func() bool { _, ok := b.MarketBook().Get(id); return ok }); err != nil {
		t.Fatal("offer did not reach B")
	}
	firstIssued := st.Current.IssuedAt
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// B alone, with no peer to hear from: its book is warm from disk.
	b2 := start(t, bcfg)
	if _, ok := b2.MarketBook().Get(id); !ok {
		t.Fatal("restarted B's book is cold")
	}
	// A again, same home: same key, and its offer republished as a newer copy.
	acfg.Bootstrap = b2.Identity().Addrs[:1]
	a2 := start(t, acfg)
	if a2.ID() != aID {
		t.Fatalf("restart changed the peer ID: %s -> %s", aID, a2.ID())
	}
	if err := testnet.WaitFor(ctx, func() bool {
		e, ok := b2.MarketBook().Get(id)
		return ok && e.Offer.IssuedAt > firstIssued
	}); err != nil {
		t.Fatal("restarted A did not republish its offer")
	}
	own := a2.Offers()
	if len(own) != 1 || own[0].Spec.Key != "warm-1" || own[0].Withdrawn {
		t.Fatalf("own offers after restart: %+v", own)
	}
}

func TestInitKeepsKey(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.Home = t.TempDir()
	id1, err := node.Init(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := node.Init(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Fatal("init replaced the key")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*node.Config)
	}{
		{"no listen", func(c *node.Config) { c.Listen = nil }},
		{"bad listen", func(c *node.Config) { c.Listen = []string{"tcp:4001"} }},
		{"bad bootstrap", func(c *node.Config) { c.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1"} }},
		{"bad api", func(c *node.Config) { c.API = "5001" }},
		{"bad dht", func(c *node.Config) { c.DHTMode = "maybe" }},
		{"bad log", func(c *node.Config) { c.LogLevel = "loud" }},
		{"bad ttl", func(c *node.Config) { c.OfferTTL = node.Duration(time.Millisecond) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := node.DefaultConfig()
			tc.mut(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := node.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
