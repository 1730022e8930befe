package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testCID names some bytes, for links in test records.
func testCID(s string) Link { return Link{CIDOf([]byte(s))} }

func sampleProposal(buyer, seller peer.ID, now time.Time) *LeaseProposal {
	return &LeaseProposal{
		Version:         LeaseProposalVersion,
		Buyer:           buyer,
		Seller:          seller,
		Offer:           testCID("offer"),
		OfferKey:        "c4m8-1",
		Slots:           1,
		Start:           TimeOf(now),
		Length:          MillisOf(2 * time.Hour),
		Price:           Price{Micro: 40000, Currency: "USD"},
		Appliance:       testCID("appliance"),
		ApplianceSize:   1 << 20,
		ApplianceFormat: "bundle",
		AccessKey:       "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB buyer@host",
		ReceiptInterval: MillisOf(time.Minute),
		PaymentGrace:    MillisOf(5 * time.Minute),
		Nonce:           bytes.Repeat([]byte{7}, NonceSize),
		IssuedAt:        TimeOf(now),
		ExpiresAt:       TimeOf(now.Add(time.Minute)),
	}
}

type leaseParties struct {
	buyerKey, sellerKey, otherKey crypto.PrivKey
	buyer, seller, other          peer.ID
	now                           time.Time
}

func newParties(t testing.TB) *leaseParties {
	p := &leaseParties{now: time.Now()}
	p.buyerKey, p.buyer = newKey(t)
	p.sellerKey, p.seller = newKey(t)
	p.otherKey, p.other = newKey(t)
	return p
}

func mustSign(t testing.TB, r Record, k crypto.PrivKey) []byte {
	t.Helper()
	b, err := Sign(r, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge signs r with k although k is not r's author, as a forger would.
func forge(t testing.TB, r Record, k crypto.PrivKey) []byte {
	t.Helper()
	payload, err := SigningBytes(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	r.setSignature(sig)
	b, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *leaseParties) lease(t testing.TB, mut func(*LeaseProposal, *Lease)) []byte {
	t.Helper()
	prop := sampleProposal(p.buyer, p.seller, p.now)
	l := &Lease{Version: LeaseVersion, Seller: p.seller, AcceptedAt: TimeOf(p.now)}
	if mut != nil {
		mut(prop, l)
	}
	mustSign(t, prop, p.buyerKey)
	l.Proposal = *prop
	return mustSign(t, l, p.sellerKey)
}

func TestLeaseProposalValidate(t *testing.T) {
	p := newParties(t)
	lim := DefaultLimits()
	signed := func(mut func(*LeaseProposal)) func() []byte {
		return func() []byte {
			prop := sampleProposal(p.buyer, p.seller, p.now)
			mut(prop)
			return mustSign(t, prop, p.buyerKey)
		}
	}
	tests := []struct {
		name  string
		bytes func() []byte
		want  error
	}{
		{"valid", signed(func(*LeaseProposal) {}), nil},
		{"empty access key", signed(func(l *LeaseProposal) { l.AccessKey = "" }), nil},
		{"start within skew before issue", signed(func(l *LeaseProposal) { l.Start -= Time(10_000) }), nil},
		{"unknown version", signed(func(l *LeaseProposal) { l.Version = 2 }), ErrUnknownVersion},
		{"expired", signed(func(l *LeaseProposal) {
			l.IssuedAt = TimeOf(p.now.Add(-5 * time.Minute))
			l.Start = l.IssuedAt
			l.ExpiresAt = TimeOf(p.now.Add(-time.Minute))
		}), ErrExpired},
		{"far future", signed(func(l *LeaseProposal) {
			l.IssuedAt = TimeOf(p.now.Add(time.Hour))
			l.Start = l.IssuedAt
			l.ExpiresAt = TimeOf(p.now.Add(time.Hour + time.Minute))
		}), ErrFarFuture},
		{"lives too long", signed(func(l *LeaseProposal) { l.ExpiresAt = TimeOf(p.now.Add(time.Hour)) }), ErrInvalid},
		{"zero slots", signed(func(l *LeaseProposal) { l.Slots = 0 }), ErrInvalid},
		{"zero length", signed(func(l *LeaseProposal) { l.Length = 0 }), ErrInvalid},
		{"negative length", signed(func(l *LeaseProposal) { l.Length = -1 }), ErrInvalid},
		{"huge length", signed(func(l *LeaseProposal) { l.Length = MillisOf(MaxLeaseLength) + 1 }), ErrInvalid},
		{"bad currency", signed(func(l *LeaseProposal) { l.Price.Currency = "usd" }), ErrInvalid},
		{"no appliance size", signed(func(l *LeaseProposal) { l.ApplianceSize = 0 }), ErrInvalid},
		{"bad format", signed(func(l *LeaseProposal) { l.ApplianceFormat = "a b" }), ErrInvalid},
		{"access key with newline", signed(func(l *LeaseProposal) { l.AccessKey = "ssh-ed25519 AAA\n" }), ErrInvalid},
		{"access key too long", signed(func(l *LeaseProposal) { l.AccessKey = strings.Repeat("a", MaxAccessKeyLen+1) }), ErrInvalid},
		{"short nonce", signed(func(l *LeaseProposal) { l.Nonce = l.Nonce[:8] }), ErrInvalid},
		{"interval too short", signed(func(l *LeaseProposal) { l.ReceiptInterval = 1 }), ErrInvalid},
		{"grace too long", signed(func(l *LeaseProposal) { l.PaymentGrace = MillisOf(25 * time.Hour) }), ErrInvalid},
		{"start long before issue", signed(func(l *LeaseProposal) { l.Start -= Time(MillisOf(time.Hour)) }), ErrInvalid},
		{"start too late", signed(func(l *LeaseProposal) { l.Start += Time(MillisOf(2 * time.Hour)) }), ErrInvalid},
		{"self lease", func() []byte {
			prop := sampleProposal(p.buyer, p.buyer, p.now)
			return mustSign(t, prop, p.buyerKey)
		}, ErrInvalid},
		{"bad offer key", signed(func(l *LeaseProposal) { l.OfferKey = "" }), ErrInvalid},
		{"changed after signing", func() []byte {
			prop := sampleProposal(p.buyer, p.seller, p.now)
			mustSign(t, prop, p.buyerKey)
			prop.Price.Micro = 1
			b, _ := Marshal(prop)
			return b
		}, ErrBadSignature},
		{"signed by another", func() []byte {
			return forge(t, sampleProposal(p.buyer, p.seller, p.now), p.otherKey)
		}, ErrBadSignature},
		{"unsigned", func() []byte {
			b, _ := Marshal(sampleProposal(p.buyer, p.seller, p.now))
			return b
		}, ErrBadSignature},
		{"oversized", func() []byte { return make([]byte, MaxProposalSize+1) }, ErrTooLarge},
		{"not cbor", func() []byte { return []byte("hello") }, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prop, err := DecodeLeaseProposal(tc.bytes(), lim)
			if err == nil {
				err = prop.Validate(p.now, lim)
			}
			checkErr(t, err, tc.want)
		})
	}
}

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil && err != nil {
		t.Fatalf("want valid, got %v", err)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("want %v, got %v", want, err)
	}
}

func TestLeaseValidate(t *testing.T) {
	p := newParties(t)
	lim := DefaultLimits()
	tests := []struct {
		name  string
		bytes func() []byte
		now   time.Time
		want  error
	}{
		{"valid", func() []byte { return p.lease(t, nil) }, p.now, nil},
		{"valid long after the proposal expired", func() []byte { return p.lease(t, nil) }, p.now.Add(30 * 24 * time.Hour), nil},
		{"accepted after the proposal expired", func() []byte {
			return p.lease(t, func(_ *LeaseProposal, l *Lease) { l.AcceptedAt = TimeOf(p.now.Add(5 * time.Minute)) })
		}, p.now.Add(10 * time.Minute), ErrInvalid},
		{"accepted in the future", func() []byte {
			return p.lease(t, func(pr *LeaseProposal, l *Lease) {
				l.AcceptedAt = TimeOf(p.now.Add(time.Minute))
			})
		}, p.now.Add(-time.Hour), ErrFarFuture},
		{"seller is not the proposal's", func() []byte {
			prop := sampleProposal(p.buyer, p.other, p.now)
			mustSign(t, prop, p.buyerKey)
			l := &Lease{Version: LeaseVersion, Seller: p.seller, Proposal: *prop, AcceptedAt: TimeOf(p.now)}
			return mustSign(t, l, p.sellerKey)
		}, p.now, ErrInvalid},
		{"proposal forged", func() []byte {
			prop := sampleProposal(p.buyer, p.seller, p.now)
			forge(t, prop, p.sellerKey)
			l := &Lease{Version: LeaseVersion, Seller: p.seller, Proposal: *prop, AcceptedAt: TimeOf(p.now)}
			return mustSign(t, l, p.sellerKey)
		}, p.now, ErrBadSignature},
		{"lease forged", func() []byte {
			prop := sampleProposal(p.buyer, p.seller, p.now)
			mustSign(t, prop, p.buyerKey)
			l := &Lease{Version: LeaseVersion, Seller: p.seller, Proposal: *prop, AcceptedAt: TimeOf(p.now)}
			return forge(t, l, p.buyerKey)
		}, p.now, ErrBadSignature},
		{"unknown version", func() []byte {
			return p.lease(t, func(_ *LeaseProposal, l *Lease) { l.Version = 9 })
		}, p.now, ErrUnknownVersion},
		{"unknown proposal version", func() []byte {
			return p.lease(t, func(pr *LeaseProposal, _ *Lease) { pr.Version = 9 })
		}, p.now, ErrUnknownVersion},
		{"oversized", func() []byte { return make([]byte, MaxLeaseSize+1) }, p.now, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := DecodeLease(tc.bytes(), lim)
			if err == nil {
				err = l.Validate(tc.now, lim)
			}
			checkErr(t, err, tc.want)
		})
	}
}

func TestLeaseEmbedsProposalBytes(t *testing.T) {
	p := newParties(t)
	prop := sampleProposal(p.buyer, p.seller, p.now)
	pb := mustSign(t, prop, p.buyerKey)
	l := &Lease{Version: LeaseVersion, Seller: p.seller, Proposal: *prop, AcceptedAt: TimeOf(p.now)}
	lb := mustSign(t, l, p.sellerKey)
	d, err := DecodeLease(lb, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := d.Proposal.CID(); c != CIDOf(pb) {
		t.Fatal("embedded proposal does not name the proposal sent")
	}
	if !SameProposal(&d.Proposal, prop) {
		t.Fatal("SameProposal false for the same proposal")
	}
	if !bytes.Contains(lb, pb) {
		t.Fatal("the lease's encoding does not contain the proposal's bytes")
	}
	if c, _ := d.CID(); c != CIDOf(lb) {
		t.Fatal("lease CID differs from CIDOf(bytes)")
	}
	if d.EndsAt() != prop.Start+Time(prop.Length) || d.Buyer() != p.buyer {
		t.Fatal("EndsAt or Buyer wrong")
	}
}

func TestLeaseRejectionValidate(t *testing.T) {
	p := newParties(t)
	lim := DefaultLimits()
	base := func() *LeaseRejection {
		return &LeaseRejection{
			Version: LeaseRejectionVersion, Seller: p.seller, Subject: testCID("proposal"),
			Reason: ReasonNoCapacity, Detail: "all 100 slots are taken", At: TimeOf(p.now),
		}
	}
	signed := func(mut func(*LeaseRejection)) func() []byte {
		return func() []byte { r := base(); mut(r); return mustSign(t, r, p.sellerKey) }
	}
	tests := []struct {
		name  string
		bytes func() []byte
		want  error
	}{
		{"valid", signed(func(*LeaseRejection) {}), nil},
		{"unknown but well-formed reason", signed(func(r *LeaseRejection) { r.Reason = "over_budget_2" }), nil},
		{"detail with newline", signed(func(r *LeaseRejection) { r.Detail = "a\nb" }), nil},
		{"bad reason form", signed(func(r *LeaseRejection) { r.Reason = "No Capacity" }), ErrInvalid},
		{"empty reason", signed(func(r *LeaseRejection) { r.Reason = "" }), ErrInvalid},
		{"detail too long", signed(func(r *LeaseRejection) { r.Detail = strings.Repeat("x", MaxDetailLen+1) }), ErrInvalid},
		{"detail with escape", signed(func(r *LeaseRejection) { r.Detail = "\x1b[31m" }), ErrInvalid},
		{"far future", signed(func(r *LeaseRejection) { r.At = TimeOf(p.now.Add(time.Hour)) }), ErrFarFuture},
		{"unknown version", signed(func(r *LeaseRejection) { r.Version = 3 }), ErrUnknownVersion},
		{"forged", func() []byte { return forge(t, base(), p.otherKey) }, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeLeaseRejection(tc.bytes(), lim)
			if err == nil {
				err = r.Validate(p.now, lim)
			}
			checkErr(t, err, tc.want)
		})
	}
}

func TestReasonWords(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		if !r.Known() {
			t.Errorf("%s listed but not known", r)
		}
		if err := r.validateForm(); err != nil {
			t.Errorf("%s: %v", r, err)
		}
		w := r.Words()
		if w == "" || strings.Contains(w, "_") || seen[w] {
			t.Errorf("%s: words %q empty, with underscores or not unique", r, w)
		}
		seen[w] = true
	}
	if len(Reasons()) != len(reasonWords) {
		t.Errorf("Reasons() lists %d codes, words exist for %d", len(Reasons()), len(reasonWords))
	}
	if w := Reason("new_code").Words(); w != "refused (new_code)" {
		t.Errorf("unknown reason words %q", w)
	}
}

// chain builds a lease and n extensions of one hour each.
func (p *leaseParties) chain(t testing.TB, n int) (*Lease, cid.Cid, []*LeaseExtension) {
	t.Helper()
	lb := p.lease(t, nil)
	l, err := DecodeLease(lb, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	id := CIDOf(lb)
	end := l.EndsAt()
	var exts []*LeaseExtension
	var prev *Link
	for i := 0; i < n; i++ {
		r := &LeaseRenewal{
			Version: LeaseRenewalVersion, Buyer: p.buyer, Lease: Link{id}, Prev: prev,
			Extend: MillisOf(time.Hour), IssuedAt: TimeOf(p.now), ExpiresAt: TimeOf(p.now.Add(time.Minute)),
		}
		mustSign(t, r, p.buyerKey)
		end += Time(r.Extend)
		e := &LeaseExtension{Version: LeaseExtensionVersion, Seller: p.seller, Renewal: *r, Ends: end, AcceptedAt: TimeOf(p.now)}
		eb := mustSign(t, e, p.sellerKey)
		de, err := DecodeLeaseExtension(eb, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if err := de.Validate(p.now, DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		exts = append(exts, de)
		prev = &Link{CIDOf(eb)}
	}
	return l, id, exts
}

func TestExtendedEnd(t *testing.T) {
	p := newParties(t)
	l, id, exts := p.chain(t, 3)
	end, err := ExtendedEnd(l, id, exts)
	if err != nil {
		t.Fatal(err)
	}
	if want := l.EndsAt() + Time(MillisOf(3*time.Hour)); end != want {
		t.Fatalf("end %s, want %s", end, want)
	}
	if end, err := ExtendedEnd(l, id, nil); err != nil || end != l.EndsAt() {
		t.Fatalf("no extensions: %s %v", end, err)
	}
	bad := []struct {
		name string
		exts func() []*LeaseExtension
	}{
		{"out of order", func() []*LeaseExtension { return []*LeaseExtension{exts[1], exts[0], exts[2]} }},
		{"one missing", func() []*LeaseExtension { return []*LeaseExtension{exts[0], exts[2]} }},
		{"twice", func() []*LeaseExtension { return []*LeaseExtension{exts[0], exts[0]} }},
		{"wrong end", func() []*LeaseExtension {
			e := *exts[0]
			e.Ends++
			return []*LeaseExtension{&e}
		}},
		{"other lease", func() []*LeaseExtension {
			e := *exts[0]
			e.Renewal.Lease = testCID("other lease")
			return []*LeaseExtension{&e}
		}},
		{"other seller", func() []*LeaseExtension {
			e := *exts[0]
			e.Seller = p.other
			return []*LeaseExtension{&e}
		}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ExtendedEnd(l, id, tc.exts()); !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
		})
	}
}

func TestLeaseRenewalAndExtensionValidate(t *testing.T) {
	p := newParties(t)
	lim := DefaultLimits()
	base := func() *LeaseRenewal {
		return &LeaseRenewal{
			Version: LeaseRenewalVersion, Buyer: p.buyer, Lease: testCID("lease"),
			Extend: MillisOf(time.Hour), IssuedAt: TimeOf(p.now), ExpiresAt: TimeOf(p.now.Add(time.Minute)),
		}
	}
	renewals := []struct {
		name string
		mut  func(*LeaseRenewal)
		want error
	}{
		{"valid", func(*LeaseRenewal) {}, nil},
		{"with prev", func(r *LeaseRenewal) { l := testCID("ext"); r.Prev = &l }, nil},
		{"zero extend", func(r *LeaseRenewal) { r.Extend = 0 }, ErrInvalid},
		{"expired", func(r *LeaseRenewal) {
			r.IssuedAt = TimeOf(p.now.Add(-5 * time.Minute))
			r.ExpiresAt = TimeOf(p.now.Add(-4 * time.Minute))
		}, ErrExpired},
		{"no window", func(r *LeaseRenewal) { r.ExpiresAt = r.IssuedAt }, ErrInvalid},
		{"unknown version", func(r *LeaseRenewal) { r.Version = 0 }, ErrUnknownVersion},
	}
	for _, tc := range renewals {
		t.Run("renewal/"+tc.name, func(t *testing.T) {
			r := base()
			tc.mut(r)
			b := mustSign(t, r, p.buyerKey)
			d, err := DecodeLeaseRenewal(b, lim)
			if err == nil {
				err = d.Validate(p.now, lim)
			}
			checkErr(t, err, tc.want)
		})
	}
	t.Run("renewal/forged", func(t *testing.T) {
		d, err := DecodeLeaseRenewal(forge(t, base(), p.otherKey), lim)
		if err == nil {
			err = d.Validate(p.now, lim)
		}
		checkErr(t, err, ErrBadSignature)
	})

	exts := []struct {
		name string
		mut  func(*LeaseExtension)
		want error
	}{
		{"valid", func(*LeaseExtension) {}, nil},
		{"no end", func(e *LeaseExtension) { e.Ends = 0 }, ErrInvalid},
		{"accepted late", func(e *LeaseExtension) { e.AcceptedAt = TimeOf(p.now.Add(10 * time.Minute)) }, ErrInvalid},
		{"unknown renewal version", func(e *LeaseExtension) { e.Renewal.Version = 5 }, ErrUnknownVersion},
	}
	for _, tc := range exts {
		t.Run("extension/"+tc.name, func(t *testing.T) {
			r := base()
			mustSign(t, r, p.buyerKey)
			e := &LeaseExtension{Version: LeaseExtensionVersion, Seller: p.seller, Renewal: *r,
				Ends: TimeOf(p.now.Add(3 * time.Hour)), AcceptedAt: TimeOf(p.now)}
			tc.mut(e)
			b := mustSign(t, e, p.sellerKey)
			d, err := DecodeLeaseExtension(b, lim)
			if err == nil {
				err = d.Validate(p.now.Add(20*time.Minute), lim)
			}
			checkErr(t, err, tc.want)
		})
	}
	t.Run("extension/renewal forged", func(t *testing.T) {
		r := base()
		forge(t, r, p.sellerKey)
		e := &LeaseExtension{Version: LeaseExtensionVersion, Seller: p.seller, Renewal: *r,
			Ends: TimeOf(p.now.Add(3 * time.Hour)), AcceptedAt: TimeOf(p.now)}
		d, err := DecodeLeaseExtension(mustSign(t, e, p.sellerKey), lim)
		if err == nil {
			err = d.Validate(p.now, lim)
		}
		checkErr(t, err, ErrBadSignature)
	})
}

func TestLeaseEndValidate(t *testing.T) {
	p := newParties(t)
	lim := DefaultLimits()
	base := func() *LeaseEnd {
		return &LeaseEnd{Version: LeaseEndVersion, By: p.buyer, Subject: testCID("lease"), At: TimeOf(p.now)}
	}
	tests := []struct {
		name  string
		bytes func() []byte
		want  error
	}{
		{"valid", func() []byte { return mustSign(t, base(), p.buyerKey) }, nil},
		{"far future", func() []byte {
			e := base()
			e.At = TimeOf(p.now.Add(time.Hour))
			return mustSign(t, e, p.buyerKey)
		}, ErrFarFuture},
		{"no time", func() []byte { e := base(); e.At = 0; return mustSign(t, e, p.buyerKey) }, ErrInvalid},
		{"forged", func() []byte { return forge(t, base(), p.otherKey) }, ErrBadSignature},
		{"unknown version", func() []byte { e := base(); e.Version = 2; return mustSign(t, e, p.buyerKey) }, ErrUnknownVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := DecodeLeaseEnd(tc.bytes(), lim)
			if err == nil {
				err = e.Validate(p.now, lim)
			}
			checkErr(t, err, tc.want)
		})
	}
}

func TestLeaseStatusValidate(t *testing.T) {
	now := time.Now()
	lim := DefaultLimits()
	head := testCID("ext")
	base := func() *LeaseStatus {
		return &LeaseStatus{Version: LeaseStatusVersion, Lease: testCID("lease"), State: StateRunning,
			Endpoint: "127.0.0.1:4000", Ends: TimeOf(now.Add(time.Hour)), At: TimeOf(now)}
	}
	tests := []struct {
		name string
		mut  func(*LeaseStatus)
		want error
	}{
		{"valid", func(*LeaseStatus) {}, nil},
		{"ended", func(s *LeaseStatus) { s.State, s.Cause = StateEnded, CauseExpired }, nil},
		{"with head", func(s *LeaseStatus) { s.Head, s.Extensions = &head, 2 }, nil},
		{"ended without cause", func(s *LeaseStatus) { s.State = StateEnded }, ErrInvalid},
		{"cause while running", func(s *LeaseStatus) { s.Cause = CauseFailed }, ErrInvalid},
		{"unknown state", func(s *LeaseStatus) { s.State = "flying" }, ErrInvalid},
		{"unknown cause", func(s *LeaseStatus) { s.State, s.Cause = StateEnded, "bored" }, ErrInvalid},
		{"head without count", func(s *LeaseStatus) { s.Head = &head }, ErrInvalid},
		{"endpoint not printable", func(s *LeaseStatus) { s.Endpoint = "a\tb" }, ErrInvalid},
		{"far future", func(s *LeaseStatus) { s.At = TimeOf(now.Add(time.Hour)) }, ErrFarFuture},
		{"unknown version", func(s *LeaseStatus) { s.Version = 2 }, ErrUnknownVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.mut(s)
			b, err := Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			d, err := DecodeLeaseStatus(b, lim)
			if err == nil {
				err = d.Validate(now, lim)
			}
			checkErr(t, err, tc.want)
		})
	}
}

func TestLeaseRecordsCanonical(t *testing.T) {
	p := newParties(t)
	lim := DefaultLimits()
	// A renewal whose optional prev is encoded as null instead of being
	// left out is not canonical.
	r := &LeaseRenewal{Version: LeaseRenewalVersion, Buyer: p.buyer, Lease: testCID("lease"),
		Extend: 1000, IssuedAt: TimeOf(p.now), ExpiresAt: TimeOf(p.now.Add(time.Minute))}
	type withNull struct {
		LeaseRenewal
		Prev *Link `cbor:"prev"`
	}
	b, err := Marshal(withNull{LeaseRenewal: *r})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeLeaseRenewal(b, lim); !errors.Is(err, ErrMalformed) {
		t.Fatalf("null prev: want ErrMalformed, got %v", err)
	}
	// An extra field in the embedded proposal is refused.
	type extraProp struct {
		LeaseProposal
		X int `cbor:"x"`
	}
	type leaseExtra struct {
		Version    uint64    `cbor:"v"`
		Seller     peer.ID   `cbor:"seller"`
		Proposal   extraProp `cbor:"proposal"`
		AcceptedAt Time      `cbor:"accepted"`
	}
	prop := sampleProposal(p.buyer, p.seller, p.now)
	mustSign(t, prop, p.buyerKey)
	b, err = Marshal(leaseExtra{Version: 1, Seller: p.seller, Proposal: extraProp{LeaseProposal: *prop, X: 1}, AcceptedAt: TimeOf(p.now)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeLease(b, lim); !errors.Is(err, ErrMalformed) {
		t.Fatalf("extra field: want ErrMalformed, got %v", err)
	}
}

// Signatures of one lease record type never verify as another, even over
// the same bytes.
func TestLeaseDomainsDistinct(t *testing.T) {
	domains := []string{OfferDomain, LeaseProposalDomain, LeaseDomain, LeaseRejectionDomain,
		LeaseRenewalDomain, LeaseExtensionDomain, LeaseEndDomain}
	seen := map[string]bool{}
	for _, d := range domains {
		if seen[d] {
			t.Fatalf("domain %s used twice", d)
		}
		seen[d] = true
	}
	p := newParties(t)
	e := &LeaseEnd{Version: LeaseEndVersion, By: p.buyer, Subject: testCID("x"), At: TimeOf(p.now)}
	mustSign(t, e, p.buyerKey)
	// The same signature presented as a renewal's does not verify.
	r := &LeaseRenewal{Version: LeaseRenewalVersion, Buyer: p.buyer, Lease: testCID("x"), Extend: 1,
		IssuedAt: TimeOf(p.now), ExpiresAt: TimeOf(p.now.Add(time.Minute)), Sig: e.Sig}
	if err := VerifySignature(r); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("cross-type signature verified: %v", err)
	}
}

// fuzzDecoder checks what every decoder must hold: no panic, no record
// with an error, and a decoded record re-encodes to exactly its input.
func fuzzDecoder[T any](f *testing.F, seeds [][]byte, decode func([]byte, Limits) (*T, error), validate func(*T, time.Time, Limits) error) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte("garbage"))
	lim := DefaultLimits()
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decode(b, lim)
		if err != nil {
			if r != nil {
				t.Fatal("record returned with an error")
			}
			return
		}
		_ = validate(r, now, lim)
		again, err := Marshal(r)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded record does not re-encode to its bytes: %v", err)
		}
	})
}

func FuzzDecodeLeaseProposal(f *testing.F) {
	p := newParties(f)
	b := mustSign(f, sampleProposal(p.buyer, p.seller, p.now), p.buyerKey)
	fuzzDecoder(f, [][]byte{b}, DecodeLeaseProposal, (*LeaseProposal).Validate)
}

func FuzzDecodeLease(f *testing.F) {
	p := newParties(f)
	fuzzDecoder(f, [][]byte{p.lease(f, nil)}, DecodeLease, (*Lease).Validate)
}

func FuzzDecodeLeaseRejection(f *testing.F) {
	p := newParties(f)
	r := &LeaseRejection{Version: LeaseRejectionVersion, Seller: p.seller, Subject: testCID("p"),
		Reason: ReasonTermsChanged, Detail: "price is now 0.05USD/h", At: TimeOf(p.now)}
	fuzzDecoder(f, [][]byte{mustSign(f, r, p.sellerKey)}, DecodeLeaseRejection, (*LeaseRejection).Validate)
}

func FuzzDecodeLeaseRenewal(f *testing.F) {
	p := newParties(f)
	prev := testCID("ext")
	r := &LeaseRenewal{Version: LeaseRenewalVersion, Buyer: p.buyer, Lease: testCID("lease"), Prev: &prev,
		Extend: 3600000, IssuedAt: TimeOf(p.now), ExpiresAt: TimeOf(p.now.Add(time.Minute))}
	fuzzDecoder(f, [][]byte{mustSign(f, r, p.buyerKey)}, DecodeLeaseRenewal, (*LeaseRenewal).Validate)
}

func FuzzDecodeLeaseExtension(f *testing.F) {
	p := newParties(f)
	_, _, exts := p.chain(f, 2)
	var seeds [][]byte
	for _, e := range exts {
		b, _ := Marshal(e)
		seeds = append(seeds, b)
	}
	fuzzDecoder(f, seeds, DecodeLeaseExtension, (*LeaseExtension).Validate)
}

func FuzzDecodeLeaseEnd(f *testing.F) {
	p := newParties(f)
	e := &LeaseEnd{Version: LeaseEndVersion, By: p.buyer, Subject: testCID("lease"), At: TimeOf(p.now)}
	fuzzDecoder(f, [][]byte{mustSign(f, e, p.buyerKey)}, DecodeLeaseEnd, (*LeaseEnd).Validate)
}

func FuzzDecodeLeaseStatus(f *testing.F) {
	head := testCID("ext")
	s := &LeaseStatus{Version: LeaseStatusVersion, Lease: testCID("lease"), State: StateEnded, Cause: CauseEndedByBuyer,
		Endpoint: "127.0.0.1:80", Detail: "bye", Ends: TimeOf(time.Now()), Head: &head, Extensions: 1, At: TimeOf(time.Now())}
	b, err := Marshal(s)
	if err != nil {
		f.Fatal(err)
	}
	fuzzDecoder(f, [][]byte{b}, DecodeLeaseStatus, (*LeaseStatus).Validate)
}

// TestCleanText: what CleanText returns passes the record's text check,
// keeps what it may keep, and is cut at a character boundary.
func TestCleanText(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "slot taken", 512, "slot taken"},
		{"newline and tab kept", "a\n\tb", 512, "a\n\tb"},
		{"control characters", "a\x00b\x1bc\x7f", 512, "a?b?c?"},
		{"invalid UTF-8", "a\xffb", 512, "a?b"},
		{"cut at the limit", "abcdef", 4, "abcd"},
		{"cut before a character that does not fit", "abcé", 4, "abc"},
		{"multibyte kept whole", "éé", 4, "éé"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CleanText(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("CleanText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
			if err := validateText("detail", got, tc.max); err != nil {
				t.Errorf("CleanText(%q) = %q, refused: %v", tc.in, got, err)
			}
		})
	}
}
