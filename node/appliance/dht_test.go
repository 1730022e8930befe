package appliance

import (
	"context"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// newDHT runs a Kademlia DHT under the spotmesh prefix on h, bootstrapped
// from boot (if any), with no public bootstrap peers.
func newDHT(t *testing.T, h host.Host, mode dht.ModeOpt, boot ...peer.AddrInfo) *dht.IpfsDHT {
	t.Helper()
	d, err := dht.New(h,
		dht.Mode(mode),
		dht.ProtocolPrefix("/spotmesh"),
		dht.BootstrapPeers(boot...),
		dht.DisableAutoRefresh(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	for _, b := range boot {
		if err := h.Connect(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestDiscoveryByCID: a node that never met the holder fetches by CID
// alone, through the provider record the holder put in the DHT.
func TestDiscoveryByCID(t *testing.T) {
	ctx := context.Background()
	// Two DHT servers; the holder and the fetcher know only the first.
	bootH, otherH := newHost(t), newHost(t)
	boot := peer.AddrInfo{ID: bootH.ID(), Addrs: bootH.Addrs()}
	newDHT(t, bootH, dht.ModeServer)
	newDHT(t, otherH, dht.ModeServer, boot)

	// The holder is a DHT client: no one learns of it but through its
	// provider records.
	holderH := newHost(t)
	holderDHT := newDHT(t, holderH, dht.ModeClient, boot)
	cfg := testConfig()
	cfg.Provide = true
	holder := newNode(t, nodeOpts{cfg: &cfg, host: holderH, routing: holderDHT})

	fetcherH := newHost(t)
	fetcherDHT := newDHT(t, fetcherH, dht.ModeClient, boot)
	fetcher := newNode(t, nodeOpts{cfg: &cfg, host: fetcherH, routing: fetcherDHT})

	waitFor(t, 10*time.Second, "routing tables", func() bool {
		return bootH.Network().Connectedness(otherH.ID()) == network.Connected &&
			holderDHT.RoutingTable().Size() > 0 && fetcherDHT.RoutingTable().Size() > 0
	})

	const size = 3 << 20
	info, sum := importPRNG(t, holder.Service, 31, size)
	// Import queues the announcement; wait until the DHT can answer it.
	waitFor(t, 20*time.Second, "the provider record", func() bool {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		provs, err := bootDHTProviders(qctx, fetcherDHT, info)
		return err == nil && provs > 0
	})
	if fetcherH.Network().Connectedness(holderH.ID()) == network.Connected {
		t.Fatal("the fetcher is already connected to the holder")
	}

	got, err := fetcher.Fetch(ctx, info.CID, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != size || openSum(t, fetcher.Service, info.CID) != sum {
		t.Fatal("fetched bytes differ")
	}
}

func bootDHTProviders(ctx context.Context, d *dht.IpfsDHT, info Info) (int, error) {
	provs, err := d.FindProviders(ctx, info.CID)
	return len(provs), err
}
