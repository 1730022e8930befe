package protocol

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Versions of the settlement records this code knows.
const (
	UsageReceiptVersion = 1
	ReceiptAckVersion   = 1
	DisputeVersion      = 1
	SettlementVersion   = 1
	ClaimVersion        = 1
)

// Signing domains of the settlement records. A settlement is signed by
// both parties over the same payload, under one domain.
const (
	UsageReceiptDomain = "spotmesh/usage-receipt/v1"
	ReceiptAckDomain   = "spotmesh/receipt-ack/v1"
	DisputeDomain      = "spotmesh/dispute/v1"
	SettlementDomain   = "spotmesh/settlement/v1"
	ClaimDomain        = "spotmesh/claim/v1"
)

// Bounds of the settlement records, part of the protocol like the lease
// records' bounds.
const (
	MaxReceiptSize    = 2048
	MaxAckSize        = 1024
	MaxDisputeSize    = 2048
	MaxSettlementSize = 4096
	// MaxClaimSize: a claim embeds the lease, a receipt and its ack.
	MaxClaimSize = MaxLeaseSize + MaxReceiptSize + MaxAckSize + 1024
	// MaxSettlementDisputes bounds the disputes a settlement names.
	MaxSettlementDisputes = 16
)

// Usage are an instance's metered counters for one receipt's period.
type Usage struct {
	// InstanceMs is how long the instance ran within the period.
	InstanceMs Millis `cbor:"instance_ms"`
	// CPUMs is the CPU time its processes used within the period.
	CPUMs Millis `cbor:"cpu_ms"`
	// MemoryPeak is the high-water mark of its resident memory so far, in
	// bytes.
	MemoryPeak uint64 `cbor:"mem_peak"`
	// BytesIn and BytesOut count its network traffic within the period,
	// where the driver measures it (Network).
	BytesIn  uint64 `cbor:"bytes_in"`
	BytesOut uint64 `cbor:"bytes_out"`
	Network  bool   `cbor:"net"`
}

// UsageReceipt is the seller's signed statement of one metering period of
// a lease: what the instance used and what the period costs. Receipts of a
// lease form a chain: each names the one before it (Prev) and carries the
// running total, so that neither party can rewrite the past.
//
// Billed is the lease time billed so far, through To; Total is the price
// of Billed (Charge), and Amount the difference from the previous Total,
// so that rounding never drifts.
type UsageReceipt struct {
	Version uint64  `cbor:"v"`
	Seller  peer.ID `cbor:"seller"`
	Buyer   peer.ID `cbor:"buyer"`
	Lease   Link    `cbor:"lease"`
	// Seq numbers the receipts of a lease from 1.
	Seq uint64 `cbor:"seq"`
	// Prev is the CID of receipt Seq-1, absent on the first.
	Prev *Link `cbor:"prev,omitempty"`
	// From and To bound the period: the first starts when the instance
	// started running, each next one where the previous ended.
	From   Time   `cbor:"from"`
	To     Time   `cbor:"to"`
	Billed Millis `cbor:"billed"`
	Usage  Usage  `cbor:"usage"`
	// Amount is what the period costs, Total the running total, both in
	// micro-units of Currency.
	Amount   int64  `cbor:"amount"`
	Total    int64  `cbor:"total"`
	Currency string `cbor:"currency"`
	// Endpoint is where the instance answers, as the seller hands it out.
	Endpoint string `cbor:"endpoint"`
	// Final marks the last receipt of the lease.
	Final    bool   `cbor:"final"`
	IssuedAt Time   `cbor:"issued"`
	Sig      []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (r *UsageReceipt) Domain() string { return UsageReceiptDomain }

// Author implements Record.
func (r *UsageReceipt) Author() peer.ID { return r.Seller }

func (r *UsageReceipt) signature() []byte     { return r.Sig }
func (r *UsageReceipt) setSignature(s []byte) { r.Sig = s }

// CID encodes r and names it.
func (r *UsageReceipt) CID() (cid.Cid, error) { return cidOfRecord(r) }

// DecodeUsageReceipt decodes one receipt, checking its size, canonical form
// and version.
func DecodeUsageReceipt(b []byte) (*UsageReceipt, error) {
	var r UsageReceipt
	if err := decodeRecord("usage receipt", b, MaxReceiptSize, &r); err != nil {
		return nil, err
	}
	if r.Version != UsageReceiptVersion {
		return nil, unknownVersion("usage receipt", r.Version, UsageReceiptVersion)
	}
	return &r, nil
}

// ValidateFields checks r's fields on their own, without signature, chain
// or lease: what any node can check of a lone receipt.
func (r *UsageReceipt) ValidateFields(now time.Time, lim Limits) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("usage receipt: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if r.Version != UsageReceiptVersion {
		return unknownVersion("usage receipt", r.Version, UsageReceiptVersion)
	}
	if r.Seller == "" || r.Buyer == "" || r.Seller == r.Buyer {
		return bad("seller and buyer must be set and differ")
	}
	if !r.Lease.Defined() {
		return bad("lease must be set")
	}
	if r.Seq == 0 {
		return bad("seq starts at 1")
	}
	if (r.Prev != nil) != (r.Seq > 1) {
		return bad("receipt %d: a previous receipt goes with every receipt but the first", r.Seq)
	}
	if r.Prev != nil && !r.Prev.Defined() {
		return bad("prev is present but empty")
	}
	if r.From <= 0 || r.To > maxWireTime || r.To < r.From {
		return bad("period %d to %d: want from <= to, both after 1970", r.From, r.To)
	}
	if r.To == r.From && !r.Final {
		return bad("an empty period is allowed on the final receipt only")
	}
	if r.Billed < Millis(r.To-r.From) || r.Billed > MillisOf(MaxLeaseLength) {
		return bad("billed %v is shorter than the period or longer than a lease can be", r.Billed.Std())
	}
	if r.Usage.InstanceMs < 0 || r.Usage.CPUMs < 0 {
		return bad("negative usage")
	}
	if r.Amount < 0 || r.Total < r.Amount {
		return bad("amount %d, total %d: want 0 <= amount <= total", r.Amount, r.Total)
	}
	if err := ValidateCurrency(r.Currency); err != nil {
		return bad("%v", err)
	}
	if err := ValidateEndpoint(r.Endpoint); err != nil {
		return bad("%v", err)
	}
	if r.IssuedAt < r.To {
		return bad("issued %s before its period ends at %s", r.IssuedAt, r.To)
	}
	return notFuture("usage receipt", r.IssuedAt, now, lim)
}

// ReceiptAck is the buyer's signed agreement to a receipt, and with it to
// the whole chain up to it.
type ReceiptAck struct {
	Version uint64  `cbor:"v"`
	Buyer   peer.ID `cbor:"buyer"`
	Seller  peer.ID `cbor:"seller"`
	Lease   Link    `cbor:"lease"`
	Receipt Link    `cbor:"receipt"`
	Seq     uint64  `cbor:"seq"`
	// Total is the receipt's running total: what the buyer owes so far.
	Total int64  `cbor:"total"`
	At    Time   `cbor:"at"`
	Sig   []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (a *ReceiptAck) Domain() string { return ReceiptAckDomain }

// Author implements Record.
func (a *ReceiptAck) Author() peer.ID { return a.Buyer }

func (a *ReceiptAck) signature() []byte     { return a.Sig }
func (a *ReceiptAck) setSignature(s []byte) { a.Sig = s }

// CID encodes a and names it.
func (a *ReceiptAck) CID() (cid.Cid, error) { return cidOfRecord(a) }

// DecodeReceiptAck decodes one ack, checking size, form and version.
func DecodeReceiptAck(b []byte) (*ReceiptAck, error) {
	var a ReceiptAck
	if err := decodeRecord("receipt ack", b, MaxAckSize, &a); err != nil {
		return nil, err
	}
	if a.Version != ReceiptAckVersion {
		return nil, unknownVersion("receipt ack", a.Version, ReceiptAckVersion)
	}
	return &a, nil
}

// Validate checks a's fields, time and signature.
func (a *ReceiptAck) Validate(now time.Time, lim Limits) error {
	if a.Version != ReceiptAckVersion {
		return unknownVersion("receipt ack", a.Version, ReceiptAckVersion)
	}
	if a.Buyer == "" || a.Seller == "" || !a.Lease.Defined() || !a.Receipt.Defined() || a.Seq == 0 || a.Total < 0 || a.At <= 0 {
		return fmt.Errorf("receipt ack: %w: buyer, seller, lease, receipt, seq >= 1, total >= 0 and at must be set", ErrInvalid)
	}
	if err := notFuture("receipt ack", a.At, now, lim); err != nil {
		return err
	}
	if err := VerifySignature(a); err != nil {
		return fmt.Errorf("receipt ack: %w", err)
	}
	return nil
}

// Acks reports whether a acknowledges exactly receipt r named c.
func (a *ReceiptAck) Acks(c cid.Cid, r *UsageReceipt) bool {
	return a.Receipt.Equals(c) && a.Seq == r.Seq && a.Total == r.Total &&
		a.Lease.Equals(r.Lease.Cid) && a.Buyer == r.Buyer && a.Seller == r.Seller
}

// DisputeReason is a stable code for why a buyer disputes a receipt.
type DisputeReason string

// Dispute reasons.
const (
	// DisputeOvercharge: the amount, total or billed time is not the price
	// times the time, or the usage could not have happened in the period.
	DisputeOvercharge DisputeReason = "overcharge"
	// DisputeOverlap: the period starts before the previous one ended.
	DisputeOverlap DisputeReason = "period_overlap"
	// DisputeGap: the period starts after the previous one ended.
	DisputeGap DisputeReason = "period_gap"
	// DisputeOutsideLease: the period starts before the lease, ends after
	// it, or ends in the future.
	DisputeOutsideLease DisputeReason = "outside_lease"
	// DisputeUnreachable: the buyer could not reach the instance at its
	// endpoint at any time it tried during the period.
	DisputeUnreachable DisputeReason = "unreachable"
	// DisputeBadChain: a bad signature, a skipped or repeated sequence
	// number, a previous link that is not the previous receipt, another
	// lease's parties or currency, a receipt after the final one, or a
	// period other than the receipt interval (only the final receipt may
	// be shorter).
	DisputeBadChain DisputeReason = "bad_chain"
)

var disputeWords = map[DisputeReason]string{
	DisputeOvercharge:   "overcharge",
	DisputeOverlap:      "period overlaps the previous one",
	DisputeGap:          "period leaves a gap after the previous one",
	DisputeOutsideLease: "period outside the lease",
	DisputeUnreachable:  "instance unreachable during the period",
	DisputeBadChain:     "bad signature or broken receipt chain",
}

// DisputeReasons lists every dispute reason, in documentation order.
func DisputeReasons() []DisputeReason {
	return []DisputeReason{DisputeOvercharge, DisputeOverlap, DisputeGap, DisputeOutsideLease, DisputeUnreachable, DisputeBadChain}
}

// Known reports whether d is a reason this node knows.
func (d DisputeReason) Known() bool { _, ok := disputeWords[d]; return ok }

// Words is the reason for people; an unknown code prints as "disputed (<code>)".
func (d DisputeReason) Words() string {
	if w, ok := disputeWords[d]; ok {
		return w
	}
	return "disputed (" + string(d) + ")"
}

// Dispute is the buyer's signed refusal of a receipt, with a reason. The
// buyer acknowledges nothing of the chain past a disputed receipt.
type Dispute struct {
	Version uint64        `cbor:"v"`
	Buyer   peer.ID       `cbor:"buyer"`
	Seller  peer.ID       `cbor:"seller"`
	Lease   Link          `cbor:"lease"`
	Receipt Link          `cbor:"receipt"`
	Seq     uint64        `cbor:"seq"`
	Reason  DisputeReason `cbor:"reason"`
	Detail  string        `cbor:"detail"`
	At      Time          `cbor:"at"`
	Sig     []byte        `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (d *Dispute) Domain() string { return DisputeDomain }

// Author implements Record.
func (d *Dispute) Author() peer.ID { return d.Buyer }

func (d *Dispute) signature() []byte     { return d.Sig }
func (d *Dispute) setSignature(s []byte) { d.Sig = s }

// CID encodes d and names it.
func (d *Dispute) CID() (cid.Cid, error) { return cidOfRecord(d) }

// DecodeDispute decodes one dispute, checking size, form and version.
func DecodeDispute(b []byte) (*Dispute, error) {
	var d Dispute
	if err := decodeRecord("dispute", b, MaxDisputeSize, &d); err != nil {
		return nil, err
	}
	if d.Version != DisputeVersion {
		return nil, unknownVersion("dispute", d.Version, DisputeVersion)
	}
	return &d, nil
}

// Validate checks d's fields, time and signature. A reason this node does
// not know is allowed (a newer buyer's), if well formed.
func (d *Dispute) Validate(now time.Time, lim Limits) error {
	if d.Version != DisputeVersion {
		return unknownVersion("dispute", d.Version, DisputeVersion)
	}
	if d.Buyer == "" || d.Seller == "" || !d.Lease.Defined() || !d.Receipt.Defined() || d.Seq == 0 || d.At <= 0 {
		return fmt.Errorf("dispute: %w: buyer, seller, lease, receipt, seq >= 1 and at must be set", ErrInvalid)
	}
	if err := Reason(d.Reason).validateForm(); err != nil {
		return fmt.Errorf("dispute: %w: %v", ErrInvalid, err)
	}
	if err := validateText("detail", d.Detail, MaxDetailLen); err != nil {
		return fmt.Errorf("dispute: %w: %v", ErrInvalid, err)
	}
	if err := notFuture("dispute", d.At, now, lim); err != nil {
		return err
	}
	if err := VerifySignature(d); err != nil {
		return fmt.Errorf("dispute: %w", err)
	}
	return nil
}

// Charge is the running total of a lease after billed time: the price of
// all its slots per hour times the time, rounded down to the micro-unit.
// It is exact for every length up to MaxLeaseLength and fails only when the
// total does not fit an int64.
func Charge(p Price, slots uint32, billed Millis) (int64, error) {
	if p.Micro < 0 || billed < 0 {
		return 0, fmt.Errorf("charge: %w: negative price or time", ErrInvalid)
	}
	const msPerHour = 3_600_000
	hi, lo := bits.Mul64(uint64(p.Micro), uint64(slots))
	if hi != 0 {
		// Price times slots beyond 64 bits: rare enough for big numbers.
		q := new(big.Int).Mul(big.NewInt(p.Micro), big.NewInt(int64(slots)))
		q.Mul(q, big.NewInt(int64(billed)))
		q.Quo(q, big.NewInt(msPerHour))
		if !q.IsInt64() {
			return 0, fmt.Errorf("charge: %w: total overflows", ErrInvalid)
		}
		return q.Int64(), nil
	}
	hi, lo = bits.Mul64(lo, uint64(billed))
	if hi >= msPerHour {
		return 0, fmt.Errorf("charge: %w: total overflows", ErrInvalid)
	}
	q, _ := bits.Div64(hi, lo, msPerHour)
	if q > math.MaxInt64 {
		return 0, fmt.Errorf("charge: %w: total overflows", ErrInvalid)
	}
	return int64(q), nil
}

// ChainCheck is what a buyer knows when it checks the next receipt of a
// lease: the lease, the receipt before (nil for the first) and the bounds
// of the lease as it stands.
type ChainCheck struct {
	Lease   *Lease
	LeaseID cid.Cid
	// Prev is the previous receipt and PrevID its CID; nil for the first.
	Prev   *UsageReceipt
	PrevID cid.Cid
	// Ends is the lease's end after its extensions, or the time of the
	// buyer's own signed end when it ended the lease early, whichever is
	// sooner. (A lease its seller ended early is bounded by the seller's
	// own final receipt.)
	Ends Time
	// Verified: the caller has verified the receipt's signature already
	// (VerifySignature), so CheckReceipt does not again.
	Verified bool
}

// DisputeError is a receipt that fails a buyer's checks: the reason to
// dispute it with, and the detail.
type DisputeError struct {
	Reason DisputeReason
	Detail string
}

func (e *DisputeError) Error() string { return string(e.Reason) + ": " + e.Detail }

// CheckReceipt runs every check a buyer applies to the next receipt of a
// chain, except its own observation of the instance: the signature, the
// parties, the chain, the period against the previous one and the lease,
// and the amount against the price times the time. It returns a
// *DisputeError naming the reason, or nil.
func CheckReceipt(c ChainCheck, r *UsageReceipt, now time.Time, lim Limits) error {
	dispute := func(reason DisputeReason, format string, args ...any) error {
		return &DisputeError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	l := c.Lease
	if !c.Verified {
		if err := VerifySignature(r); err != nil {
			return dispute(DisputeBadChain, "receipt %d: %v", r.Seq, err)
		}
	}
	if err := r.ValidateFields(now, lim); err != nil {
		if r.To.Std().After(now.Add(lim.ClockSkew)) {
			return dispute(DisputeOutsideLease, "receipt %d: period ends at %s, in the future", r.Seq, r.To)
		}
		return dispute(DisputeBadChain, "receipt %d: %v", r.Seq, err)
	}
	if r.Seller != l.Seller || r.Buyer != l.Buyer() || !r.Lease.Equals(c.LeaseID) {
		return dispute(DisputeBadChain, "receipt %d names another lease or other parties", r.Seq)
	}
	price := l.Proposal.Price
	if r.Currency != price.Currency {
		return dispute(DisputeBadChain, "receipt %d in %s, the lease is priced in %s", r.Seq, r.Currency, price.Currency)
	}
	var prevTo Time
	var prevBilled Millis
	var prevTotal int64
	if p := c.Prev; p != nil {
		if p.Final {
			return dispute(DisputeBadChain, "receipt %d follows the final receipt %d", r.Seq, p.Seq)
		}
		if r.Seq != p.Seq+1 {
			return dispute(DisputeBadChain, "receipt %d follows receipt %d: sequence skipped or repeated", r.Seq, p.Seq)
		}
		if r.Prev == nil || !r.Prev.Equals(c.PrevID) {
			return dispute(DisputeBadChain, "receipt %d does not name receipt %d (%s) as its previous", r.Seq, p.Seq, c.PrevID)
		}
		prevTo, prevBilled, prevTotal = p.To, p.Billed, p.Total
	} else if r.Seq != 1 {
		return dispute(DisputeBadChain, "the first receipt is number %d, want 1", r.Seq)
	}
	if r.From < l.Proposal.Start {
		return dispute(DisputeOutsideLease, "receipt %d starts at %s, before the lease at %s", r.Seq, r.From, l.Proposal.Start)
	}
	if r.To > c.Ends {
		return dispute(DisputeOutsideLease, "receipt %d ends at %s, after the lease at %s", r.Seq, r.To, c.Ends)
	}
	if c.Prev != nil {
		switch {
		case r.From < prevTo:
			return dispute(DisputeOverlap, "receipt %d starts at %s, before receipt %d ended at %s", r.Seq, r.From, c.Prev.Seq, prevTo)
		case r.From > prevTo:
			return dispute(DisputeGap, "receipt %d starts at %s, receipt %d ended at %s", r.Seq, r.From, c.Prev.Seq, prevTo)
		}
	}
	period := Millis(r.To - r.From)
	if iv := l.Proposal.ReceiptInterval; period != iv && !(r.Final && period < iv) {
		// One receipt per interval: shorter periods would make the buyer
		// verify, sign and store receipts without end.
		return dispute(DisputeBadChain, "receipt %d covers %v; the lease's receipt interval is %v (only the final receipt may be shorter)", r.Seq, period.Std(), iv.Std())
	}
	if r.Billed != prevBilled+period {
		return dispute(DisputeOvercharge, "receipt %d bills %v in all, want %v", r.Seq, r.Billed.Std(), (prevBilled + period).Std())
	}
	if r.Usage.InstanceMs > period {
		return dispute(DisputeOvercharge, "receipt %d: the instance ran %v in a period of %v", r.Seq, r.Usage.InstanceMs.Std(), period.Std())
	}
	want, err := Charge(price, l.Proposal.Slots, r.Billed)
	if err != nil {
		return dispute(DisputeOvercharge, "receipt %d: %v", r.Seq, err)
	}
	if r.Total != want || r.Amount != r.Total-prevTotal {
		return dispute(DisputeOvercharge, "receipt %d: amount %d, total %d; %d slots at %s for %v is a total of %d, amount %d",
			r.Seq, r.Amount, r.Total, l.Proposal.Slots, price, r.Billed.Std(), want, want-prevTotal)
	}
	return nil
}

// SettlementState says whether both parties agree on a lease's total.
type SettlementState string

// Settlement states.
const (
	// SettlementSettled: the buyer acknowledged the seller's whole chain.
	SettlementSettled SettlementState = "settled"
	// SettlementDisputed: the buyer acknowledged part of it and disputed
	// the rest; the settlement records what both agree on (Total) and
	// both chain heads.
	SettlementDisputed SettlementState = "disputed"
)

// Settlement is the end of a lease's billing, signed by both parties: the
// seller's chain head and total, the buyer's acknowledged head and total,
// and the buyer's disputes. Total is what the buyer owes: the acknowledged
// total. Both sign the same payload (the record without either signature).
type Settlement struct {
	Version uint64  `cbor:"v"`
	Lease   Link    `cbor:"lease"`
	Seller  peer.ID `cbor:"seller"`
	Buyer   peer.ID `cbor:"buyer"`
	// Head is the seller's last receipt (absent when it issued none),
	// HeadSeq its number and HeadTotal its running total.
	Head      *Link  `cbor:"head,omitempty"`
	HeadSeq   uint64 `cbor:"head_seq"`
	HeadTotal int64  `cbor:"head_total"`
	// Acked is the buyer's last acknowledged receipt (absent when none),
	// AckedSeq its number; Total its running total.
	Acked    *Link  `cbor:"acked,omitempty"`
	AckedSeq uint64 `cbor:"acked_seq"`
	Total    int64  `cbor:"total"`
	Currency string `cbor:"currency"`
	// Disputes are the CIDs of the buyer's disputes on the lease.
	Disputes  []Link          `cbor:"disputes"`
	State     SettlementState `cbor:"state"`
	At        Time            `cbor:"at"`
	SellerSig []byte          `cbor:"seller_sig,omitempty"`
	BuyerSig  []byte          `cbor:"buyer_sig,omitempty"`
}

// DecodeSettlement decodes one settlement, checking size, form and version.
func DecodeSettlement(b []byte) (*Settlement, error) {
	var s Settlement
	if err := decodeRecord("settlement", b, MaxSettlementSize, &s); err != nil {
		return nil, err
	}
	if s.Version != SettlementVersion {
		return nil, unknownVersion("settlement", s.Version, SettlementVersion)
	}
	return &s, nil
}

// SettlementPayload is what both parties sign: the domain, a zero byte and
// the settlement encoded without either signature.
func SettlementPayload(s *Settlement) ([]byte, error) {
	c := *s
	c.SellerSig, c.BuyerSig = nil, nil
	enc, err := Marshal(&c)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(SettlementDomain)+1+len(enc))
	return append(append(append(out, SettlementDomain...), 0), enc...), nil
}

// SignSettlement adds the signature of key, the seller's or the buyer's,
// and returns the settlement's encoding.
func SignSettlement(s *Settlement, key crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("sign settlement: %w", err)
	}
	if id != s.Seller && id != s.Buyer {
		return nil, fmt.Errorf("sign settlement: %s is neither its seller nor its buyer", id)
	}
	payload, err := SettlementPayload(s)
	if err != nil {
		return nil, fmt.Errorf("sign settlement: %w", err)
	}
	sig, err := key.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign settlement: %w", err)
	}
	if id == s.Seller {
		s.SellerSig = sig
	} else {
		s.BuyerSig = sig
	}
	return Marshal(s)
}

// CID encodes s and names it.
func (s *Settlement) CID() (cid.Cid, error) {
	b, err := Marshal(s)
	if err != nil {
		return cid.Undef, err
	}
	return CIDOf(b), nil
}

// SignedBy reports whether who (the seller or the buyer) signed s.
func (s *Settlement) SignedBy(who peer.ID) bool {
	var sig []byte
	switch who {
	case s.Seller:
		sig = s.SellerSig
	case s.Buyer:
		sig = s.BuyerSig
	default:
		return false
	}
	if len(sig) == 0 {
		return false
	}
	pub, err := who.ExtractPublicKey()
	if err != nil {
		return false
	}
	payload, err := SettlementPayload(s)
	if err != nil {
		return false
	}
	ok, err := pub.Verify(payload, sig)
	return err == nil && ok
}

// ValidateFields checks s's fields and their consistency, without the
// signatures.
func (s *Settlement) ValidateFields(now time.Time, lim Limits) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("settlement: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if s.Version != SettlementVersion {
		return unknownVersion("settlement", s.Version, SettlementVersion)
	}
	if s.Seller == "" || s.Buyer == "" || s.Seller == s.Buyer || !s.Lease.Defined() {
		return bad("lease, seller and buyer must be set, and the parties differ")
	}
	if (s.Head == nil) != (s.HeadSeq == 0) || (s.Acked == nil) != (s.AckedSeq == 0) {
		return bad("a head goes with its sequence number, and only with it")
	}
	if s.Head == nil && s.HeadTotal != 0 || s.Acked == nil && s.Total != 0 {
		return bad("a total goes with the receipt that carries it")
	}
	if s.AckedSeq > s.HeadSeq || s.Total < 0 || s.Total > s.HeadTotal {
		return bad("acknowledged %d (total %d) beyond the head %d (total %d)", s.AckedSeq, s.Total, s.HeadSeq, s.HeadTotal)
	}
	if err := ValidateCurrency(s.Currency); err != nil {
		return bad("%v", err)
	}
	if len(s.Disputes) > MaxSettlementDisputes {
		return bad("%d disputes, at most %d", len(s.Disputes), MaxSettlementDisputes)
	}
	agreed := s.AckedSeq == s.HeadSeq && (s.Head == nil || s.Acked.Equals(s.Head.Cid)) && len(s.Disputes) == 0
	switch s.State {
	case SettlementSettled:
		if !agreed || s.Total != s.HeadTotal {
			return bad("settled, but the acknowledged head is not the seller's head or disputes are named")
		}
	case SettlementDisputed:
		if agreed {
			return bad("disputed, but the buyer acknowledged the whole chain and disputed nothing")
		}
	default:
		return bad("unknown state %q", s.State)
	}
	if s.At <= 0 {
		return bad("at must be set")
	}
	return notFuture("settlement", s.At, now, lim)
}

// Validate checks s's fields and both signatures.
func (s *Settlement) Validate(now time.Time, lim Limits) error {
	if err := s.ValidateFields(now, lim); err != nil {
		return err
	}
	for _, who := range []peer.ID{s.Seller, s.Buyer} {
		if !s.SignedBy(who) {
			return fmt.Errorf("settlement: %w: not signed by %s", ErrBadSignature, who)
		}
	}
	return nil
}

// Claim is what a seller claims, alone, when the buyer stops answering: the
// lease, the last receipt the buyer acknowledged and its ack as evidence,
// and the amount. Every node that checks a claim refuses one for more than
// the acknowledged total plus one receipt interval.
type Claim struct {
	Version uint64  `cbor:"v"`
	Seller  peer.ID `cbor:"seller"`
	// Lease is the whole contract, so that anyone can check the claim.
	Lease Lease `cbor:"lease"`
	// Receipt and Ack: the last acknowledged receipt, absent when the
	// buyer acknowledged none.
	Receipt *UsageReceipt `cbor:"receipt,omitempty"`
	Ack     *ReceiptAck   `cbor:"ack,omitempty"`
	// Head and HeadTotal: the seller's own chain head, for the record.
	Head      *Link `cbor:"head,omitempty"`
	HeadTotal int64 `cbor:"head_total"`
	// Amount is what the seller claims, in Currency.
	Amount   int64  `cbor:"amount"`
	Currency string `cbor:"currency"`
	At       Time   `cbor:"at"`
	Sig      []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (c *Claim) Domain() string { return ClaimDomain }

// Author implements Record.
func (c *Claim) Author() peer.ID { return c.Seller }

func (c *Claim) signature() []byte     { return c.Sig }
func (c *Claim) setSignature(s []byte) { c.Sig = s }

// CID encodes c and names it.
func (c *Claim) CID() (cid.Cid, error) { return cidOfRecord(c) }

// DecodeClaim decodes one claim, checking size, form and version.
func DecodeClaim(b []byte, lim Limits) (*Claim, error) {
	var c Claim
	if err := decodeRecord("claim", b, MaxClaimSize, &c); err != nil {
		return nil, err
	}
	if c.Version != ClaimVersion {
		return nil, unknownVersion("claim", c.Version, ClaimVersion)
	}
	return &c, nil
}

// ClaimBound is the most a seller may claim: the acknowledged total plus
// one receipt interval's worth (nothing more after a final receipt), and
// not past the lease's length unless the acknowledged chain already is
// (the lease was renewed; renewals are not part of a claim).
func ClaimBound(l *Lease, acked *UsageReceipt) (int64, error) {
	p := &l.Proposal
	var done Millis
	extra := p.ReceiptInterval
	if acked != nil {
		done = acked.Billed
		if acked.Final {
			extra = 0
		}
	}
	billed := done + extra
	if done <= p.Length && billed > p.Length {
		billed = p.Length
	}
	return Charge(p.Price, p.Slots, billed)
}

// ErrClaimTooHigh: a claim asks for more than the acknowledged total plus
// one receipt interval.
var ErrClaimTooHigh = fmt.Errorf("%w: claim exceeds the acknowledged total plus one receipt interval", ErrInvalid)

// Validate checks a claim as any node would: the lease and both its
// signatures, the evidence (a receipt of this lease signed by the seller
// and its ack signed by the buyer), and the amount: at least the
// acknowledged total and at most ClaimBound.
func (c *Claim) Validate(now time.Time, lim Limits) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("claim: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if c.Version != ClaimVersion {
		return unknownVersion("claim", c.Version, ClaimVersion)
	}
	if err := c.Lease.Validate(now, lim); err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	if c.Seller != c.Lease.Seller {
		return bad("claimed by %s, the lease's seller is %s", c.Seller, c.Lease.Seller)
	}
	if c.Currency != c.Lease.Proposal.Price.Currency {
		return bad("claimed in %s, the lease is priced in %s", c.Currency, c.Lease.Proposal.Price.Currency)
	}
	if c.Head != nil && !c.Head.Defined() {
		return bad("head is present but empty")
	}
	if c.At <= 0 {
		return bad("at must be set")
	}
	if err := notFuture("claim", c.At, now, lim); err != nil {
		return err
	}
	leaseID, err := c.Lease.CID()
	if err != nil {
		return bad("lease: %v", err)
	}
	var acked int64
	if (c.Receipt == nil) != (c.Ack == nil) {
		return bad("a receipt goes with its ack, and only with it")
	}
	if c.Receipt != nil {
		r := c.Receipt
		if err := r.ValidateFields(now, lim); err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		if err := VerifySignature(r); err != nil {
			return fmt.Errorf("claim: receipt: %w", err)
		}
		if !r.Lease.Equals(leaseID) || r.Seller != c.Lease.Seller || r.Buyer != c.Lease.Buyer() {
			return bad("the receipt belongs to another lease")
		}
		p := &c.Lease.Proposal
		if total, err := Charge(p.Price, p.Slots, r.Billed); err != nil || r.Currency != p.Price.Currency || total != r.Total {
			return bad("the receipt's total %d %s is not the lease's price for %v", r.Total, r.Currency, r.Billed.Std())
		}
		rc, err := r.CID()
		if err != nil {
			return bad("receipt: %v", err)
		}
		if err := c.Ack.Validate(now, lim); err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		if !c.Ack.Acks(rc, r) {
			return bad("the ack is not the buyer's ack of the receipt")
		}
		acked = r.Total
	}
	bound, err := ClaimBound(&c.Lease, c.Receipt)
	if err != nil {
		return bad("%v", err)
	}
	if c.Amount < acked {
		return bad("claims %d, less than the acknowledged %d", c.Amount, acked)
	}
	if c.Amount > bound {
		return fmt.Errorf("claim of %d %s: %w (acknowledged %d, bound %d)", c.Amount, c.Currency, ErrClaimTooHigh, acked, bound)
	}
	if err := VerifySignature(c); err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	return nil
}
