package api

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
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
}

// Identity is a node's identity and addresses.
type Identity struct {
	PeerID peer.ID
	// Addrs are the listen multiaddrs, each ending in /p2p/<id>.
	Addrs   []string
	APIAddr string
	Version string
	Started time.Time
}

// PeerInfo is one connected peer.
type PeerInfo struct {
	ID    peer.ID
	Addrs []string
	// Latency is the last measured round trip, zero when unknown.
	Latency time.Duration
}
