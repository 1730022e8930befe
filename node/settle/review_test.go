package settle

// Regression tests from a review of the package: each failed on the code
// as reviewed and passes since the defect it names was fixed.

import (
	"context"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/protocol"
)

// Past a dispute the buyer kept any signed receipt of the lease without
// checking its seq: a seller that sent seq 0 rewound the buyer's head and
// could then overwrite the receipts the buyer acknowledged. It must not.
func TestDisputedSellerCannotRewriteAckedReceipts(t *testing.T) {
	e := newEnv(t)
	seller, buyer := e.party(), e.party()
	tm := defaultTerms()
	tm.start = e.clk.Now().Add(-time.Minute)
	id := e.deal(seller, buyer, tm, "")
	start := protocol.TimeOf(tm.start)

	sign := func(r *protocol.UsageReceipt) []byte {
		raw, err := protocol.Sign(r, seller.key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	rcpt := func(seq uint64, prev []byte, from, to protocol.Time, billed protocol.Millis, amount, total int64) []byte {
		r := &protocol.UsageReceipt{
			Version: protocol.UsageReceiptVersion, Seller: seller.id, Buyer: buyer.id,
			Lease: protocol.Link{Cid: id}, Seq: seq, From: from, To: to, Billed: billed,
			Usage:  protocol.Usage{InstanceMs: protocol.Millis(to - from)},
			Amount: amount, Total: total, Currency: tm.price.Currency, IssuedAt: to,
		}
		if prev != nil {
			r.Prev = &protocol.Link{Cid: protocol.CIDOf(prev)}
		}
		return sign(r)
	}
	send := func(raws ...[]byte) []answer {
		body, err := encodeMsg(raws)
		if err != nil {
			t.Fatal(err)
		}
		tag, resp := buyer.serveReceipts(context.Background(), seller.id, tagReceipts, body)
		var out []answer
		if tag != tagAnswers || storedDec.Unmarshal(resp, &out) != nil || len(out) != len(raws) {
			t.Fatalf("no answers: tag %x", tag)
		}
		return out
	}
	charge := func(ms int64) int64 {
		c, err := protocol.Charge(tm.price, tm.slots, protocol.Millis(ms))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Two honest receipts, acknowledged.
	r1 := rcpt(1, nil, start, start+1000, 1000, charge(1000), charge(1000))
	r2 := rcpt(2, r1, start+1000, start+2000, 2000, charge(2000)-charge(1000), charge(2000))
	for i, a := range send(r1, r2) {
		if a.Ack == nil {
			t.Fatalf("receipt %d not acknowledged: %+v", i+1, a)
		}
	}
	// A wrong receipt: disputed, as it should be.
	r3 := rcpt(3, r2, start+2000, start+3000, 3000, 1, charge(2000)+1)
	if a := send(r3); a[0].Dispute == nil {
		t.Fatalf("overcharge not disputed: %+v", a[0])
	}
	before := buyer.summary(id)

	// Seq 0 rewinds the head; then a different "receipt 1" with a huge
	// amount lands on the key of the acknowledged receipt 1.
	r0 := rcpt(0, nil, start, start, 0, 0, 0)
	forged1 := rcpt(1, nil, start, start+1000, 1000, 1_000_000_000_000, 1_000_000_000_000)
	send(r0, forged1)

	rs, err := buyer.Receipts(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Receipt.Seq == 1 && !r.CID.Equals(protocol.CIDOf(r1)) {
			t.Errorf("the buyer's stored receipt 1 (acknowledged: %v) is now %s with amount %d, not the receipt it acknowledged (%s)",
				r.Acked, r.CID, r.Receipt.Amount, protocol.CIDOf(r1))
		}
	}
	after := buyer.summary(id)
	if after.Receipts != before.Receipts || after.Total != before.Total {
		t.Errorf("the buyer's head moved backwards: %d receipts (total %d) before, %d (total %d) after",
			before.Receipts, before.Total, after.Receipts, after.Total)
	}
	inv, err := buyer.Invoice(e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Payable[tm.price.Currency]; got != after.AckedTotal {
		t.Errorf("invoice payable %d, but the buyer acknowledged %d", got, after.AckedTotal)
	}
}

// The prober kept the last 256 outcomes per lease, whatever their age: a
// period whose early successes were evicted was disputed, and one whose
// failures were evicted was acknowledged. Spans of outcomes keep the
// history of a whole lease.
func TestProbeHistoryKept(t *testing.T) {
	id := protocol.CIDOf([]byte("lease"))
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	t.Run("early successes evicted", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.ProbeEvery = time.Second // an operator's setting
		p := newProber(&Service{cfg: cfg})
		p.add(id, "127.0.0.1:1", 10*time.Minute)
		// A 10-minute period: up for the first 5 minutes, down after.
		for s := 0; s < 600; s++ {
			p.record(id, t0.Add(time.Duration(s)*time.Second), s < 300)
		}
		if why, bad := p.unreachable(id, protocol.TimeOf(t0), protocol.TimeOf(t0.Add(10*time.Minute))); bad {
			t.Errorf("period disputed though 300 of its probes succeeded: %s", why)
		}
	})
	t.Run("failures evicted", func(t *testing.T) {
		p := newProber(&Service{cfg: DefaultConfig()})
		p.add(id, "127.0.0.1:1", 10*time.Minute) // every 5 minutes
		// Down for the first period, then up for a day.
		for s := 0; s < 24*12; s++ {
			p.record(id, t0.Add(time.Duration(s)*5*time.Minute), s >= 2)
		}
		if _, bad := p.unreachable(id, protocol.TimeOf(t0), protocol.TimeOf(t0.Add(10*time.Minute))); !bad {
			t.Errorf("period acknowledged though every probe the buyer made in it failed (evicted from the history)")
		}
	})
}

// The grace counted the seller's own downtime against the buyer: one
// failed delivery just before the seller's node stopped, and a restart
// more than the grace later ended the lease before the (reachable,
// honest) buyer was sent anything. Only the buyer's failures count.
func TestGraceIgnoresSellerDowntime(t *testing.T) {
	e := newEnv(t)
	e.cfg.Resend = 30 * time.Second // the retry comes after the meter run
	seller, buyer := e.party(), e.party()
	tm := defaultTerms()
	since := e.clk.Now()
	id := e.deal(seller, buyer, tm, "")
	e.advance(seller, id, 3*time.Second, time.Second, since, tm.interval)

	// One delivery fails (a blip), then the seller's node stops.
	if err := e.mn.DisconnectPeers(seller.id, buyer.id); err != nil {
		t.Fatal(err)
	}
	if err := e.mn.UnlinkPeers(seller.id, buyer.id); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(tm.interval)
	waitFor(t, "a failed delivery", func() bool {
		st := sellerState(t, seller, id)
		return st.Seq == 4 && st.Waiting != 0 && st.Unacked >= st.Waiting
	})
	seller.close()
	if _, err := e.mn.LinkPeers(seller.id, buyer.id); err != nil {
		t.Fatal(err)
	}
	// The seller is down for longer than the grace; the buyer is fine.
	e.clk.Add(tm.grace + 2*time.Second)
	seller.open()
	ended := poll(3*time.Second, func() bool { return seller.leases.get(id).State == protocol.StateEnded })
	if ended {
		st := sellerState(t, seller, id)
		t.Errorf("the lease was ended as unpaid on the seller's restart; the buyer had acknowledged to %d and was sent nothing since the one failed delivery", st.AckedSeq)
	}
}
