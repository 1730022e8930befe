package api

import (
	"context"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/node/settle"
	"github.com/spotmesh/spotmesh/protocol"
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

	// LeaseService is the node's lease service, or nil when it has none
	// (the lease routes then answer 503).
	LeaseService() Leases
	// Instances lists the instances of the node's runtime: none when the
	// node runs no driver.
	Instances() []runtime.Instance

	// Backup writes a consistent copy of the node's database to w while
	// the node runs (store.DB.Backup); store.Restore reads it back. It
	// writes from one goroutine at a time.
	Backup(w io.Writer) error

	// SettleService is the node's settle service (receipts, settlements,
	// the ledger), or nil when it has none (the settle routes then answer
	// 503).
	SettleService() Settlement
}

// Leases is what the API needs of the lease service; *lease.Service
// implements it.
type Leases interface {
	Propose(ctx context.Context, offer *protocol.Offer, p lease.Params) (*lease.Info, error)
	Best(ctx context.Context, q market.Query, p lease.Params) (*lease.Info, []lease.Attempt, error)
	Renew(ctx context.Context, id cid.Cid, extend time.Duration) (*lease.Info, error)
	End(ctx context.Context, id cid.Cid) (*lease.Info, error)
	Refresh(ctx context.Context, id cid.Cid) (*lease.Info, error)
	Get(id cid.Cid) (*lease.Info, error)
	List(role lease.Role) ([]*lease.Info, error)
	Deny(ctx context.Context, p peer.ID, note string) error
	Allow(ctx context.Context, p peer.ID) error
	ListDenied() []lease.Denied
	Pause(ctx context.Context, key string) error
	Resume(ctx context.Context, key string) error
}

var _ Leases = (*lease.Service)(nil)

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

// Settlement is what the API needs of the settle service: the ledger, read
// only. *settle.Service implements it. An unknown lease is an error
// wrapping settle.ErrNotFound.
type Settlement interface {
	Receipts(id cid.Cid) ([]settle.Receipt, error)
	Summary(id cid.Cid) (*settle.Summary, error)
	Summaries() ([]*settle.Summary, error)
	Balances() ([]settle.Balance, error)
	Invoice(t time.Time) (*settle.Invoice, error)
}

var _ Settlement = (*settle.Service)(nil)

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
