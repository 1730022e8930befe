package protocol

import (
	"bytes"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Versions of the lease records this code knows.
const (
	LeaseProposalVersion  = 1
	LeaseVersion          = 1
	LeaseRejectionVersion = 1
	LeaseRenewalVersion   = 1
	LeaseExtensionVersion = 1
	LeaseEndVersion       = 1
	LeaseStatusVersion    = 1
)

// Signing domains of the lease records.
const (
	LeaseProposalDomain  = "spotmesh/lease-proposal/v1"
	LeaseDomain          = "spotmesh/lease/v1"
	LeaseRejectionDomain = "spotmesh/lease-rejection/v1"
	LeaseRenewalDomain   = "spotmesh/lease-renewal/v1"
	LeaseExtensionDomain = "spotmesh/lease-extension/v1"
	LeaseEndDomain       = "spotmesh/lease-end/v1"
)

// Bounds of the lease records. They are part of the protocol (a second
// implementation must agree on them), so they are constants rather than
// Limits; Limits supplies the clock skew and the receipt-interval and grace
// bounds, as for offers.
const (
	// MaxProposalSize is the largest encoded LeaseProposal.
	MaxProposalSize = 4096
	// MaxLeaseSize is the largest encoded Lease (it embeds the proposal).
	MaxLeaseSize = 8192
	// MaxRejectionSize, MaxRenewalSize, MaxExtensionSize, MaxLeaseEndSize
	// and MaxLeaseStatusSize bound the other lease records.
	MaxRejectionSize   = 2048
	MaxRenewalSize     = 1024
	MaxExtensionSize   = 2048
	MaxLeaseEndSize    = 1024
	MaxLeaseStatusSize = 2048

	// MaxAccessKeyLen bounds the buyer's access key (an SSH public key line
	// of RSA-8192 is about 1.4 KB).
	MaxAccessKeyLen = 2048
	// MaxDetailLen bounds the free text of rejections and statuses, in bytes.
	MaxDetailLen = 512
	// MaxEndpointLen bounds an instance's endpoint (host:port or a URL).
	MaxEndpointLen = 256
	// NonceSize is the size of a proposal's nonce.
	NonceSize = 16
	// MaxLeaseSlots bounds the slots one proposal asks for.
	MaxLeaseSlots = 1 << 16

	// MaxProposalTTL is the longest life of a proposal or renewal: how
	// long a seller may take to answer before the request lapses.
	MaxProposalTTL = 10 * time.Minute
	// MaxStartDelay is how far after its issue a proposal's lease may start.
	MaxStartDelay = time.Hour
	// MaxLeaseLength bounds one lease's length and one renewal's extension
	// (ten years), so that no end time overflows.
	MaxLeaseLength = 10 * 365 * 24 * time.Hour
)

// LeaseProposal is the buyer's firm, signed request for a lease against one
// offer. Its terms repeat the offer's (price, receipt interval, grace), so
// that a lease states everything both parties agreed to without the offer.
type LeaseProposal struct {
	Version uint64  `cbor:"v"`
	Buyer   peer.ID `cbor:"buyer"`
	Seller  peer.ID `cbor:"seller"`
	// Offer is the CID of the copy of the offer the buyer saw: any copy of
	// (Seller, OfferKey) that has not expired.
	Offer    Link   `cbor:"offer"`
	OfferKey string `cbor:"offer_key"`
	// Slots is how many of the offer's slots the lease takes.
	Slots uint32 `cbor:"slots"`
	// Start and Length: the lease runs from Start for Length.
	Start  Time   `cbor:"start"`
	Length Millis `cbor:"length"`
	// Price is the offer's hourly price of one slot.
	Price Price `cbor:"price"`
	// Appliance names what to run: its root CID, size in bytes and format.
	Appliance       Link   `cbor:"appliance"`
	ApplianceSize   uint64 `cbor:"appliance_size"`
	ApplianceFormat string `cbor:"appliance_format"`
	// AccessKey is how the buyer reaches the instance, such as an SSH
	// public key line; printable ASCII, may be empty.
	AccessKey string `cbor:"access_key"`
	// ReceiptInterval and PaymentGrace as the offer states them.
	ReceiptInterval Millis `cbor:"receipt_interval"`
	PaymentGrace    Millis `cbor:"grace"`
	// Nonce makes every proposal unique (NonceSize random bytes).
	Nonce     []byte `cbor:"nonce"`
	IssuedAt  Time   `cbor:"issued"`
	ExpiresAt Time   `cbor:"expires"`
	Sig       []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (p *LeaseProposal) Domain() string { return LeaseProposalDomain }

// Author implements Record.
func (p *LeaseProposal) Author() peer.ID { return p.Buyer }

func (p *LeaseProposal) signature() []byte     { return p.Sig }
func (p *LeaseProposal) setSignature(s []byte) { p.Sig = s }

// OfferID is the offer the proposal is for.
func (p *LeaseProposal) OfferID() OfferID { return OfferID{p.Seller, p.OfferKey} }

// EndsAt is when the lease proposed ends: Start + Length.
func (p *LeaseProposal) EndsAt() Time { return p.Start + Time(p.Length) }

// CID encodes p and names it.
func (p *LeaseProposal) CID() (cid.Cid, error) { return cidOfRecord(p) }

// DecodeLeaseProposal decodes one proposal, checking its form: size,
// canonical encoding, known version. Validate checks the rest.
func DecodeLeaseProposal(b []byte, lim Limits) (*LeaseProposal, error) {
	var p LeaseProposal
	if err := decodeRecord("lease proposal", b, MaxProposalSize, &p); err != nil {
		return nil, err
	}
	if p.Version != LeaseProposalVersion {
		return nil, unknownVersion("lease proposal", p.Version, LeaseProposalVersion)
	}
	return &p, nil
}

// validateForm checks everything of p that does not depend on the time
// now: the fields and how its own times relate.
func (p *LeaseProposal) validateForm(lim Limits) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("lease proposal: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if p.Version != LeaseProposalVersion {
		return unknownVersion("lease proposal", p.Version, LeaseProposalVersion)
	}
	if p.Buyer == "" || p.Seller == "" {
		return bad("buyer and seller must be set")
	}
	if p.Buyer == p.Seller {
		return bad("buyer and seller are the same peer %s", p.Buyer)
	}
	if !p.Offer.Defined() || !p.Appliance.Defined() {
		return bad("offer and appliance CIDs must be set")
	}
	if err := ValidateName("offer key", p.OfferKey); err != nil {
		return bad("%v", err)
	}
	if p.Slots == 0 || p.Slots > MaxLeaseSlots {
		return bad("slots %d: want 1 to %d", p.Slots, MaxLeaseSlots)
	}
	if l := p.Length.Std(); l <= 0 || l > MaxLeaseLength {
		return bad("length %v: want more than 0 and at most %v", l, MaxLeaseLength)
	}
	if err := p.Price.Validate(); err != nil {
		return bad("%v", err)
	}
	if p.ApplianceSize == 0 {
		return bad("appliance size must be set")
	}
	if err := ValidateName("appliance format", p.ApplianceFormat); err != nil {
		return bad("%v", err)
	}
	if err := validateAccessKey(p.AccessKey); err != nil {
		return bad("%v", err)
	}
	if ri := p.ReceiptInterval.Std(); ri < lim.MinReceiptInterval || ri > lim.MaxReceiptInterval {
		return bad("receipt interval %v outside [%v, %v]", ri, lim.MinReceiptInterval, lim.MaxReceiptInterval)
	}
	if g := p.PaymentGrace.Std(); g < 0 || g > lim.MaxGrace {
		return bad("payment grace %v outside [0, %v]", g, lim.MaxGrace)
	}
	if len(p.Nonce) != NonceSize {
		return bad("nonce of %d bytes: want %d", len(p.Nonce), NonceSize)
	}
	if err := validateWindow(p.IssuedAt, p.ExpiresAt); err != nil {
		return bad("%v", err)
	}
	skew := Millis(lim.ClockSkew.Milliseconds())
	if p.Start < p.IssuedAt-Time(skew) || p.Start > p.IssuedAt+Time(MillisOf(MaxStartDelay)) {
		return bad("start %s: want between issued %s (less the clock skew) and %v later", p.Start, p.IssuedAt, MaxStartDelay)
	}
	return nil
}

// ValidateFields checks p's fields and times against now and lim, without
// the signature. A buyer runs it before signing; receivers run Validate.
func (p *LeaseProposal) ValidateFields(now time.Time, lim Limits) error {
	if err := p.validateForm(lim); err != nil {
		return err
	}
	return checkLive("lease proposal", p.IssuedAt, p.ExpiresAt, now, lim)
}

// Validate runs every check a seller applies to a proposal on its own:
// fields, times, the buyer's signature. Whether the terms match the offer
// is the seller's business (node/lease).
func (p *LeaseProposal) Validate(now time.Time, lim Limits) error {
	if err := p.ValidateFields(now, lim); err != nil {
		return err
	}
	if err := VerifySignature(p); err != nil {
		return fmt.Errorf("lease proposal: %w", err)
	}
	return nil
}

// Lease is the contract: the buyer's signed proposal, countersigned by the
// seller. It embeds the whole proposal, so a lease proves both parties'
// consent on its own. Its CID is the lease ID.
type Lease struct {
	Version  uint64        `cbor:"v"`
	Seller   peer.ID       `cbor:"seller"`
	Proposal LeaseProposal `cbor:"proposal"`
	// AcceptedAt is when the seller accepted.
	AcceptedAt Time   `cbor:"accepted"`
	Sig        []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (l *Lease) Domain() string { return LeaseDomain }

// Author implements Record.
func (l *Lease) Author() peer.ID { return l.Seller }

func (l *Lease) signature() []byte     { return l.Sig }
func (l *Lease) setSignature(s []byte) { l.Sig = s }

// Buyer is the lease's buyer.
func (l *Lease) Buyer() peer.ID { return l.Proposal.Buyer }

// EndsAt is when the lease ends before any renewal.
func (l *Lease) EndsAt() Time { return l.Proposal.EndsAt() }

// CID encodes l and names it: the lease ID.
func (l *Lease) CID() (cid.Cid, error) { return cidOfRecord(l) }

// DecodeLease decodes one lease, checking its form.
func DecodeLease(b []byte, lim Limits) (*Lease, error) {
	var l Lease
	if err := decodeRecord("lease", b, MaxLeaseSize, &l); err != nil {
		return nil, err
	}
	if l.Version != LeaseVersion {
		return nil, unknownVersion("lease", l.Version, LeaseVersion)
	}
	if l.Proposal.Version != LeaseProposalVersion {
		return nil, unknownVersion("lease proposal", l.Proposal.Version, LeaseProposalVersion)
	}
	return &l, nil
}

// ValidateFields checks l's fields and times against now and lim, without
// signatures. A lease is a contract, not a message: it does not expire as
// a record, and its proposal is checked at the time of acceptance.
func (l *Lease) ValidateFields(now time.Time, lim Limits) error {
	if l.Version != LeaseVersion {
		return unknownVersion("lease", l.Version, LeaseVersion)
	}
	if err := l.Proposal.validateForm(lim); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	if l.Seller != l.Proposal.Seller {
		return fmt.Errorf("lease: %w: signed by %s, proposal names seller %s", ErrInvalid, l.Seller, l.Proposal.Seller)
	}
	if err := acceptedWithin("lease", l.AcceptedAt, l.Proposal.IssuedAt, l.Proposal.ExpiresAt, now, lim); err != nil {
		return err
	}
	return nil
}

// Validate runs every check a third party applies to a lease: fields, the
// buyer's signature on the proposal and the seller's on the lease. The
// buyer that holds its own proposal compares bytes instead of verifying
// its own signature (ValidateFields, then VerifySignature(l)).
func (l *Lease) Validate(now time.Time, lim Limits) error {
	if err := l.ValidateFields(now, lim); err != nil {
		return err
	}
	if err := VerifySignature(&l.Proposal); err != nil {
		return fmt.Errorf("lease: proposal: %w", err)
	}
	if err := VerifySignature(l); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	return nil
}

// LeaseRejection is the seller's signed refusal of a request: a proposal,
// a renewal or another lease action. It names the request's CID, a stable
// reason code and a detail for people.
type LeaseRejection struct {
	Version uint64  `cbor:"v"`
	Seller  peer.ID `cbor:"seller"`
	// Subject is the CID of the refused request record (for a status
	// request, the lease or proposal asked about).
	Subject Link   `cbor:"subject"`
	Reason  Reason `cbor:"reason"`
	Detail  string `cbor:"detail"`
	At      Time   `cbor:"at"`
	Sig     []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (r *LeaseRejection) Domain() string { return LeaseRejectionDomain }

// Author implements Record.
func (r *LeaseRejection) Author() peer.ID { return r.Seller }

func (r *LeaseRejection) signature() []byte     { return r.Sig }
func (r *LeaseRejection) setSignature(s []byte) { r.Sig = s }

// DecodeLeaseRejection decodes one rejection, checking its form.
func DecodeLeaseRejection(b []byte, lim Limits) (*LeaseRejection, error) {
	var r LeaseRejection
	if err := decodeRecord("lease rejection", b, MaxRejectionSize, &r); err != nil {
		return nil, err
	}
	if r.Version != LeaseRejectionVersion {
		return nil, unknownVersion("lease rejection", r.Version, LeaseRejectionVersion)
	}
	return &r, nil
}

// ValidateFields checks r's fields and time, without the signature. A
// reason this node does not know is valid: it is shown by its code.
func (r *LeaseRejection) ValidateFields(now time.Time, lim Limits) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("lease rejection: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if r.Version != LeaseRejectionVersion {
		return unknownVersion("lease rejection", r.Version, LeaseRejectionVersion)
	}
	if r.Seller == "" || !r.Subject.Defined() {
		return bad("seller and subject must be set")
	}
	if err := r.Reason.validateForm(); err != nil {
		return bad("%v", err)
	}
	if err := validateText("detail", r.Detail, MaxDetailLen); err != nil {
		return bad("%v", err)
	}
	return notFuture("lease rejection", r.At, now, lim)
}

// Validate checks r's fields, time and the seller's signature.
func (r *LeaseRejection) Validate(now time.Time, lim Limits) error {
	if err := r.ValidateFields(now, lim); err != nil {
		return err
	}
	if err := VerifySignature(r); err != nil {
		return fmt.Errorf("lease rejection: %w", err)
	}
	return nil
}

// LeaseRenewal is the buyer's signed request to extend a lease. Renewals
// of one lease form a chain: each names the extension before it (Prev), so
// a replayed or concurrent renewal cannot extend a lease twice.
type LeaseRenewal struct {
	Version uint64  `cbor:"v"`
	Buyer   peer.ID `cbor:"buyer"`
	// Lease is the lease ID.
	Lease Link `cbor:"lease"`
	// Prev is the CID of the lease's latest extension; absent for the first
	// renewal.
	Prev *Link `cbor:"prev,omitempty"`
	// Extend is how much longer the lease should run.
	Extend    Millis `cbor:"extend"`
	IssuedAt  Time   `cbor:"issued"`
	ExpiresAt Time   `cbor:"expires"`
	Sig       []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (r *LeaseRenewal) Domain() string { return LeaseRenewalDomain }

// Author implements Record.
func (r *LeaseRenewal) Author() peer.ID { return r.Buyer }

func (r *LeaseRenewal) signature() []byte     { return r.Sig }
func (r *LeaseRenewal) setSignature(s []byte) { r.Sig = s }

// CID encodes r and names it.
func (r *LeaseRenewal) CID() (cid.Cid, error) { return cidOfRecord(r) }

// DecodeLeaseRenewal decodes one renewal, checking its form.
func DecodeLeaseRenewal(b []byte, lim Limits) (*LeaseRenewal, error) {
	var r LeaseRenewal
	if err := decodeRecord("lease renewal", b, MaxRenewalSize, &r); err != nil {
		return nil, err
	}
	if r.Version != LeaseRenewalVersion {
		return nil, unknownVersion("lease renewal", r.Version, LeaseRenewalVersion)
	}
	return &r, nil
}

func (r *LeaseRenewal) validateForm() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("lease renewal: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if r.Version != LeaseRenewalVersion {
		return unknownVersion("lease renewal", r.Version, LeaseRenewalVersion)
	}
	if r.Buyer == "" || !r.Lease.Defined() {
		return bad("buyer and lease must be set")
	}
	if r.Prev != nil && !r.Prev.Defined() {
		return bad("prev is present but empty")
	}
	if e := r.Extend.Std(); e <= 0 || e > MaxLeaseLength {
		return bad("extend %v: want more than 0 and at most %v", e, MaxLeaseLength)
	}
	if err := validateWindow(r.IssuedAt, r.ExpiresAt); err != nil {
		return bad("%v", err)
	}
	return nil
}

// ValidateFields checks r's fields and times against now, without the
// signature.
func (r *LeaseRenewal) ValidateFields(now time.Time, lim Limits) error {
	if err := r.validateForm(); err != nil {
		return err
	}
	return checkLive("lease renewal", r.IssuedAt, r.ExpiresAt, now, lim)
}

// Validate checks r's fields, times and the buyer's signature.
func (r *LeaseRenewal) Validate(now time.Time, lim Limits) error {
	if err := r.ValidateFields(now, lim); err != nil {
		return err
	}
	if err := VerifySignature(r); err != nil {
		return fmt.Errorf("lease renewal: %w", err)
	}
	return nil
}

// LeaseExtension is the seller's countersignature over a renewal: the
// lease now ends at Ends. Like Lease, it embeds the signed renewal.
type LeaseExtension struct {
	Version uint64       `cbor:"v"`
	Seller  peer.ID      `cbor:"seller"`
	Renewal LeaseRenewal `cbor:"renewal"`
	// Ends is the lease's new end: its previous end plus Renewal.Extend.
	Ends       Time   `cbor:"ends"`
	AcceptedAt Time   `cbor:"accepted"`
	Sig        []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (e *LeaseExtension) Domain() string { return LeaseExtensionDomain }

// Author implements Record.
func (e *LeaseExtension) Author() peer.ID { return e.Seller }

func (e *LeaseExtension) signature() []byte     { return e.Sig }
func (e *LeaseExtension) setSignature(s []byte) { e.Sig = s }

// CID encodes e and names it.
func (e *LeaseExtension) CID() (cid.Cid, error) { return cidOfRecord(e) }

// DecodeLeaseExtension decodes one extension, checking its form.
func DecodeLeaseExtension(b []byte, lim Limits) (*LeaseExtension, error) {
	var e LeaseExtension
	if err := decodeRecord("lease extension", b, MaxExtensionSize, &e); err != nil {
		return nil, err
	}
	if e.Version != LeaseExtensionVersion {
		return nil, unknownVersion("lease extension", e.Version, LeaseExtensionVersion)
	}
	if e.Renewal.Version != LeaseRenewalVersion {
		return nil, unknownVersion("lease renewal", e.Renewal.Version, LeaseRenewalVersion)
	}
	return &e, nil
}

// ValidateFields checks e's fields and times, without signatures. Whether
// Ends follows from the lease and the extensions before it is checked by
// ExtendedEnd, which sees the whole chain.
func (e *LeaseExtension) ValidateFields(now time.Time, lim Limits) error {
	if e.Version != LeaseExtensionVersion {
		return unknownVersion("lease extension", e.Version, LeaseExtensionVersion)
	}
	if e.Seller == "" {
		return fmt.Errorf("lease extension: %w: seller must be set", ErrInvalid)
	}
	if err := e.Renewal.validateForm(); err != nil {
		return fmt.Errorf("lease extension: %w", err)
	}
	if e.Ends <= 0 || e.Ends > 2*maxWireTime {
		return fmt.Errorf("lease extension: %w: ends %d out of range", ErrInvalid, e.Ends)
	}
	return acceptedWithin("lease extension", e.AcceptedAt, e.Renewal.IssuedAt, e.Renewal.ExpiresAt, now, lim)
}

// Validate checks e's fields and times, the buyer's signature on the
// renewal and the seller's on the extension.
func (e *LeaseExtension) Validate(now time.Time, lim Limits) error {
	if err := e.ValidateFields(now, lim); err != nil {
		return err
	}
	if err := VerifySignature(&e.Renewal); err != nil {
		return fmt.Errorf("lease extension: renewal: %w", err)
	}
	if err := VerifySignature(e); err != nil {
		return fmt.Errorf("lease extension: %w", err)
	}
	return nil
}

// ExtendedEnd checks a lease's chain of extensions, in order, and returns
// the lease's end after them: each extension must be signed by the lease's
// seller over a renewal by its buyer for this lease (id), name the
// extension before it (none for the first), and end exactly Extend after
// the previous end. Signatures are not verified here.
func ExtendedEnd(l *Lease, id cid.Cid, exts []*LeaseExtension) (Time, error) {
	end := l.EndsAt()
	var prev cid.Cid
	for i, e := range exts {
		bad := func(format string, args ...any) (Time, error) {
			return 0, fmt.Errorf("lease %s: extension %d: %w: %s", id, i+1, ErrInvalid, fmt.Sprintf(format, args...))
		}
		r := &e.Renewal
		switch {
		case e.Seller != l.Seller:
			return bad("signed by %s, not the lease's seller", e.Seller)
		case r.Buyer != l.Buyer():
			return bad("renewal by %s, not the lease's buyer", r.Buyer)
		case r.Lease.Cid != id:
			return bad("renewal names lease %s", r.Lease.Cid)
		case prev.Defined() != (r.Prev != nil):
			return bad("renewal's prev does not name the extension before it")
		case r.Prev != nil && r.Prev.Cid != prev:
			return bad("renewal's prev %s, want %s", r.Prev.Cid, prev)
		case e.Ends != end+Time(r.Extend):
			return bad("ends %s, want %s", e.Ends, end+Time(r.Extend))
		}
		end = e.Ends
		c, err := e.CID()
		if err != nil {
			return 0, err
		}
		prev = c
	}
	return end, nil
}

// LeaseEnd is a signed statement that its author ends a lease now. The
// buyer may end a lease in any state; a buyer whose proposal is still
// unanswered names the proposal's CID, and the seller then ends the lease
// it granted on that proposal, or grants none.
type LeaseEnd struct {
	Version uint64  `cbor:"v"`
	By      peer.ID `cbor:"by"`
	// Subject is the lease ID, or the proposal's CID.
	Subject Link   `cbor:"subject"`
	At      Time   `cbor:"at"`
	Sig     []byte `cbor:"sig,omitempty"`
}

// Domain implements Record.
func (e *LeaseEnd) Domain() string { return LeaseEndDomain }

// Author implements Record.
func (e *LeaseEnd) Author() peer.ID { return e.By }

func (e *LeaseEnd) signature() []byte     { return e.Sig }
func (e *LeaseEnd) setSignature(s []byte) { e.Sig = s }

// DecodeLeaseEnd decodes one end, checking its form.
func DecodeLeaseEnd(b []byte, lim Limits) (*LeaseEnd, error) {
	var e LeaseEnd
	if err := decodeRecord("lease end", b, MaxLeaseEndSize, &e); err != nil {
		return nil, err
	}
	if e.Version != LeaseEndVersion {
		return nil, unknownVersion("lease end", e.Version, LeaseEndVersion)
	}
	return &e, nil
}

// ValidateFields checks e's fields and time, without the signature. An end
// does not expire: ending twice is ending once.
func (e *LeaseEnd) ValidateFields(now time.Time, lim Limits) error {
	if e.Version != LeaseEndVersion {
		return unknownVersion("lease end", e.Version, LeaseEndVersion)
	}
	if e.By == "" || !e.Subject.Defined() {
		return fmt.Errorf("lease end: %w: by and subject must be set", ErrInvalid)
	}
	if e.At <= 0 {
		return fmt.Errorf("lease end: %w: at must be set", ErrInvalid)
	}
	return notFuture("lease end", e.At, now, lim)
}

// Validate checks e's fields, time and its author's signature.
func (e *LeaseEnd) Validate(now time.Time, lim Limits) error {
	if err := e.ValidateFields(now, lim); err != nil {
		return err
	}
	if err := VerifySignature(e); err != nil {
		return fmt.Errorf("lease end: %w", err)
	}
	return nil
}

// LeaseState is where a lease stands.
type LeaseState string

// Lease states. A lease moves forward only: proposed, provisioning,
// running, ended; it may end from any state.
const (
	// StateProposed: the buyer sent the proposal and has no answer yet
	// (only the buyer's node knows this state).
	StateProposed LeaseState = "proposed"
	// StateProvisioning: signed by both; the seller is preparing the instance.
	StateProvisioning LeaseState = "provisioning"
	// StateRunning: the instance runs and answers at its endpoint.
	StateRunning LeaseState = "running"
	// StateEnded: over, for the EndCause given.
	StateEnded LeaseState = "ended"
)

// Valid reports whether s is a known state.
func (s LeaseState) Valid() bool {
	switch s {
	case StateProposed, StateProvisioning, StateRunning, StateEnded:
		return true
	}
	return false
}

// EndCause is why a lease ended.
type EndCause string

// End causes.
const (
	// CauseExpired: the lease ran its whole length.
	CauseExpired EndCause = "expired"
	// CauseEndedByBuyer: the buyer ended it early.
	CauseEndedByBuyer EndCause = "ended_by_buyer"
	// CauseEndedBySeller: the seller ended it early.
	CauseEndedBySeller EndCause = "ended_by_seller"
	// CauseFailed: the instance could not be provisioned or died.
	CauseFailed EndCause = "failed"
)

// Valid reports whether c is a known cause.
func (c EndCause) Valid() bool {
	switch c {
	case CauseExpired, CauseEndedByBuyer, CauseEndedBySeller, CauseFailed:
		return true
	}
	return false
}

// LeaseStatus is the seller's answer to a status request on an
// authenticated stream: where the lease stands. It is not signed; the
// stream is the seller's.
type LeaseStatus struct {
	Version  uint64     `cbor:"v"`
	Lease    Link       `cbor:"lease"`
	State    LeaseState `cbor:"state"`
	Cause    EndCause   `cbor:"cause"`
	Endpoint string     `cbor:"endpoint"`
	Detail   string     `cbor:"detail"`
	// Ends is the lease's end after its extensions.
	Ends Time `cbor:"ends"`
	// Head is the CID of the latest extension, absent when none.
	Head *Link `cbor:"head,omitempty"`
	// Extensions counts the extensions.
	Extensions uint32 `cbor:"extensions"`
	At         Time   `cbor:"at"`
}

// DecodeLeaseStatus decodes one status, checking its form.
func DecodeLeaseStatus(b []byte, lim Limits) (*LeaseStatus, error) {
	var s LeaseStatus
	if err := decodeRecord("lease status", b, MaxLeaseStatusSize, &s); err != nil {
		return nil, err
	}
	if s.Version != LeaseStatusVersion {
		return nil, unknownVersion("lease status", s.Version, LeaseStatusVersion)
	}
	return &s, nil
}

// Validate checks s's fields and time.
func (s *LeaseStatus) Validate(now time.Time, lim Limits) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("lease status: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if s.Version != LeaseStatusVersion {
		return unknownVersion("lease status", s.Version, LeaseStatusVersion)
	}
	if !s.Lease.Defined() {
		return bad("lease must be set")
	}
	if !s.State.Valid() {
		return bad("unknown state %q", s.State)
	}
	if (s.State == StateEnded) != (s.Cause != "") {
		return bad("a cause goes with the ended state, and only with it")
	}
	if s.Cause != "" && !s.Cause.Valid() {
		return bad("unknown cause %q", s.Cause)
	}
	if s.Head != nil && !s.Head.Defined() {
		return bad("head is present but empty")
	}
	if (s.Head != nil) != (s.Extensions > 0) {
		return bad("a head goes with extensions, and only with them")
	}
	if err := validatePrintable("endpoint", s.Endpoint, MaxEndpointLen); err != nil {
		return bad("%v", err)
	}
	if err := validateText("detail", s.Detail, MaxDetailLen); err != nil {
		return bad("%v", err)
	}
	return notFuture("lease status", s.At, now, lim)
}

// Reason is a stable code for why a seller refused a request. Codes cross
// the wire and are documented in docs/protocol/leases.md; each has words
// for people (Words).
type Reason string

// Reasons a seller refuses a lease request.
const (
	// ReasonNoCapacity: no free slot on the offer.
	ReasonNoCapacity Reason = "no_capacity"
	// ReasonOfferPaused: the seller drains the offer: no new leases or
	// renewals, running leases go on.
	ReasonOfferPaused Reason = "offer_paused"
	// ReasonOfferExpired: the offer copy named expired, or the offer was
	// withdrawn or is unknown to the seller.
	ReasonOfferExpired Reason = "offer_expired"
	// ReasonTermsChanged: price, receipt interval or grace differ from the
	// seller's current offer.
	ReasonTermsChanged Reason = "terms_changed"
	// ReasonLengthOutOfRange: the lease length (or renewed length) is
	// outside the offer's minimum and maximum.
	ReasonLengthOutOfRange Reason = "length_out_of_range"
	// ReasonApplianceTooLarge: the appliance is larger than the offer takes.
	ReasonApplianceTooLarge Reason = "appliance_too_large"
	// ReasonFormatNotAccepted: the offer does not take the appliance's format.
	ReasonFormatNotAccepted Reason = "format_not_accepted"
	// ReasonBuyerRefused: the seller denies this buyer, or the buyer holds
	// the offer's per-buyer cap of leases already.
	ReasonBuyerRefused Reason = "buyer_refused"
	// ReasonBadSignature: a record's signature does not verify.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonUnknownVersion: a record's version is unknown to the seller.
	ReasonUnknownVersion Reason = "unknown_version"
	// ReasonNotRenewable: the offer does not allow renewals, or the lease
	// has ended.
	ReasonNotRenewable Reason = "not_renewable"
	// ReasonNotBuyer: the peer asking is not the lease's buyer (or not the
	// author of the record it sent).
	ReasonNotBuyer Reason = "not_buyer"
	// ReasonUnknownLease: the seller holds no such lease.
	ReasonUnknownLease Reason = "unknown_lease"
	// ReasonInvalid: the request is malformed, out of range, expired or
	// addressed to another seller.
	ReasonInvalid Reason = "invalid"
	// ReasonBusy: the seller is overloaded; try again later.
	ReasonBusy Reason = "busy"
)

var reasonWords = map[Reason]string{
	ReasonNoCapacity:        "no free capacity",
	ReasonOfferPaused:       "offer paused by the seller",
	ReasonOfferExpired:      "offer expired or withdrawn",
	ReasonTermsChanged:      "terms changed (price, receipt interval or grace)",
	ReasonLengthOutOfRange:  "lease length out of the offer's range",
	ReasonApplianceTooLarge: "appliance too large",
	ReasonFormatNotAccepted: "appliance format not accepted",
	ReasonBuyerRefused:      "buyer refused",
	ReasonBadSignature:      "bad signature",
	ReasonUnknownVersion:    "unknown record version",
	ReasonNotRenewable:      "not renewable",
	ReasonNotBuyer:          "not the lease's buyer",
	ReasonUnknownLease:      "unknown lease",
	ReasonInvalid:           "invalid request",
	ReasonBusy:              "seller busy",
}

// Reasons lists every reason code this node knows, in documentation order.
func Reasons() []Reason {
	return []Reason{
		ReasonNoCapacity, ReasonOfferPaused, ReasonOfferExpired, ReasonTermsChanged,
		ReasonLengthOutOfRange, ReasonApplianceTooLarge, ReasonFormatNotAccepted,
		ReasonBuyerRefused, ReasonBadSignature, ReasonUnknownVersion, ReasonNotRenewable,
		ReasonNotBuyer, ReasonUnknownLease, ReasonInvalid, ReasonBusy,
	}
}

// Known reports whether r is a code this node knows.
func (r Reason) Known() bool { _, ok := reasonWords[r]; return ok }

// Words is the reason as the CLI prints it. A code this node does not know
// (from a newer seller) prints as "refused (<code>)".
func (r Reason) Words() string {
	if w, ok := reasonWords[r]; ok {
		return w
	}
	return "refused (" + string(r) + ")"
}

// validateForm checks the shape of a reason code: 1 to 64 of [a-z0-9_].
func (r Reason) validateForm() error {
	if len(r) == 0 || len(r) > 64 {
		return fmt.Errorf("reason %q: want 1 to 64 of a-z 0-9 _", string(r))
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("reason %q: want 1 to 64 of a-z 0-9 _", string(r))
		}
	}
	return nil
}

// decodeRecord checks size and canonical form.
func decodeRecord(what string, b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("%s of %d bytes: %w (limit %d)", what, len(b), ErrTooLarge, max)
	}
	if err := unmarshalCanonical(b, v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func unknownVersion(what string, have uint64, want int) error {
	return fmt.Errorf("%s version %d: %w (this node knows %d)", what, have, ErrUnknownVersion, want)
}

func cidOfRecord(r Record) (cid.Cid, error) {
	b, err := Marshal(r)
	if err != nil {
		return cid.Undef, err
	}
	return CIDOf(b), nil
}

// maxWireTime bounds the times a request may state (about the year
// 37000), so that no sum of a time and a bounded length overflows.
const maxWireTime Time = 1 << 50

// validateWindow checks a request's own validity window: issued set,
// expires after it, by at most MaxProposalTTL.
func validateWindow(issued, expires Time) error {
	if issued <= 0 || issued > maxWireTime {
		return fmt.Errorf("issued %d: want a time after 1970 and before the year 37000", issued)
	}
	if expires <= issued {
		return fmt.Errorf("expires %s not after issued %s", expires, issued)
	}
	if ttl := (expires - issued); Millis(ttl).Std() > MaxProposalTTL {
		return fmt.Errorf("lives %v, limit %v", Millis(ttl).Std(), MaxProposalTTL)
	}
	return nil
}

// checkLive checks a request's window against now, allowing the skew.
func checkLive(what string, issued, expires Time, now time.Time, lim Limits) error {
	if issued.Std().After(now.Add(lim.ClockSkew)) {
		return fmt.Errorf("%s: %w: issued %s, now %s", what, ErrFarFuture, issued, TimeOf(now))
	}
	if !expires.Std().After(now.Add(-lim.ClockSkew)) {
		return fmt.Errorf("%s: %w: at %s, now %s", what, ErrExpired, expires, TimeOf(now))
	}
	return nil
}

// acceptedWithin checks a countersignature's time: within the request's
// window (with skew) and not ahead of now.
func acceptedWithin(what string, accepted, issued, expires Time, now time.Time, lim Limits) error {
	skew := Time(lim.ClockSkew.Milliseconds())
	if accepted < issued-skew || accepted > expires+skew {
		return fmt.Errorf("%s: %w: accepted %s outside the request's window %s to %s", what, ErrInvalid, accepted, issued, expires)
	}
	return notFuture(what, accepted, now, lim)
}

func notFuture(what string, at Time, now time.Time, lim Limits) error {
	if at.Std().After(now.Add(lim.ClockSkew)) {
		return fmt.Errorf("%s: %w: at %s, now %s", what, ErrFarFuture, at, TimeOf(now))
	}
	return nil
}

// validateAccessKey allows printable ASCII only: an SSH public key line
// without its newline, or a token of the seller's cloud.
func validateAccessKey(k string) error {
	return validatePrintable("access key", k, MaxAccessKeyLen)
}

// validatePrintable allows printable ASCII (space to tilde) only.
func validatePrintable(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s of %d bytes: at most %d", what, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("%s: byte %d is not printable ASCII", what, i)
		}
	}
	return nil
}

// validateText allows UTF-8 text without control characters other than
// newline and tab.
// CleanText makes s a text a record may carry in a field of at most max
// bytes: valid UTF-8 without control characters (each invalid byte or
// control character but newline and tab becomes '?'), cut at a character
// boundary.
func CleanText(s string, max int) string {
	out := make([]byte, 0, min(len(s), max))
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			r = '?'
		}
		if len(out)+utf8.RuneLen(r) > max {
			break
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}

func validateText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s of %d bytes: at most %d", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not UTF-8", what)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return fmt.Errorf("%s: contains control character %U", what, r)
		}
	}
	return nil
}

// SameProposal reports whether a and b encode to the same bytes: whether a
// lease embeds exactly the proposal the buyer sent.
func SameProposal(a, b *LeaseProposal) bool {
	ab, err1 := Marshal(a)
	bb, err2 := Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// ValidateEndpoint checks an instance's endpoint as a LeaseStatus carries
// it: printable ASCII, at most MaxEndpointLen bytes; empty is allowed.
func ValidateEndpoint(s string) error { return validatePrintable("endpoint", s, MaxEndpointLen) }
