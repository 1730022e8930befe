package settle

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
)

// Lease is a lease as the settle service sees it (node wires it from
// node/lease).
type Lease struct {
	ID cid.Cid
	// Sold: this node is the lease's seller; else its buyer.
	Sold  bool
	Lease *protocol.Lease
	State protocol.LeaseState
	Cause protocol.EndCause
	// Ends is the lease's end after its extensions; Ended when it ended
	// (zero until it has; for a lease its buyer ended, the time of the
	// buyer's signed end).
	Ends  time.Time
	Ended time.Time
	// Endpoint is where the instance answers, once running.
	Endpoint string
}

// Leases is what the service needs of the lease service.
type Leases interface {
	// Lease returns this node's lease id in the role (sold or bought), or
	// an error when it holds none.
	Lease(id cid.Cid, sold bool) (*Lease, error)
	// List returns this node's leases in the role.
	List(sold bool) ([]*Lease, error)
	// End ends a lease sold early, saying why.
	End(ctx context.Context, id cid.Cid, detail string) error
}

// Usage are an instance's counters since it started, as the seller's
// runtime reports them.
type Usage struct {
	CPU        time.Duration
	MemoryPeak uint64
	BytesIn    uint64
	BytesOut   uint64
	// Network: the driver measures BytesIn and BytesOut.
	Network bool
}

// Meter reports the usage of the seller's instances.
type Meter interface {
	// Usage returns the counters of the lease's instance; ok is false
	// when the runtime holds no instance for it.
	Usage(ctx context.Context, id cid.Cid) (u Usage, ok bool)
}

// Status is where a lease's billing stands.
type Status string

// Statuses.
const (
	// StatusOpen: receipts still flow, or the settlement is not signed yet.
	StatusOpen Status = "open"
	// StatusSettled: both signed a settlement of the whole chain.
	StatusSettled Status = "settled"
	// StatusDisputed: both signed a settlement that records disputes; the
	// buyer owes the acknowledged total.
	StatusDisputed Status = "disputed"
	// StatusClaimed: the buyer stopped answering; the seller claimed.
	StatusClaimed Status = "claimed"
)

// Receipt is one receipt of a lease as this node holds it.
type Receipt struct {
	CID     cid.Cid
	Receipt *protocol.UsageReceipt
	// Acked: the buyer acknowledged it; Dispute: the buyer disputed it
	// (nil otherwise); Answered: the buyer answered either way.
	Acked    bool
	Dispute  *protocol.Dispute
	Answered bool
}

// Summary is a lease's billing as this node holds it.
type Summary struct {
	Lease cid.Cid
	// Sold: this node sold the lease; else it bought it.
	Sold         bool
	Counterparty peer.ID
	Currency     string
	Status       Status
	// Receipts is the number of receipts in the chain; Acked how many of
	// them the buyer acknowledged (in order, from the first).
	Receipts uint64
	Acked    uint64
	// Total is the chain head's total; AckedTotal what the buyer
	// acknowledged, and so owes.
	Total      int64
	AckedTotal int64
	// Disputes are the buyer's disputes on the lease.
	Disputes []*protocol.Dispute
	// Final: the chain ended with the lease's final receipt.
	Final bool
	// Settlement is the signed settlement, once there is one.
	Settlement *protocol.Settlement
	// Claim is the seller's claim, when it made one.
	Claim *protocol.Claim
	// Updated is when the ledger last changed for the lease.
	Updated time.Time
}

// Balance is what one counterparty and this node owe each other in one
// currency, derived from settlements and acknowledged receipts.
type Balance struct {
	Counterparty peer.ID
	Currency     string
	// Receivable is what the counterparty owes this node as its seller;
	// Payable what this node owes it as its buyer. Net = Receivable -
	// Payable.
	Receivable int64
	Payable    int64
	Net        int64
	// Claimed is what this node claims (as seller) or is claimed of (as
	// buyer) beyond the acknowledged totals, by unsettled claims.
	Claimed int64
	// Leases counts the leases between the two.
	Leases int
}

// InvoiceLine is one lease's acknowledged receipts in one month.
type InvoiceLine struct {
	Lease        cid.Cid
	Sold         bool
	Counterparty peer.ID
	Currency     string
	// Receipts counts the acknowledged receipts whose period ends in the
	// month; From and To bound their periods.
	Receipts uint64
	From     time.Time
	To       time.Time
	// Billed is the lease time they bill; Amount their sum.
	Billed time.Duration
	Amount int64
	// Status is the lease's billing status now.
	Status Status
}

// Invoice is a month of acknowledged receipts, as seller and as buyer.
type Invoice struct {
	// Month is the first instant of the month, UTC.
	Month time.Time
	Lines []InvoiceLine
	// Totals per currency: receivable (sold) and payable (bought).
	Receivable map[string]int64
	Payable    map[string]int64
}
