package api

import (
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/settle"
	"github.com/spotmesh/spotmesh/protocol"
)

// The bodies of the settle routes: receipts, settlements, balances and
// invoices. Money is an integer count of micro-units of the currency named
// beside it (123457 with currency USD is 0.123457 USD); durations of the
// ledger are integer milliseconds in fields ending in _ms.

// Receipt states, as Receipt.State says them.
const (
	ReceiptAcked    = "acked"    // the buyer acknowledged it
	ReceiptDisputed = "disputed" // the buyer disputed it; Dispute says why
	ReceiptPending  = "pending"  // the buyer has not answered yet
)

// Roles of this node in a lease's billing.
const (
	RoleSeller = "seller"
	RoleBuyer  = "buyer"
)

// Receipt is one usage receipt of a lease, with the buyer's answer.
type Receipt struct {
	CID   string `json:"cid"`
	Lease string `json:"lease"`
	Seq   uint64 `json:"seq"`
	// Prev is the CID of receipt Seq-1; absent on the first.
	Prev string `json:"prev,omitempty"`
	// From and To bound the metered period.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// BilledMs is the lease time billed so far, through To.
	BilledMs int64        `json:"billed_ms"`
	Usage    ReceiptUsage `json:"usage"`
	// Amount is what the period costs, Total the running total.
	Amount   int64  `json:"amount"`
	Total    int64  `json:"total"`
	Currency string `json:"currency"`
	Endpoint string `json:"endpoint,omitempty"`
	// Final marks the lease's last receipt.
	Final  bool      `json:"final"`
	Issued time.Time `json:"issued"`
	// State is acked, disputed or pending (ReceiptAcked, ...).
	State   string   `json:"state"`
	Dispute *Dispute `json:"dispute,omitempty"`
}

// ReceiptUsage is what a receipt's instance used in its period.
type ReceiptUsage struct {
	InstanceMs int64 `json:"instance_ms"`
	CPUMs      int64 `json:"cpu_ms"`
	// MemoryPeak is the resident memory's high-water mark so far, bytes.
	MemoryPeak uint64 `json:"memory_peak"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	// Network: the driver measures the byte counters.
	Network bool `json:"network"`
}

// ReceiptsResponse is the body of GET /v1/leases/{id}/receipts.
type ReceiptsResponse struct {
	Lease    string    `json:"lease"`
	Receipts []Receipt `json:"receipts"`
}

// Dispute is the buyer's signed refusal of one receipt.
type Dispute struct {
	CID     string `json:"cid,omitempty"`
	Receipt string `json:"receipt"`
	Seq     uint64 `json:"seq"`
	// Reason is the stable code (protocol.DisputeReason), Words the same
	// for people.
	Reason string    `json:"reason"`
	Words  string    `json:"words"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
}

// LeaseSettlement is one lease's billing as this node holds it: where the
// receipt chain stands, the buyer's disputes, and the settlement or claim
// that ends it.
type LeaseSettlement struct {
	Lease string `json:"lease"`
	// Role is this node's: seller or buyer.
	Role         string  `json:"role"`
	Counterparty peer.ID `json:"counterparty"`
	Currency     string  `json:"currency"`
	// Status is open, settled, disputed or claimed.
	Status string `json:"status"`
	// HeadSeq and HeadTotal are the seller's chain head: the number of
	// receipts and their running total. AckedSeq and AckedTotal are the
	// buyer's acknowledged head.
	HeadSeq    uint64 `json:"head_seq"`
	HeadTotal  int64  `json:"head_total"`
	AckedSeq   uint64 `json:"acked_seq"`
	AckedTotal int64  `json:"acked_total"`
	// Owed is what the buyer owes: the settlement's total once settled,
	// else the acknowledged total.
	Owed int64 `json:"owed"`
	// Final: the chain ended with the lease's final receipt.
	Final      bool              `json:"final"`
	Disputes   []Dispute         `json:"disputes"`
	Settlement *SettlementRecord `json:"settlement,omitempty"`
	Claim      *Claim            `json:"claim,omitempty"`
	// Updated is when the ledger last changed for the lease.
	Updated time.Time `json:"updated,omitzero"`
}

// SettlementRecord is a lease's settlement, signed by both parties.
type SettlementRecord struct {
	CID string `json:"cid,omitempty"`
	// State is settled or disputed.
	State string `json:"state"`
	// Head is the CID of the seller's last receipt (absent when it issued
	// none), HeadSeq its number and HeadTotal its running total.
	Head      string `json:"head,omitempty"`
	HeadSeq   uint64 `json:"head_seq"`
	HeadTotal int64  `json:"head_total"`
	// Acked is the CID of the buyer's last acknowledged receipt, AckedSeq
	// its number; Total its running total: what the buyer owes.
	Acked    string `json:"acked,omitempty"`
	AckedSeq uint64 `json:"acked_seq"`
	Total    int64  `json:"total"`
	Currency string `json:"currency"`
	// Disputes are the CIDs of the buyer's disputes it records.
	Disputes []string  `json:"disputes"`
	At       time.Time `json:"at"`
	// SellerSigned and BuyerSigned: that party's signature is present and
	// verifies.
	SellerSigned bool `json:"seller_signed"`
	BuyerSigned  bool `json:"buyer_signed"`
}

// Claim is what a seller claimed alone when the buyer stopped answering.
type Claim struct {
	CID      string `json:"cid,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	// AckedReceipt is the CID of the last receipt the buyer acknowledged,
	// the claim's evidence (absent when none), AckedSeq its number and
	// AckedTotal its running total.
	AckedReceipt string `json:"acked_receipt,omitempty"`
	AckedSeq     uint64 `json:"acked_seq"`
	AckedTotal   int64  `json:"acked_total"`
	// Head and HeadTotal are the seller's own chain head.
	Head      string    `json:"head,omitempty"`
	HeadTotal int64     `json:"head_total"`
	At        time.Time `json:"at"`
	// Signed: the seller's signature is present and verifies.
	Signed bool `json:"signed"`
}

// SettlementsResponse is the body of GET /v1/settlements.
type SettlementsResponse struct {
	Settlements []LeaseSettlement `json:"settlements"`
}

// Balance is what one counterparty and this node owe each other in one
// currency, from settlements and acknowledged receipts.
type Balance struct {
	Counterparty peer.ID `json:"counterparty"`
	Currency     string  `json:"currency"`
	// Receivable is what the counterparty owes this node as its seller,
	// Payable what this node owes it as its buyer; Net = Receivable -
	// Payable.
	Receivable int64 `json:"receivable"`
	Payable    int64 `json:"payable"`
	Net        int64 `json:"net"`
	// Claimed is what unsettled claims ask beyond the acknowledged totals.
	Claimed int64 `json:"claimed"`
	// Leases counts the leases between the two.
	Leases int `json:"leases"`
}

// BalanceResponse is the body of GET /v1/balance.
type BalanceResponse struct {
	Balances []Balance `json:"balances"`
}

// InvoiceMonthLayout is the form of an invoice's month: 2026-11.
const InvoiceMonthLayout = "2006-01"

// Invoice is a month of acknowledged receipts, as seller and as buyer.
type Invoice struct {
	// Month is YYYY-MM; Start and End bound it (End excluded), UTC.
	Month string    `json:"month"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Lines are one per lease, in the order of their first period.
	Lines []InvoiceLine `json:"lines"`
	// Totals are one per currency, by currency.
	Totals []InvoiceTotal `json:"totals"`
}

// InvoiceLine is one lease's acknowledged receipts whose period ends in
// the month.
type InvoiceLine struct {
	Lease string `json:"lease"`
	// Role is this node's: seller (the amount is receivable) or buyer
	// (payable).
	Role         string  `json:"role"`
	Counterparty peer.ID `json:"counterparty"`
	Currency     string  `json:"currency"`
	Receipts     uint64  `json:"receipts"`
	// From and To bound the receipts' periods.
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	BilledMs int64     `json:"billed_ms"`
	Amount   int64     `json:"amount"`
	// Status is the lease's billing status now.
	Status string `json:"status"`
}

// InvoiceTotal is a month's totals in one currency.
type InvoiceTotal struct {
	Currency   string `json:"currency"`
	Receivable int64  `json:"receivable"`
	Payable    int64  `json:"payable"`
	Net        int64  `json:"net"`
}

func roleOf(sold bool) string {
	if sold {
		return RoleSeller
	}
	return RoleBuyer
}

func linkString(l *protocol.Link) string {
	if l == nil {
		return ""
	}
	return cidString(l.Cid)
}

func receiptJSON(r settle.Receipt) Receipt {
	u := r.Receipt
	out := Receipt{
		CID: cidString(r.CID), Lease: cidString(u.Lease.Cid), Seq: u.Seq, Prev: linkString(u.Prev),
		From: u.From.Std(), To: u.To.Std(), BilledMs: int64(u.Billed),
		Usage: ReceiptUsage{InstanceMs: int64(u.Usage.InstanceMs), CPUMs: int64(u.Usage.CPUMs), MemoryPeak: u.Usage.MemoryPeak,
			BytesIn: u.Usage.BytesIn, BytesOut: u.Usage.BytesOut, Network: u.Usage.Network},
		Amount: u.Amount, Total: u.Total, Currency: u.Currency, Endpoint: u.Endpoint, Final: u.Final, Issued: u.IssuedAt.Std(),
		State: ReceiptPending,
	}
	switch {
	case r.Acked:
		out.State = ReceiptAcked
	case r.Dispute != nil:
		out.State = ReceiptDisputed
		d := disputeJSON(r.Dispute)
		out.Dispute = &d
	case r.Answered:
		// Answered, neither an ack nor a dispute this node can read.
		out.State = ReceiptDisputed
	}
	return out
}

func disputeJSON(d *protocol.Dispute) Dispute {
	out := Dispute{Receipt: cidString(d.Receipt.Cid), Seq: d.Seq, Reason: string(d.Reason), Words: d.Reason.Words(),
		Detail: d.Detail, At: d.At.Std()}
	if c, err := d.CID(); err == nil {
		out.CID = c.String()
	}
	return out
}

func summaryJSON(sm *settle.Summary) LeaseSettlement {
	out := LeaseSettlement{
		Lease: cidString(sm.Lease), Role: roleOf(sm.Sold), Counterparty: sm.Counterparty, Currency: sm.Currency,
		Status: string(sm.Status), HeadSeq: sm.Receipts, HeadTotal: sm.Total, AckedSeq: sm.Acked, AckedTotal: sm.AckedTotal,
		Owed: sm.AckedTotal, Final: sm.Final, Disputes: make([]Dispute, 0, len(sm.Disputes)), Updated: utc(sm.Updated),
	}
	if out.Status == "" {
		out.Status = string(settle.StatusOpen)
	}
	for _, d := range sm.Disputes {
		out.Disputes = append(out.Disputes, disputeJSON(d))
	}
	if s := sm.Settlement; s != nil {
		out.Owed = s.Total
		rec := SettlementRecord{
			State: string(s.State), Head: linkString(s.Head), HeadSeq: s.HeadSeq, HeadTotal: s.HeadTotal,
			Acked: linkString(s.Acked), AckedSeq: s.AckedSeq, Total: s.Total, Currency: s.Currency,
			Disputes: make([]string, 0, len(s.Disputes)), At: s.At.Std(),
			SellerSigned: s.SignedBy(s.Seller), BuyerSigned: s.SignedBy(s.Buyer),
		}
		for _, d := range s.Disputes {
			rec.Disputes = append(rec.Disputes, cidString(d.Cid))
		}
		if c, err := s.CID(); err == nil {
			rec.CID = c.String()
		}
		out.Settlement = &rec
	}
	if c := sm.Claim; c != nil {
		cl := claimJSON(c)
		out.Claim = &cl
	}
	return out
}

func claimJSON(c *protocol.Claim) Claim {
	out := Claim{Amount: c.Amount, Currency: c.Currency, Head: linkString(c.Head), HeadTotal: c.HeadTotal, At: c.At.Std(),
		Signed: protocol.VerifySignature(c) == nil}
	if r := c.Receipt; r != nil {
		out.AckedSeq, out.AckedTotal = r.Seq, r.Total
		if rc, err := r.CID(); err == nil {
			out.AckedReceipt = rc.String()
		}
	}
	if id, err := c.CID(); err == nil {
		out.CID = id.String()
	}
	return out
}

func balanceJSON(b settle.Balance) Balance {
	return Balance{Counterparty: b.Counterparty, Currency: b.Currency, Receivable: b.Receivable, Payable: b.Payable,
		Net: b.Net, Claimed: b.Claimed, Leases: b.Leases}
}

func invoiceJSON(inv *settle.Invoice) Invoice {
	start := inv.Month.UTC()
	out := Invoice{Month: start.Format(InvoiceMonthLayout), Start: start, End: start.AddDate(0, 1, 0),
		Lines: make([]InvoiceLine, 0, len(inv.Lines)), Totals: []InvoiceTotal{}}
	for _, l := range inv.Lines {
		out.Lines = append(out.Lines, InvoiceLine{
			Lease: cidString(l.Lease), Role: roleOf(l.Sold), Counterparty: l.Counterparty, Currency: l.Currency,
			Receipts: l.Receipts, From: utc(l.From), To: utc(l.To), BilledMs: l.Billed.Milliseconds(), Amount: l.Amount,
			Status: string(l.Status),
		})
	}
	totals := map[string]*InvoiceTotal{}
	get := func(cur string) *InvoiceTotal {
		t := totals[cur]
		if t == nil {
			t = &InvoiceTotal{Currency: cur}
			totals[cur] = t
		}
		return t
	}
	for cur, v := range inv.Receivable {
		get(cur).Receivable += v
	}
	for cur, v := range inv.Payable {
		get(cur).Payable += v
	}
	for _, t := range totals {
		t.Net = t.Receivable - t.Payable
		out.Totals = append(out.Totals, *t)
	}
	sort.Slice(out.Totals, func(i, j int) bool { return out.Totals[i].Currency < out.Totals[j].Currency })
	return out
}
