package lease

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/protocol"
)

// reachedReasons collects the reason codes the refusal tests saw.
type reachedReasons struct {
	mu   sync.Mutex
	seen map[protocol.Reason]bool
}

func (r *reachedReasons) add(reason protocol.Reason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[reason] = true
}

// expectRefusal checks that err is the seller's signed refusal for reason.
func expectRefusal(t *testing.T, err error, reason protocol.Reason, seen *reachedReasons) *RejectedError {
	t.Helper()
	var rej *RejectedError
	if !errors.As(err, &rej) || !errors.Is(err, ErrRejected) {
		t.Fatalf("want a refusal %s, got %v", reason, err)
	}
	if rej.Reason != reason {
		t.Fatalf("refused for %s (%s), want %s", rej.Reason, rej.Detail, reason)
	}
	if rej.Local || rej.Rejection == nil {
		t.Fatalf("refusal %s not signed by the seller", reason)
	}
	if !strings.Contains(err.Error(), reason.Words()) {
		t.Fatalf("error %q does not say %q", err, reason.Words())
	}
	seen.add(reason)
	return rej
}

// signedProposal builds and signs b's proposal on o, changed by mut.
func signedProposal(t *testing.T, b *tnode, o *protocol.Offer, p Params, mut func(*protocol.LeaseProposal)) []byte {
	t.Helper()
	prop, err := b.buildProposal(o, offerCID(o), p, b.e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if mut != nil {
		mut(prop)
	}
	raw, err := protocol.Sign(prop, b.key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func proposeReq(t *testing.T, prop []byte, o *protocol.Offer) []byte {
	t.Helper()
	ob, err := protocol.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return appendFrame(appendFrame(nil, tagPropose, prop), tagOffer, ob)
}

// TestEveryReasonCode reaches every refusal reason the protocol defines,
// each from the situation it names.
func TestEveryReasonCode(t *testing.T) {
	seen := &reachedReasons{seen: map[protocol.Reason]bool{}}
	ctx := context.Background()

	t.Run("proposal", func(t *testing.T) {
		e := newEnv(t)
		s, b, x := e.seller(), e.buyer(), e.buyer()
		main := s.offers.add(sampleOffer("main"), 1000)
		tiny := s.offers.add(sampleOffer("tiny"), 1)
		capped := sampleOffer("capped")
		capped.PerBuyerCap = 1
		capped = s.offers.add(capped, 10)
		p := params(time.Hour)

		cases := []struct {
			name   string
			reason protocol.Reason
			run    func() error
		}{
			{"no capacity", protocol.ReasonNoCapacity, func() error {
				if _, err := b.Propose(ctx, tiny, p); err != nil {
					t.Fatal(err)
				}
				_, err := b.Propose(ctx, tiny, p)
				return err
			}},
			{"terms changed: price", protocol.ReasonTermsChanged, func() error {
				old := s.offers.current("main")
				s.offers.change("main", func(o *protocol.Offer) { o.Price.Micro = 50000 })
				defer s.offers.change("main", func(o *protocol.Offer) { o.Price.Micro = 40000 })
				_, err := b.Propose(ctx, old, p)
				return err
			}},
			{"terms changed: grace", protocol.ReasonTermsChanged, func() error {
				old := s.offers.current("main")
				s.offers.change("main", func(o *protocol.Offer) { o.PaymentGrace = protocol.MillisOf(time.Minute) })
				defer s.offers.change("main", func(o *protocol.Offer) { o.PaymentGrace = protocol.MillisOf(5 * time.Minute) })
				_, err := b.Propose(ctx, old, p)
				return err
			}},
			{"length too short", protocol.ReasonLengthOutOfRange, func() error {
				_, err := b.Propose(ctx, main, params(30*time.Second))
				return err
			}},
			{"length too long", protocol.ReasonLengthOutOfRange, func() error {
				_, err := b.Propose(ctx, main, params(5*time.Hour))
				return err
			}},
			{"appliance too large", protocol.ReasonApplianceTooLarge, func() error {
				q := p
				q.ApplianceSize = 2 << 30
				_, err := b.Propose(ctx, main, q)
				return err
			}},
			{"format", protocol.ReasonFormatNotAccepted, func() error {
				q := p
				q.ApplianceFormat = "vmdk"
				_, err := b.Propose(ctx, main, q)
				return err
			}},
			{"per-buyer cap", protocol.ReasonBuyerRefused, func() error {
				if _, err := b.Propose(ctx, capped, p); err != nil {
					t.Fatal(err)
				}
				_, err := b.Propose(ctx, capped, p)
				return err
			}},
			{"withdrawn", protocol.ReasonOfferExpired, func() error {
				w := s.offers.add(sampleOffer("gone"), 5)
				s.offers.withdraw("gone")
				_, err := b.Propose(ctx, w, p)
				return err
			}},
			{"unknown offer", protocol.ReasonOfferExpired, func() error {
				o := *main
				o.Key = "never-offered"
				_, err := b.Propose(ctx, &o, p)
				return err
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				expectRefusal(t, tc.run(), tc.reason, seen)
			})
		}

		// Records sent by hand: what a broken or hostile buyer sends.
		raw := []struct {
			name   string
			from   *tnode
			req    func() []byte
			reason protocol.Reason
		}{
			{"bad signature", b, func() []byte {
				pb := signedProposal(t, b, main, p, nil)
				pr, _ := protocol.DecodeLeaseProposal(pb, e.lim)
				pr.Sig[0] ^= 0xff
				nb, _ := protocol.Marshal(pr)
				return proposeReq(t, nb, main)
			}, protocol.ReasonBadSignature},
			{"unknown version", b, func() []byte {
				return proposeReq(t, signedProposal(t, b, main, p, func(pr *protocol.LeaseProposal) { pr.Version = 2 }), main)
			}, protocol.ReasonUnknownVersion},
			{"forwarded by another peer", x, func() []byte {
				return proposeReq(t, signedProposal(t, b, main, p, nil), main)
			}, protocol.ReasonNotBuyer},
			{"addressed to another seller", b, func() []byte {
				return proposeReq(t, signedProposal(t, b, main, p, func(pr *protocol.LeaseProposal) { pr.Seller = x.id }), main)
			}, protocol.ReasonInvalid},
			{"expired proposal", b, func() []byte {
				return proposeReq(t, signedProposal(t, b, main, p, func(pr *protocol.LeaseProposal) {
					pr.IssuedAt -= protocol.Time(10 * 60 * 1000)
					pr.Start = pr.IssuedAt
					pr.ExpiresAt = pr.IssuedAt + 60_000
				}), main)
			}, protocol.ReasonInvalid},
			{"not a record", b, func() []byte { return proposeReq(t, []byte("hello"), main) }, protocol.ReasonInvalid},
			{"status of an unknown lease", b, func() []byte {
				return appendFrame(nil, tagStatus, protocol.CIDOf([]byte("nothing")).Bytes())
			}, protocol.ReasonUnknownLease},
		}
		for _, tc := range raw {
			t.Run(tc.name, func(t *testing.T) {
				r := rejection(t, tc.from.sendRaw(t, s, tc.req()))
				if r.Reason != tc.reason || r.Seller != s.id {
					t.Fatalf("refused for %s (%s), want %s", r.Reason, r.Detail, tc.reason)
				}
				seen.add(r.Reason)
			})
		}
	})

	t.Run("expired copy", func(t *testing.T) {
		e := newEnv(t)
		s, b := e.seller(), e.buyer()
		old := s.offers.add(sampleOffer("main"), 10)
		if _, err := b.Propose(ctx, old, params(time.Hour)); err != nil {
			t.Fatal(err)
		}
		// The copy lapses (beyond the clock skew); the seller publishes
		// a new one; the old copy no longer serves.
		e.clk.Add(11 * time.Minute)
		fresh := s.offers.change("main", func(*protocol.Offer) {})
		_, err := b.Propose(ctx, old, params(time.Hour))
		expectRefusal(t, err, protocol.ReasonOfferExpired, seen)
		if _, err := b.Propose(ctx, fresh, params(time.Hour)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("paused", func(t *testing.T) {
		e := newEnv(t)
		s, b := e.seller(), e.buyer()
		o := s.offers.add(sampleOffer("main"), 10)
		if err := s.Pause(ctx, "main"); err != nil {
			t.Fatal(err)
		}
		_, err := b.Propose(ctx, o, params(time.Hour))
		expectRefusal(t, err, protocol.ReasonOfferPaused, seen)
	})

	t.Run("denied", func(t *testing.T) {
		e := newEnv(t)
		s, b := e.seller(), e.buyer()
		o := s.offers.add(sampleOffer("main"), 10)
		if err := s.Deny(ctx, b.id, "unpaid bills"); err != nil {
			t.Fatal(err)
		}
		_, err := b.Propose(ctx, o, params(time.Hour))
		rej := expectRefusal(t, err, protocol.ReasonBuyerRefused, seen)
		if !strings.Contains(rej.Detail, "unpaid bills") {
			t.Fatalf("detail %q does not give the seller's note", rej.Detail)
		}
	})

	t.Run("busy", func(t *testing.T) {
		e := newEnv(t)
		e.cfg.QueueDepth = 1
		s, b := e.seller(), e.buyer()
		o := s.offers.add(sampleOffer("main"), 10)
		release := s.offers.hold()
		errs := make(chan error, 2)
		go func() { _, err := b.Propose(ctx, o, params(time.Hour)); errs <- err }()
		<-s.offers.gated // the owner decides the first, and waits
		go func() { _, err := b.Propose(ctx, o, params(time.Hour)); errs <- err }()
		waitFor(t, "a proposal queued", func() bool { return len(s.proposals) == 1 })
		_, err := b.Propose(ctx, o, params(time.Hour))
		expectRefusal(t, err, protocol.ReasonBusy, seen)
		release()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("lease actions", func(t *testing.T) {
		e := newEnv(t)
		s, b := e.seller(), e.buyer()
		o := s.offers.add(sampleOffer("main"), 10)
		in, err := b.Propose(ctx, o, params(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// The seller stops allowing renewals after the lease was made;
		// the buyer's copy of the offer still says renewable.
		s.offers.change("main", func(o *protocol.Offer) { o.Renewable = false })
		_, err = b.Renew(ctx, in.ID, time.Hour)
		expectRefusal(t, err, protocol.ReasonNotRenewable, seen)

		s.offers.change("main", func(o *protocol.Offer) { o.Renewable, o.MaxLease = true, protocol.MillisOf(90*time.Minute) })
		_, err = b.Renew(ctx, in.ID, time.Hour)
		expectRefusal(t, err, protocol.ReasonLengthOutOfRange, seen)

		if err := s.Pause(ctx, "main"); err != nil {
			t.Fatal(err)
		}
		_, err = b.Renew(ctx, in.ID, 10*time.Minute)
		expectRefusal(t, err, protocol.ReasonOfferPaused, seen)
	})

	for _, r := range protocol.Reasons() {
		if !seen.seen[r] {
			t.Errorf("no test reached reason %s (%s)", r, r.Words())
		}
	}
}

// A peer that is not the lease's buyer can neither see, end nor renew it.
func TestLeaseActionsOnlyByBuyer(t *testing.T) {
	e := newEnv(t)
	s, b, x := e.seller(), e.buyer(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 10)
	ctx := context.Background()
	in, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	now := protocol.TimeOf(e.clk.Now())
	signX := func(r protocol.Record) []byte {
		raw, err := protocol.Sign(r, x.key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	cases := []struct {
		name string
		req  []byte
	}{
		{"status", appendFrame(nil, tagStatus, in.ID.Bytes())},
		{"status by proposal", appendFrame(nil, tagStatus, in.Proposal.Bytes())},
		{"end", appendFrame(nil, tagEnd, signX(&protocol.LeaseEnd{
			Version: protocol.LeaseEndVersion, By: x.id, Subject: protocol.Link{Cid: in.ID}, At: now}))},
		{"end by proposal", appendFrame(nil, tagEnd, signX(&protocol.LeaseEnd{
			Version: protocol.LeaseEndVersion, By: x.id, Subject: protocol.Link{Cid: in.Proposal}, At: now}))},
		{"renew", appendFrame(nil, tagRenew, signX(&protocol.LeaseRenewal{
			Version: protocol.LeaseRenewalVersion, Buyer: x.id, Lease: protocol.Link{Cid: in.ID},
			Extend: protocol.MillisOf(time.Hour), IssuedAt: now, ExpiresAt: now + 60_000}))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rejection(t, x.sendRaw(t, s, tc.req))
			if r.Reason != protocol.ReasonNotBuyer {
				t.Fatalf("refused for %s (%s), want not_buyer", r.Reason, r.Detail)
			}
		})
	}
	// The buyer's own end signed by the buyer but sent by another peer.
	endByB, err := protocol.Sign(&protocol.LeaseEnd{Version: protocol.LeaseEndVersion, By: b.id, Subject: protocol.Link{Cid: in.ID}, At: now}, b.key)
	if err != nil {
		t.Fatal(err)
	}
	if r := rejection(t, x.sendRaw(t, s, appendFrame(nil, tagEnd, endByB))); r.Reason != protocol.ReasonNotBuyer {
		t.Fatalf("replayed end: refused for %s, want not_buyer", r.Reason)
	}
	// Nothing changed: the lease runs, unrenewed, and the buyer sees it.
	if st, _ := s.state(t, in.ID); st != protocol.StateProvisioning {
		t.Fatalf("seller's lease is %s", st)
	}
	got, err := b.Refresh(ctx, in.ID)
	if err != nil || got.State != protocol.StateProvisioning || got.Extensions != 0 || !got.Ends.Equal(in.Ends) {
		t.Fatalf("after the others' attempts: %+v %v", got, err)
	}
}
