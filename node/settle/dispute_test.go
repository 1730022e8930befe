package settle

import (
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/spotmesh/spotmesh/protocol"
)

// resign signs a changed receipt again with the seller's key.
func resign(t testing.TB, r *protocol.UsageReceipt, key crypto.PrivKey) []byte {
	t.Helper()
	raw, err := protocol.Sign(r, key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A dishonest seller's third receipt is disputed with the right reason;
// the buyer acknowledges nothing after it, the seller ends the instance
// after the grace, and both sides sign a settlement that records the
// dispute and bills only the acknowledged receipts.
func TestDisputes(t *testing.T) {
	hour := protocol.Time(time.Hour / time.Millisecond)
	cases := []struct {
		name   string
		reason protocol.DisputeReason
		tamper func(r *protocol.UsageReceipt, key crypto.PrivKey) // r is receipt 3, signed again after
		forged bool                                               // keep the signature tamper made
	}{
		{"overcharge", protocol.DisputeOvercharge, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			r.Amount += 1000
			r.Total += 1000
		}, false},
		{"billed time inflated", protocol.DisputeOvercharge, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			r.Billed += 60_000
			r.Total, _ = protocol.Charge(protocol.Price{Micro: 123457, Currency: "USD"}, 3, r.Billed)
			r.Amount = r.Total
		}, false},
		{"skipped sequence number", protocol.DisputeBadChain, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			r.Seq = 4
		}, false},
		{"previous link not the previous receipt", protocol.DisputeBadChain, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			r.Prev = &protocol.Link{Cid: protocol.CIDOf([]byte("another receipt"))}
		}, false},
		{"bad signature", protocol.DisputeBadChain, func(r *protocol.UsageReceipt, key crypto.PrivKey) {
			other, _, _ := crypto.GenerateEd25519Key(nil)
			r.Sig = nil
			payload, _ := protocol.SigningBytes(r)
			r.Sig, _ = other.Sign(payload) // signed by another key for the seller
		}, true},
		{"backdated before the lease", protocol.DisputeOutsideLease, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			// An hour before the lease, billed.
			r.From -= hour
			r.Billed += protocol.Millis(hour)
			total, _ := protocol.Charge(protocol.Price{Micro: 123457, Currency: "USD"}, 3, r.Billed)
			r.Amount += total - r.Total
			r.Total = total
		}, false},
		{"backdated into the previous period", protocol.DisputeOverlap, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			r.From -= 500
		}, false},
		{"gap after the previous period", protocol.DisputeGap, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			r.From += 500
		}, false},
		{"period in the future", protocol.DisputeOutsideLease, func(r *protocol.UsageReceipt, _ crypto.PrivKey) {
			r.To += hour
			r.IssuedAt += hour
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			seller, buyer := e.party(), e.party()
			seller.Service.tamper = func(r *protocol.UsageReceipt, raw []byte) []byte {
				if r.Seq != 3 {
					return raw
				}
				tc.tamper(r, seller.key)
				if tc.forged {
					b, _ := protocol.Marshal(r)
					return b
				}
				return resign(t, r, seller.key)
			}
			tm := defaultTerms()
			since := e.clk.Now()
			id := e.deal(seller, buyer, tm, "")
			e.advance(seller, id, 2*time.Second, time.Second, since, tm.interval)
			// The seller ends the instance once the acks are more than the
			// grace behind (a receipt in the future stops the seller's
			// metering until then: the buyer ends that lease).
			for i := 0; i < 20 && seller.leases.get(id).State != protocol.StateEnded; i++ {
				e.clk.Add(time.Second)
				// Each period's receipt issued and answered before the clock
				// moves on (a chain an hour ahead issues none meanwhile).
				want := uint64(e.clk.Now().Sub(since) / tm.interval)
				if tc.name == "period in the future" || seller.leases.get(id).State == protocol.StateEnded {
					want = 0
				}
				waitFor(t, "the receipts answered", func() bool { return caughtUp(seller, id, want) })
				if tc.reason == protocol.DisputeOutsideLease && tc.name == "period in the future" && i == 4 {
					e.end(seller, buyer, id, protocol.CauseEndedByBuyer)
				}
			}
			if l := seller.leases.get(id); l.State != protocol.StateEnded {
				t.Fatalf("lease %s: the seller did not end it after the grace", l.State)
			} else if tc.name != "period in the future" && l.Cause != protocol.CauseEndedBySeller {
				t.Fatalf("lease ended as %s, want %s", l.Cause, protocol.CauseEndedBySeller)
			}
			if tc.name == "period in the future" {
				// The seller's chain runs an hour ahead: the buyer keeps
				// none of its later receipts, so there is no settlement to
				// agree on; the seller claims what the buyer's acks allow.
				for i := 0; i < 60 && seller.summary(id).Status != StatusClaimed; i++ {
					e.clk.Add(time.Second)
					poll(50*time.Millisecond, func() bool { return seller.summary(id).Status == StatusClaimed })
				}
				sm := seller.summary(id)
				acked, _ := protocol.Charge(tm.price, tm.slots, protocol.MillisOf(2*time.Second))
				bound, _ := protocol.Charge(tm.price, tm.slots, protocol.MillisOf(3*time.Second))
				if sm.Status != StatusClaimed || sm.Claim == nil || sm.Claim.Amount != bound || sm.AckedTotal != acked {
					t.Fatalf("seller: %s, claim %+v; want a claim of %d", sm.Status, sm.Claim, bound)
				}
				if bs := buyer.summary(id); len(bs.Disputes) != 1 || bs.Disputes[0].Reason != tc.reason {
					t.Fatalf("buyer's disputes %+v, want one %s", bs.Disputes, tc.reason)
				}
				return
			}
			waitFor(t, "a disputed settlement on both sides", func() bool {
				return seller.summary(id).Status == StatusDisputed && buyer.summary(id).Status == StatusDisputed
			})
			acked, _ := protocol.Charge(tm.price, tm.slots, protocol.MillisOf(2*time.Second))
			for _, p := range []*party{seller, buyer} {
				sm := p.summary(id)
				set := sm.Settlement
				if err := set.Validate(e.clk.Now(), e.lim); err != nil {
					t.Fatal(err)
				}
				if set.State != protocol.SettlementDisputed || set.Total != acked || set.AckedSeq != 2 || len(set.Disputes) != 1 {
					t.Fatalf("settlement: state %s total %d acked %d disputes %d; want disputed, %d, 2, 1", set.State, set.Total, set.AckedSeq, len(set.Disputes), acked)
				}
				wantSeq := uint64(3)
				if tc.name == "skipped sequence number" {
					wantSeq = 4 // receipt 4 follows receipt 2
				}
				if len(sm.Disputes) != 1 || sm.Disputes[0].Reason != tc.reason || sm.Disputes[0].Seq != wantSeq {
					for _, d := range sm.Disputes {
						t.Logf("dispute of receipt %d: %s: %s", d.Seq, d.Reason, d.Detail)
					}
					t.Fatalf("%d disputes; want one %s of receipt %d", len(sm.Disputes), tc.reason, wantSeq)
				}
				if set.HeadSeq <= 3 || set.HeadTotal <= acked {
					t.Fatalf("the settlement names the seller's head %d (total %d)", set.HeadSeq, set.HeadTotal)
				}
			}
			bb, _ := buyer.Balances()
			if len(bb) != 1 || bb[0].Payable != acked {
				t.Fatalf("the buyer owes %+v, want the acknowledged %d", bb, acked)
			}
		})
	}
}

// A buyer that cannot reach its instance during a period disputes the
// receipt for it as unreachable.
func TestDisputeUnreachable(t *testing.T) {
	e := newEnv(t)
	e.cfg.Probe = true
	e.cfg.ProbeEvery = 200 * time.Millisecond
	seller, buyer := e.party(), e.party()
	// An endpoint that refuses connections: a port that was just freed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := l.Addr().String()
	l.Close()
	tm := defaultTerms()
	since := e.clk.Now()
	id := e.deal(seller, buyer, tm, endpoint)
	e.advance(seller, id, 3*time.Second, time.Second, since, tm.interval)
	var bad *protocol.Dispute
	waitFor(t, "a dispute", func() bool {
		sm := buyer.summary(id)
		if len(sm.Disputes) > 0 {
			bad = sm.Disputes[0]
		}
		return bad != nil
	})
	if bad.Reason != protocol.DisputeUnreachable {
		t.Fatalf("dispute %s (%s), want unreachable", bad.Reason, bad.Detail)
	}
	if sm := buyer.summary(id); sm.Acked != 0 || sm.AckedTotal != 0 {
		t.Fatalf("acked %d (%d) of an instance never reached", sm.Acked, sm.AckedTotal)
	}
}
