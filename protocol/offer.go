package protocol

import (
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// OfferVersion is the only Offer version this code knows.
const OfferVersion = 1

// OfferDomain is the signing domain of offers.
const OfferDomain = "spotmesh/offer/v1"

// Offer is a seller's signed statement of capacity for rent. An offer is
// identified by (Seller, Key); every republished copy is a new signed
// version with a later IssuedAt and its own CID, and the newest copy wins.
// A copy is valid from IssuedAt until ExpiresAt; a withdrawn copy ends the
// offer.
type Offer struct {
	Version  uint64   `cbor:"v"`
	Seller   peer.ID  `cbor:"seller"`
	Key      string   `cbor:"key"`
	Region   string   `cbor:"region"`
	Hardware Hardware `cbor:"hw"`
	// Slots is how many leases of this profile the seller can take now;
	// zero means sold out.
	Slots uint32 `cbor:"slots"`
	Price Price  `cbor:"price"`
	// MinLease and MaxLease bound a lease's length.
	MinLease  Millis `cbor:"min_lease"`
	MaxLease  Millis `cbor:"max_lease"`
	Renewable bool   `cbor:"renewable"`
	// Formats lists the appliance formats accepted ("bundle", "qcow2", "raw", ...).
	Formats []string `cbor:"formats"`
	// MaxApplianceSize is the largest appliance, in bytes, the seller fetches.
	MaxApplianceSize uint64 `cbor:"max_appliance"`
	// ReceiptInterval is how often the seller sends usage receipts;
	// PaymentGrace how far acknowledgements may lag before the seller stops
	// the instance. Both are copied into every lease.
	ReceiptInterval Millis `cbor:"receipt_interval"`
	PaymentGrace    Millis `cbor:"grace"`
	// PerBuyerCap caps the leases one buyer may hold on this offer; 0 means none.
	PerBuyerCap uint32 `cbor:"per_buyer"`
	// Paused offers take no new leases; running ones go on.
	Paused bool `cbor:"paused"`
	// Addrs are the seller's multiaddrs, so a buyer can dial it directly.
	Addrs     []string `cbor:"addrs"`
	IssuedAt  Time     `cbor:"issued"`
	ExpiresAt Time     `cbor:"expires"`
	Withdrawn bool     `cbor:"withdrawn"`
	Sig       []byte   `cbor:"sig,omitempty"`
}

// Hardware is a hardware profile.
type Hardware struct {
	// Profile is the seller's name for it, such as c4m8.
	Profile  string `cbor:"profile"`
	VCPU     uint32 `cbor:"vcpu"`
	Memory   uint64 `cbor:"mem"`
	Disk     uint64 `cbor:"disk"`
	GPUModel string `cbor:"gpu_model"`
	GPUs     uint32 `cbor:"gpus"`
	// Arch is the CPU architecture as Go names it (amd64, arm64).
	Arch string `cbor:"arch"`
}

// Domain implements Record.
func (o *Offer) Domain() string { return OfferDomain }

// Author implements Record.
func (o *Offer) Author() peer.ID { return o.Seller }

func (o *Offer) signature() []byte     { return o.Sig }
func (o *Offer) setSignature(s []byte) { o.Sig = s }

// OfferID names an offer across all its versions.
type OfferID struct {
	Seller peer.ID
	Key    string
}

// String prints seller/key.
func (id OfferID) String() string { return id.Seller.String() + "/" + id.Key }

// ID is the offer's identity across versions.
func (o *Offer) ID() OfferID { return OfferID{o.Seller, o.Key} }

// Newer reports whether o supersedes old: a later IssuedAt, or at the same
// instant a withdrawal over a live copy.
func (o *Offer) Newer(old *Offer) bool {
	if o.IssuedAt != old.IssuedAt {
		return o.IssuedAt > old.IssuedAt
	}
	return o.Withdrawn && !old.Withdrawn
}

// Limits are the bounds every node applies to records it receives. They are
// passed in, never global, so tests and operators can tighten them.
type Limits struct {
	// ClockSkew is how far apart two honest clocks may be.
	ClockSkew time.Duration
	// MaxOfferSize is the largest encoded offer accepted, in bytes.
	MaxOfferSize int
	// MaxOfferTTL is the longest life of one offer copy.
	MaxOfferTTL time.Duration
	// MinReceiptInterval and MaxReceiptInterval bound an offer's receipt
	// interval; MaxGrace bounds its payment grace.
	MinReceiptInterval time.Duration
	MaxReceiptInterval time.Duration
	MaxGrace           time.Duration
}

// DefaultLimits are the limits of the public market.
func DefaultLimits() Limits {
	return Limits{
		ClockSkew:          30 * time.Second,
		MaxOfferSize:       4096,
		MaxOfferTTL:        24 * time.Hour,
		MinReceiptInterval: 100 * time.Millisecond,
		MaxReceiptInterval: time.Hour,
		MaxGrace:           24 * time.Hour,
	}
}

// DecodeOffer decodes one offer, checking only its form: size, canonical
// encoding, known version. Validate checks the rest.
func DecodeOffer(b []byte, lim Limits) (*Offer, error) {
	if lim.MaxOfferSize > 0 && len(b) > lim.MaxOfferSize {
		return nil, fmt.Errorf("offer of %d bytes: %w (limit %d)", len(b), ErrTooLarge, lim.MaxOfferSize)
	}
	var o Offer
	if err := unmarshalCanonical(b, &o); err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	if o.Version != OfferVersion {
		return nil, fmt.Errorf("offer version %d: %w (this node knows %d)", o.Version, ErrUnknownVersion, OfferVersion)
	}
	return &o, nil
}

// CID encodes o and names it. Callers that already hold the bytes use CIDOf.
func (o *Offer) CID() (cid.Cid, error) {
	b, err := Marshal(o)
	if err != nil {
		return cid.Undef, err
	}
	return CIDOf(b), nil
}

// ValidateFields checks o's fields and times against now and lim, without
// the signature. A seller runs it before signing; receivers run Validate.
func (o *Offer) ValidateFields(now time.Time, lim Limits) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("offer %s: %w: %s", o.Key, ErrInvalid, fmt.Sprintf(format, args...))
	}
	if o.Version != OfferVersion {
		return fmt.Errorf("offer version %d: %w (this node knows %d)", o.Version, ErrUnknownVersion, OfferVersion)
	}
	if o.Seller == "" {
		return bad("no seller")
	}
	if err := ValidateName("key", o.Key); err != nil {
		return bad("%v", err)
	}
	if err := ValidateRegion(o.Region); err != nil {
		return bad("%v", err)
	}
	if err := ValidateName("profile", o.Hardware.Profile); err != nil {
		return bad("%v", err)
	}
	if o.Hardware.VCPU == 0 {
		return bad("vcpu must be at least 1")
	}
	if o.Hardware.Memory == 0 {
		return bad("memory must be set")
	}
	if (o.Hardware.GPUs == 0) != (o.Hardware.GPUModel == "") {
		return bad("gpu model and gpu count go together")
	}
	if len(o.Hardware.GPUModel) > 64 || len(o.Hardware.Arch) > 16 {
		return bad("gpu model or arch too long")
	}
	if err := o.Price.Validate(); err != nil {
		return bad("%v", err)
	}
	if o.MinLease < 0 || o.MaxLease <= 0 || o.MinLease > o.MaxLease {
		return bad("lease lengths: want 0 <= min <= max and max > 0, have min %v max %v", o.MinLease.Std(), o.MaxLease.Std())
	}
	if len(o.Formats) == 0 || len(o.Formats) > 16 {
		return bad("want 1 to 16 appliance formats")
	}
	for _, f := range o.Formats {
		if err := ValidateName("format", f); err != nil {
			return bad("%v", err)
		}
	}
	if ri := o.ReceiptInterval.Std(); ri < lim.MinReceiptInterval || ri > lim.MaxReceiptInterval {
		return bad("receipt interval %v outside [%v, %v]", ri, lim.MinReceiptInterval, lim.MaxReceiptInterval)
	}
	if g := o.PaymentGrace.Std(); g < 0 || g > lim.MaxGrace {
		return bad("payment grace %v outside [0, %v]", g, lim.MaxGrace)
	}
	if len(o.Addrs) > 32 {
		return bad("more than 32 addresses")
	}
	for _, a := range o.Addrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return bad("address %q: %v", a, err)
		}
	}
	issued, expires := o.IssuedAt.Std(), o.ExpiresAt.Std()
	if !expires.After(issued) {
		return bad("expires %s not after issued %s", o.ExpiresAt, o.IssuedAt)
	}
	if ttl := expires.Sub(issued); ttl > lim.MaxOfferTTL {
		return fmt.Errorf("offer %s: %w: lives %v, limit %v", o.Key, ErrFarFuture, ttl, lim.MaxOfferTTL)
	}
	if issued.After(now.Add(lim.ClockSkew)) {
		return fmt.Errorf("offer %s: %w: issued %s, now %s", o.Key, ErrFarFuture, o.IssuedAt, TimeOf(now))
	}
	if !expires.After(now.Add(-lim.ClockSkew)) {
		return fmt.Errorf("offer %s: %w: at %s, now %s", o.Key, ErrExpired, o.ExpiresAt, TimeOf(now))
	}
	return nil
}

// Validate runs every check a receiver applies: fields, times, signature.
// The signature comes last, as it costs most.
func (o *Offer) Validate(now time.Time, lim Limits) error {
	if err := o.ValidateFields(now, lim); err != nil {
		return err
	}
	if err := VerifySignature(o); err != nil {
		return fmt.Errorf("offer %s: %w", o.Key, err)
	}
	return nil
}

// Expired reports whether o's copy has lapsed at now (no skew allowance:
// a book evicts on its own clock).
func (o *Offer) Expired(now time.Time) bool { return !o.ExpiresAt.Std().After(now) }

// ValidateName checks a short identifier: 1 to 64 of [A-Za-z0-9._-].
func ValidateName(what, s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("%s %q: want 1 to 64 characters of A-Z a-z 0-9 . _ -", what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%s %q: want 1 to 64 characters of A-Z a-z 0-9 . _ -", what, s)
		}
	}
	return nil
}

// ValidateRegion checks a region name: lower-case words joined by dashes,
// broadest first (eu-de-fra), so that a prefix query "eu" finds them.
func ValidateRegion(s string) error {
	if len(s) == 0 || len(s) > 64 || s[0] == '-' || s[len(s)-1] == '-' {
		return fmt.Errorf("region %q: want lower-case words joined by dashes, like eu-de", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("region %q: want lower-case words joined by dashes, like eu-de", s)
		}
	}
	return nil
}

// ReceiveOffer is the whole receive check on bytes from the network: decode
// (size, canonical form, version), fields and times, and the signature,
// verified over the received bytes without encoding the record again.
func ReceiveOffer(raw []byte, now time.Time, lim Limits) (*Offer, error) {
	o, err := DecodeOffer(raw, lim)
	if err != nil {
		return nil, err
	}
	if err := o.ValidateFields(now, lim); err != nil {
		return o, err
	}
	if err := verifyEncoded(o, raw); err != nil {
		return o, fmt.Errorf("offer %s: %w", o.Key, err)
	}
	return o, nil
}
