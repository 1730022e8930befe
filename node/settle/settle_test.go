package settle

import (
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/protocol"
)

// A two-hour lease, a receipt every second, on a mock clock: one
// settlement that both nodes hold, whose total is the price times the
// time to the micro-unit.
func TestTwoHourLeaseSettles(t *testing.T) {
	if testing.Short() {
		t.Skip("7,200 receipts")
	}
	e := newEnv(t)
	seller, buyer := e.party(), e.party()
	tm := defaultTerms()
	since := e.clk.Now()
	id := e.deal(seller, buyer, tm, "")
	e.advance(seller, id, tm.length-2*time.Minute, 2*time.Minute, since, tm.interval)
	e.clk.Add(2 * time.Minute)
	e.end(seller, buyer, id, protocol.CauseExpired)
	waitFor(t, "both to settle", func() bool {
		return seller.summary(id).Status == StatusSettled && buyer.summary(id).Status == StatusSettled
	})
	want, err := protocol.Charge(tm.price, tm.slots, protocol.MillisOf(tm.length))
	if err != nil {
		t.Fatal(err)
	}
	ss, bs := seller.summary(id), buyer.summary(id)
	for _, sm := range []*Summary{ss, bs} {
		set := sm.Settlement
		if set == nil {
			t.Fatal("no settlement")
		}
		if err := set.Validate(e.clk.Now(), e.lim); err != nil {
			t.Fatalf("settlement does not validate: %v", err)
		}
		if set.Total != want || set.HeadTotal != want || set.State != protocol.SettlementSettled {
			t.Fatalf("settlement total %d, head total %d, state %s; want %d settled", set.Total, set.HeadTotal, set.State, want)
		}
		if set.HeadSeq != 7200 || sm.Receipts != 7200 || sm.Acked != 7200 {
			t.Fatalf("head %d, receipts %d, acked %d; want 7200", set.HeadSeq, sm.Receipts, sm.Acked)
		}
	}
	sa, _ := protocol.SettlementPayload(ss.Settlement)
	ba, _ := protocol.SettlementPayload(bs.Settlement)
	if string(sa) != string(ba) {
		t.Fatal("the two sides hold different settlements")
	}
	// The receipts add up, none counted twice.
	rs, err := buyer.Receipts(id)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for i, r := range rs {
		if r.Receipt.Seq != uint64(i+1) || !r.Acked {
			t.Fatalf("receipt %d: seq %d acked %v", i, r.Receipt.Seq, r.Acked)
		}
		sum += r.Receipt.Amount
	}
	if sum != want {
		t.Fatalf("receipts add up to %d, want %d", sum, want)
	}
	// The ledger agrees: the buyer owes the seller the total.
	bb, err := buyer.Balances()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := seller.Balances()
	if err != nil {
		t.Fatal(err)
	}
	if len(bb) != 1 || bb[0].Payable != want || bb[0].Net != -want || bb[0].Counterparty != seller.id ||
		len(sb) != 1 || sb[0].Receivable != want || sb[0].Counterparty != buyer.id {
		t.Fatalf("balances: buyer %+v, seller %+v; want %d", bb, sb, want)
	}
	inv, err := seller.Invoice(e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Lines) != 1 || inv.Lines[0].Amount != want || inv.Receivable["USD"] != want || inv.Lines[0].Billed != tm.length {
		t.Fatalf("invoice %+v; want one line of %d", inv, want)
	}
}
