package settle

import (
	"bufio"
	"context"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// sellerState reads the seller's billing state of a lease.
func sellerState(t testing.TB, p *party, id cid.Cid) *state {
	t.Helper()
	var st *state
	if err := p.db.View(func(tx *store.Txn) error {
		var err error
		st, _, err = getState(tx, true, id)
		return err
	}); err != nil || st == nil {
		t.Fatalf("seller state: %v", err)
	}
	return st
}

// checkChain checks that a party holds receipts 1..n, each once, adding
// up to total.
func checkChain(t testing.TB, p *party, id cid.Cid, n uint64, total int64) {
	t.Helper()
	rs, err := p.Receipts(id)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(rs)) != n {
		t.Fatalf("%d receipts held, want %d", len(rs), n)
	}
	var sum int64
	for i, r := range rs {
		if r.Receipt.Seq != uint64(i+1) {
			t.Fatalf("receipt %d has seq %d", i+1, r.Receipt.Seq)
		}
		sum += r.Receipt.Amount
	}
	if sum != total {
		t.Fatalf("receipts add up to %d, want %d", sum, total)
	}
}

// A buyer that stops acknowledging: the instance ends after the grace and
// the seller claims exactly the acknowledged amount plus one interval. A
// claim for more is refused by the buyer's node; when the buyer comes
// back, the chains reconcile and the lease settles in full.
func TestSilentBuyerClaim(t *testing.T) {
	e := newEnv(t)
	seller, buyer := e.party(), e.party()
	tm := defaultTerms()
	tm.grace = 3 * time.Second
	since := e.clk.Now()
	id := e.deal(seller, buyer, tm, "")
	e.advance(seller, id, 3*time.Second, time.Second, since, tm.interval)
	buyer.close() // the buyer's node stops answering
	for i := 0; i < 30 && seller.leases.get(id).State != protocol.StateEnded; i++ {
		e.clk.Add(time.Second)
		want := uint64(e.clk.Now().Sub(since) / tm.interval)
		now := protocol.TimeOf(e.clk.Now())
		waitFor(t, "metering and a failed delivery", func() bool {
			st := sellerState(t, seller, id)
			return st.Final || st.Seq >= want && st.Unacked >= now
		})
	}
	l := seller.leases.get(id)
	if l.State != protocol.StateEnded || l.Cause != protocol.CauseEndedBySeller {
		t.Fatalf("lease %s (%s): not ended after the grace", l.State, l.Cause)
	}
	// The grace: ended no later than grace plus one interval (a meter
	// period) after the first unacknowledged receipt.
	if late := l.Ended.Sub(since.Add(4 * time.Second)); late > tm.grace+2*tm.interval {
		t.Fatalf("ended %v after the first unacknowledged receipt, grace %v", late, tm.grace)
	}
	for i := 0; i < 30 && seller.summary(id).Status != StatusClaimed; i++ {
		e.clk.Add(time.Second)
		time.Sleep(time.Millisecond) // let the send job run at this time
	}
	waitFor(t, "the claim", func() bool { return seller.summary(id).Status == StatusClaimed })
	sm := seller.summary(id)
	c := sm.Claim
	acked, _ := protocol.Charge(tm.price, tm.slots, protocol.MillisOf(3*time.Second))
	bound, _ := protocol.Charge(tm.price, tm.slots, protocol.MillisOf(4*time.Second))
	if sm.AckedTotal != acked || c.Amount != bound || c.Amount > sm.Total {
		t.Fatalf("claim %d, acked %d, chain total %d; want the acked %d plus one interval: %d", c.Amount, sm.AckedTotal, sm.Total, acked, bound)
	}
	if err := c.Validate(e.clk.Now(), e.lim); err != nil {
		t.Fatalf("the seller's own claim does not validate: %v", err)
	}
	// A claim for one micro-unit more is refused by the buyer's node.
	buyer.open()
	greedy := *c
	greedy.Amount++
	raw, err := protocol.Sign(&greedy, seller.key)
	if err != nil {
		t.Fatal(err)
	}
	tag, body, err := seller.roundTrip(context.Background(), buyer.id, string(SettleProtocol), appendFrame(nil, tagClaim, raw), tagClaimed, tagRefused)
	if err != nil || tag != tagRefused {
		t.Fatalf("greedy claim: tag %x, err %v, body %q; want refused", tag, err, body)
	}
	// Back together: every receipt is answered and the lease settles in
	// full, superseding the claim.
	for i := 0; i < 20 && buyer.summary2(id) != StatusSettled; i++ {
		e.clk.Add(time.Second)
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "settlement after the buyer came back", func() bool {
		return seller.summary(id).Status == StatusSettled && buyer.summary(id).Status == StatusSettled
	})
	st := sellerState(t, seller, id)
	total, _ := protocol.Charge(tm.price, tm.slots, st.Billed)
	checkChain(t, buyer, id, st.Seq, total)
}

// summary2 is the buyer's status, or "" before it holds any billing.
func (p *party) summary2(id cid.Cid) Status {
	s, err := p.Summary(id)
	if err != nil {
		return ""
	}
	return s.Status
}

// Partition the two nodes in the middle of a lease, and separately
// restart the buyer: after they meet again the chains reconcile, and no
// receipt is lost or counted twice.
func TestPartitionAndRestart(t *testing.T) {
	for _, fault := range []string{"partition", "buyer restart", "seller restart"} {
		t.Run(fault, func(t *testing.T) {
			e := newEnv(t)
			seller, buyer := e.party(), e.party()
			tm := defaultTerms()
			tm.length = 60 * time.Second
			tm.grace = time.Minute
			since := e.clk.Now()
			id := e.deal(seller, buyer, tm, "")
			e.advance(seller, id, 5*time.Second, time.Second, since, tm.interval)
			switch fault {
			case "partition":
				if err := e.mn.DisconnectPeers(seller.id, buyer.id); err != nil {
					t.Fatal(err)
				}
				if err := e.mn.UnlinkPeers(seller.id, buyer.id); err != nil {
					t.Fatal(err)
				}
			case "buyer restart":
				buyer.close()
			case "seller restart":
				seller.close()
			}
			for i := 0; i < 10; i++ {
				e.clk.Add(time.Second)
				time.Sleep(time.Millisecond)
			}
			switch fault {
			case "partition":
				if _, err := e.mn.LinkPeers(seller.id, buyer.id); err != nil {
					t.Fatal(err)
				}
			case "buyer restart":
				buyer.open()
			case "seller restart":
				seller.open()
			}
			st := sellerState(t, seller, id)
			if fault != "seller restart" && st.Answered >= st.Seq {
				t.Fatalf("the fault did not stop delivery: %d of %d answered", st.Answered, st.Seq)
			}
			// Time goes on until the seller is heard again: a delivery that
			// failed at the heal is retried a Resend (of mock time) later.
			for e.clk.Now().Before(since.Add(50*time.Second)) || !caughtUp(seller, id, 0) {
				if e.clk.Now().After(since.Add(tm.length - 2*time.Second)) {
					t.Fatal("the chains did not meet again before the lease's end")
				}
				e.clk.Add(time.Second)
				want := uint64(e.clk.Now().Sub(since) / tm.interval)
				poll(2*time.Second, func() bool { return caughtUp(seller, id, want) })
			}
			e.clk.Add(since.Add(tm.length).Sub(e.clk.Now()))
			e.end(seller, buyer, id, protocol.CauseExpired)
			waitFor(t, "both to settle", func() bool {
				return seller.summary(id).Status == StatusSettled && buyer.summary2(id) == StatusSettled
			})
			total, _ := protocol.Charge(tm.price, tm.slots, protocol.MillisOf(tm.length))
			for _, p := range []*party{seller, buyer} {
				sm := p.summary(id)
				if sm.Settlement.Total != total || sm.Receipts != 60 || sm.Acked != 60 {
					t.Fatalf("settled %d over %d receipts (%d acked), want %d over 60", sm.Settlement.Total, sm.Receipts, sm.Acked, total)
				}
				checkChain(t, p, id, 60, total)
			}
		})
	}
}

// Receipts and settlements from a third peer are refused by the buyer, and
// acks a seller did not get from its buyer's key count for nothing.
func TestForgeriesRefused(t *testing.T) {
	e := newEnv(t)
	seller, buyer, third := e.party(), e.party(), e.party()
	tm := defaultTerms()
	since := e.clk.Now()
	id := e.deal(seller, buyer, tm, "")
	e.advance(seller, id, 2*time.Second, time.Second, since, tm.interval)
	before := buyer.summary(id)

	// Receipt 3 as the third peer would forge it: signed by itself, or
	// naming the seller.
	base := protocol.UsageReceipt{Version: protocol.UsageReceiptVersion, Seller: third.id, Buyer: buyer.id,
		Lease: protocol.Link{Cid: id}, Seq: 3, Prev: &protocol.Link{Cid: cid.Cid(before.Lease)},
		From: protocol.TimeOf(since.Add(2 * time.Second)), To: protocol.TimeOf(since.Add(3 * time.Second)),
		Billed: 3000, Currency: "USD", IssuedAt: protocol.TimeOf(e.clk.Now())}
	own, _ := protocol.Sign(&base, third.key)
	asSeller := base
	asSeller.Seller = seller.id
	payload, _ := protocol.SigningBytes(&asSeller)
	asSeller.Sig, _ = third.key.Sign(payload)
	forged, _ := protocol.Marshal(&asSeller)
	body, _ := encodeMsg([][]byte{own, forged})
	_, resp, err := third.roundTrip(context.Background(), buyer.id, string(ReceiptProtocol), appendFrame(nil, tagReceipts, body), tagAnswers)
	if err != nil {
		t.Fatal(err)
	}
	var answers []answer
	if err := storedDec.Unmarshal(resp, &answers); err != nil || len(answers) != 2 {
		t.Fatalf("answers %v, %v", answers, err)
	}
	for i, a := range answers {
		if a.Refused == "" || a.Ack != nil || a.Dispute != nil {
			t.Fatalf("forged receipt %d answered %+v, want refused", i, a)
		}
	}
	// A settlement the third peer signs is refused too.
	set := &protocol.Settlement{Version: protocol.SettlementVersion, Lease: protocol.Link{Cid: id}, Seller: third.id, Buyer: buyer.id,
		Currency: "USD", State: protocol.SettlementSettled, At: protocol.TimeOf(e.clk.Now())}
	sraw, _ := protocol.SignSettlement(set, third.key)
	if tag, _, err := third.roundTrip(context.Background(), buyer.id, string(SettleProtocol), appendFrame(nil, tagSettlement, sraw), tagSettled, tagRefused); err != nil || tag != tagRefused {
		t.Fatalf("third peer's settlement: tag %x err %v, want refused", tag, err)
	}
	after := buyer.summary(id)
	if after.Receipts != before.Receipts || after.Acked != before.Acked || len(after.Disputes) != 0 || after.Settlement != nil {
		t.Fatalf("the buyer's ledger changed: %+v -> %+v", before, after)
	}

	// Acks forged for the seller: the buyer's node is replaced by one that
	// answers with acks signed by the third peer's key.
	buyer.close()
	buyer.h.SetStreamHandler(ReceiptProtocol, func(st network.Stream) {
		defer st.Close()
		_, body, err := readFrame(bufio.NewReader(st), tagReceipts)
		if err != nil {
			_ = st.Reset()
			return
		}
		raws, _ := decodeReceipts(body)
		out := make([]answer, len(raws))
		for i, raw := range raws {
			r, _ := protocol.DecodeUsageReceipt(raw)
			a := &protocol.ReceiptAck{Version: protocol.ReceiptAckVersion, Buyer: buyer.id, Seller: seller.id, Lease: r.Lease,
				Receipt: protocol.Link{Cid: protocol.CIDOf(raw)}, Seq: r.Seq, Total: r.Total, At: protocol.TimeOf(e.clk.Now())}
			payload, _ := protocol.SigningBytes(a)
			a.Sig, _ = third.key.Sign(payload)
			out[i].Ack, _ = protocol.Marshal(a)
		}
		b, _ := encodeMsg(out)
		_, _ = st.Write(appendFrame(nil, tagAnswers, b))
	})
	acked := sellerState(t, seller, id).AckedSeq
	for i := 0; i < 3; i++ {
		e.clk.Add(time.Second)
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "the seller to try", func() bool { return sellerState(t, seller, id).Unacked != 0 })
	if st := sellerState(t, seller, id); st.AckedSeq != acked || st.Answered != acked {
		t.Fatalf("forged acks counted: acked %d, answered %d, want %d", st.AckedSeq, st.Answered, acked)
	}
}

// One message may carry the receipts of many leases, in any mix: each
// lease's receipts are checked in order, and all are answered.
func TestOneMessageManyLeases(t *testing.T) {
	e := newEnv(t)
	seller, buyer := e.party(), e.party()
	tm := defaultTerms()
	tm.start = e.clk.Now()
	var raws [][]byte
	var ids []cid.Cid
	for i := 0; i < 3; i++ {
		id := e.dealQuiet(seller, buyer, tm)
		l, _ := seller.leases.Lease(id, true)
		ids = append(ids, id)
		raws = append(raws, chain(t, seller, l, tm.start, 2, time.Second)...)
	}
	e.clk.Add(3 * time.Second)
	// Lease 0's two receipts, then 1's, then 2's; and 0's again (duplicates).
	msg := append(append([][]byte{}, raws...), raws[0], raws[1])
	body, _ := encodeMsg(msg)
	_, resp, err := seller.roundTrip(context.Background(), buyer.id, string(ReceiptProtocol), appendFrame(nil, tagReceipts, body), tagAnswers)
	if err != nil {
		t.Fatal(err)
	}
	var answers []answer
	if err := storedDec.Unmarshal(resp, &answers); err != nil || len(answers) != len(msg) {
		t.Fatalf("answers %d, %v", len(answers), err)
	}
	for i, a := range answers {
		if a.Ack == nil {
			t.Fatalf("receipt %d answered %+v", i, a)
		}
	}
	if string(answers[6].Ack) != string(answers[0].Ack) {
		t.Fatal("a receipt received twice got a different ack")
	}
	for _, id := range ids {
		if sm := buyer.summary(id); sm.Acked != 2 {
			t.Fatalf("lease %s: %d acked, want 2", id, sm.Acked)
		}
	}
}

// The seller's settlement reached the buyer, which countersigned and
// stored it, but the answer was lost: proposed again later, the same
// terms get the stored settlement, and both hold the same one.
func TestSettlementAnswerLost(t *testing.T) {
	e := newEnv(t)
	seller, buyer := e.party(), e.party()
	tm := defaultTerms()
	tm.length = 5 * time.Second
	since := e.clk.Now()
	id := e.deal(seller, buyer, tm, "")
	e.advance(seller, id, 4*time.Second, time.Second, since, tm.interval)
	e.clk.Add(time.Second)
	e.end(seller, buyer, id, protocol.CauseExpired)
	waitFor(t, "settled", func() bool { return seller.summary(id).Status == StatusSettled })
	// The seller forgets it got the answer.
	if err := seller.db.Update(func(tx *store.Txn) error {
		st, _, err := getState(tx, true, id)
		if err != nil {
			return err
		}
		st.Settlement, st.Status = nil, StatusOpen
		return putState(tx, id, st)
	}); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(3 * time.Second)
	if err := seller.proposeSettlement(context.Background(), id, sellerState(t, seller, id)); err != nil {
		t.Fatalf("proposed again: %v", err)
	}
	a, b := seller.summary(id).Settlement, buyer.summary(id).Settlement
	if a == nil || b == nil {
		t.Fatal("a side holds no settlement")
	}
	ca, _ := a.CID()
	cb, _ := b.CID()
	if ca != cb {
		t.Fatalf("the sides hold different settlements: %s and %s", ca, cb)
	}
}
