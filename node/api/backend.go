package api

import (
	"context"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/offers"
)

// Backend is what the API serves: the running node, seen through the few
// operations the API needs. node.Node implements it; tests may fake it.
type Backend interface {
	// Identity returns who and where this node is.
	Identity() Identity
	// Peers lists the peers this node is connected to.
	Peers() []PeerInfo
	// Connect dials a peer by a multiaddr that ends in /p2p/<id>.
	Connect(ctx context.Context, addr string) (peer.ID, error)

	// AddOffer signs and publishes a new offer, and keeps republishing it.
	AddOffer(ctx context.Context, spec offers.Spec) (offers.Status, error)
	// Offers lists this node's own offers, withdrawn ones included.
	Offers() []offers.Status
	// WithdrawOffer publishes a signed withdrawal of the offer with key.
	// It returns an error wrapping offers.ErrNotFound for an unknown key.
	WithdrawOffer(ctx context.Context, key string) (offers.Status, error)

	// Book answers a query over the order book.
	Book(q market.Query) []market.Entry
	// BookSize is the number of live offers in the book.
	BookSize() int

	// Gatherer exposes the node's Prometheus metrics.
	Gatherer() prometheus.Gatherer

	// Appliances is the node's content-addressed appliance store.
	Appliances() Appliances
}

// Appliances is what the API needs of the appliance service;
// *appliance.Service implements it.
type Appliances interface {
	Import(ctx context.Context, r io.Reader, meta appliance.Meta, progress func(n uint64)) (appliance.Info, error)
	Fetch(ctx context.Context, c cid.Cid, opts appliance.FetchOptions) (appliance.Info, error)
	Open(ctx context.Context, c cid.Cid) (appliance.File, error)
	Get(ctx context.Context, c cid.Cid) (appliance.Info, error)
	List(ctx context.Context) ([]appliance.Info, error)
	Pin(ctx context.Context, c cid.Cid, reason string) (appliance.Info, error)
	Unpin(ctx context.Context, c cid.Cid, reason string) (appliance.Info, error)
	Remove(ctx context.Context, c cid.Cid) (appliance.Info, error)
	GC(ctx context.Context) (uint64, error)
}

var _ Appliances = (*appliance.Service)(nil)

// Identity is a node's identity and addresses.
type Identity struct {
	PeerID peer.ID
	// Addrs are the listen multiaddrs, each ending in /p2p/<id>.
	Addrs   []string
	APIAddr string
	// GatewayAddr is the local read-only gateway's host:port.
	GatewayAddr string
	Version     string
	Started     time.Time
}

// PeerInfo is one connected peer.
type PeerInfo struct {
	ID    peer.ID
	Addrs []string
	// Latency is the last measured round trip, zero when unknown.
	Latency time.Duration
}
