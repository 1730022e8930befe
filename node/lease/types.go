package lease

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
)

// OfferSource is what a seller's lease service needs of the node's own
// offers (node/offers, through an adapter node wires).
type OfferSource interface {
	// Offer returns the own offer with this key as it stands now. An
	// unknown key returns an error (any); the proposal is then refused as
	// offer_expired.
	Offer(key string) (OwnOffer, error)
	// SetFree publishes a new copy of the offer stating free slots (0: sold
	// out). It is called from one goroutine, with the latest count, when
	// the count changes.
	SetFree(ctx context.Context, key string, free uint32) error
	// SetPaused publishes a copy of the offer paused (it takes no new
	// leases; running ones go on) or resumed.
	SetPaused(ctx context.Context, key string, paused bool) error
}

// OwnOffer is one of the seller's offers as the lease service sees it.
type OwnOffer struct {
	// Current is the newest signed copy, CID its name.
	Current *protocol.Offer
	CID     cid.Cid
	// Capacity is how many slots the seller has for the offer in all:
	// leases hold some, the rest are free. (The published copy's Slots is
	// the free count.)
	Capacity uint32
	// Withdrawn: the offer ended; no new leases or renewals.
	Withdrawn bool
}

// Provisioner runs the instances of the seller's leases (node/runtime).
type Provisioner interface {
	// Provision starts the instance of a lease just stored, or adopts the
	// one already started for it: it is called again after a restart for
	// leases still provisioning, so it must be idempotent. It may return
	// before the instance runs and report progress with Service.SetState;
	// an error ends the lease as failed.
	Provision(ctx context.Context, id cid.Cid, l *protocol.Lease) error
	// Terminate stops the lease's instance and frees its resources. It is
	// called once the lease ended, again until it returns nil, and must be
	// idempotent (an instance already gone is no error).
	Terminate(ctx context.Context, id cid.Cid, cause protocol.EndCause) error
}

// Extender is what a Provisioner may also implement to learn that a
// lease was renewed: the service calls Extend with the lease's new end
// after storing the extension, so that the instance outlives its old end.
// An error is logged; the instance's backstop may then end it early.
type Extender interface {
	Extend(ctx context.Context, id cid.Cid, ends time.Time) error
}

// Book is the order book Best walks (node/market's Book).
type Book interface {
	Query(q market.Query) []market.Entry
}

// Role tells the buyer's copy of a lease from the seller's.
type Role string

// Roles.
const (
	RoleBuyer  Role = "buyer"
	RoleSeller Role = "seller"
)

// Params are what a buyer chooses in a proposal; the terms come from the
// offer.
type Params struct {
	// Slots of the offer to lease (default 1).
	Slots uint32
	// Length of the lease.
	Length time.Duration
	// Start of the lease; zero means now.
	Start time.Time
	// Appliance to run: its CID, size in bytes and format (bundle, qcow2, raw…).
	Appliance       cid.Cid
	ApplianceSize   uint64
	ApplianceFormat string
	// AccessKey, such as an SSH public key line, handed to the instance.
	AccessKey string
}

// Info is a lease (or a pending proposal) as this node holds it.
type Info struct {
	// ID is the lease ID; undefined while the proposal is unanswered.
	ID cid.Cid
	// Proposal is the proposal's CID.
	Proposal cid.Cid
	// Role is this node's side of the lease.
	Role   Role
	Buyer  peer.ID
	Seller peer.ID
	Offer  protocol.OfferID
	State  protocol.LeaseState
	// Cause is why the lease ended (only when State is ended).
	Cause protocol.EndCause
	// Endpoint is where the instance answers (host:port), once running.
	Endpoint string
	// Detail is the latest word from the runtime (why it failed, …).
	Detail string
	Slots  uint32
	// Price is per slot and hour.
	Price protocol.Price
	Start time.Time
	// Ends is the lease's end after its extensions.
	Ends       time.Time
	AcceptedAt time.Time
	Extensions int
	// Ended is when the lease ended (zero until it has): for a lease its
	// buyer ended, the time of the buyer's signed end.
	Ended     time.Time
	Appliance cid.Cid
	// Lease is the signed contract, Raw its bytes (nil while proposed).
	Lease *protocol.Lease
	Raw   []byte
	// Updated is when this node last changed the record.
	Updated time.Time
}

// Report is a state change the runtime reports for a seller's lease.
type Report struct {
	// State is provisioning, running or ended.
	State protocol.LeaseState
	// Cause is why it ended (with State ended): failed or ended_by_seller.
	Cause protocol.EndCause
	// Endpoint is where the instance answers (host:port), once running.
	Endpoint string
	// Detail is a short note for people.
	Detail string
}

// Attempt is one offer Best tried or skipped, and why it did not lease.
type Attempt struct {
	Offer protocol.OfferID
	CID   cid.Cid
	// Err is a *RejectedError (Local when skipped without asking) or why
	// the seller could not be asked.
	Err error
}

// Denied is a buyer on the seller's deny list.
type Denied struct {
	Peer peer.ID   `json:"peer"`
	Note string    `json:"note,omitempty"`
	At   time.Time `json:"at"`
}
