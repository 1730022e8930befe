package apitest

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/settle"
	"github.com/spotmesh/spotmesh/protocol"
)

// SettleService implements api.Backend: the Fake's ledger, or nil with
// NoSettle.
func (f *Fake) SettleService() api.Settlement {
	if f.NoSettle {
		return nil
	}
	return f.Ledger
}

// FakeSettle is an api.Settlement in memory. It starts empty: Add puts a
// lease's billing in, AddSample a ready-made set of leases. Balances and
// Invoice are derived from what it holds, as the settle service derives
// them.
type FakeSettle struct {
	mu     sync.Mutex // guards the fields below
	leases map[cid.Cid]*fakeBilling
	err    error
}

type fakeBilling struct {
	sum      settle.Summary
	receipts []settle.Receipt
}

var _ api.Settlement = (*FakeSettle)(nil)

func newFakeSettle() *FakeSettle {
	return &FakeSettle{leases: map[cid.Cid]*fakeBilling{}}
}

// Add stores a lease's billing as given, replacing any for the same lease.
func (s *FakeSettle) Add(sm *settle.Summary, receipts []settle.Receipt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases[sm.Lease] = &fakeBilling{sum: *sm, receipts: append([]settle.Receipt(nil), receipts...)}
}

// SetErr makes every call fail with err (nil: succeed).
func (s *FakeSettle) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func notFound(op string, id cid.Cid) error {
	return fmt.Errorf("%s of lease %s: %w: this node holds no receipts or settlement of lease %s ('settle ls' lists them)", op, id, settle.ErrNotFound, id)
}

// Receipts implements api.Settlement.
func (s *FakeSettle) Receipts(id cid.Cid) ([]settle.Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	b, ok := s.leases[id]
	if !ok {
		return nil, notFound("receipts", id)
	}
	return append([]settle.Receipt(nil), b.receipts...), nil
}

// Summary implements api.Settlement.
func (s *FakeSettle) Summary(id cid.Cid) (*settle.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	b, ok := s.leases[id]
	if !ok {
		return nil, notFound("settlement", id)
	}
	sm := b.sum
	return &sm, nil
}

// Summaries implements api.Settlement: the most recently updated first.
func (s *FakeSettle) Summaries() ([]*settle.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return s.summaries(), nil
}

func (s *FakeSettle) summaries() []*settle.Summary {
	out := make([]*settle.Summary, 0, len(s.leases))
	for _, b := range s.leases {
		sm := b.sum
		out = append(out, &sm)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Updated.Equal(out[j].Updated) {
			return out[i].Updated.After(out[j].Updated)
		}
		return out[i].Lease.String() < out[j].Lease.String()
	})
	return out
}

// owed is what the buyer of a lease owes: the settled total, else the
// acknowledged total.
func owed(sm *settle.Summary) int64 {
	if sm.Settlement != nil {
		return sm.Settlement.Total
	}
	return sm.AckedTotal
}

// Balances implements api.Settlement.
func (s *FakeSettle) Balances() ([]settle.Balance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	type key struct {
		p peer.ID
		c string
	}
	m := map[key]*settle.Balance{}
	for _, sm := range s.summaries() {
		k := key{sm.Counterparty, sm.Currency}
		b := m[k]
		if b == nil {
			b = &settle.Balance{Counterparty: sm.Counterparty, Currency: sm.Currency}
			m[k] = b
		}
		b.Leases++
		o := owed(sm)
		if sm.Sold {
			b.Receivable += o
		} else {
			b.Payable += o
		}
		if sm.Status == settle.StatusClaimed && sm.Claim != nil && sm.Claim.Amount > o {
			b.Claimed += sm.Claim.Amount - o
		}
	}
	out := make([]settle.Balance, 0, len(m))
	for _, b := range m {
		b.Net = b.Receivable - b.Payable
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Counterparty != out[j].Counterparty {
			return out[i].Counterparty < out[j].Counterparty
		}
		return out[i].Currency < out[j].Currency
	})
	return out, nil
}

// Invoice implements api.Settlement: the acknowledged receipts whose
// period ends in t's month.
func (s *FakeSettle) Invoice(t time.Time) (*settle.Invoice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	inv := &settle.Invoice{Month: start, Receivable: map[string]int64{}, Payable: map[string]int64{}}
	for _, sm := range s.summaries() {
		line := settle.InvoiceLine{Lease: sm.Lease, Sold: sm.Sold, Counterparty: sm.Counterparty, Currency: sm.Currency, Status: sm.Status}
		for _, rc := range s.leases[sm.Lease].receipts {
			r := rc.Receipt
			if r.Seq > sm.Acked {
				break
			}
			to := r.To.Std()
			if to.Before(start) || !to.Before(end) {
				continue
			}
			if line.Receipts == 0 {
				line.From = r.From.Std()
			}
			line.Receipts++
			line.To = to
			line.Billed += protocol.Millis(r.To - r.From).Std()
			line.Amount += r.Amount
		}
		if line.Receipts == 0 {
			continue
		}
		inv.Lines = append(inv.Lines, line)
		if sm.Sold {
			inv.Receivable[sm.Currency] += line.Amount
		} else {
			inv.Payable[sm.Currency] += line.Amount
		}
	}
	sort.Slice(inv.Lines, func(i, j int) bool {
		a, b := inv.Lines[i], inv.Lines[j]
		if !a.From.Equal(b.From) {
			return a.From.Before(b.From)
		}
		return a.Lease.String() < b.Lease.String()
	})
	return inv, nil
}

// SamplePrice is the hourly price of every sample lease: each receipt of
// an hour costs 0.123457 USD.
var SamplePrice = protocol.Price{Micro: 123457, Currency: "USD"}

// The IDs of the leases AddSample stores: fixed, so that tests can name
// them in paths before the sample exists.
var (
	SampleDisputed = protocol.CIDOf([]byte("sample lease: disputed"))
	SampleSettled  = protocol.CIDOf([]byte("sample lease: settled"))
	SampleOpen     = protocol.CIDOf([]byte("sample lease: open"))
	SampleClaimed  = protocol.CIDOf([]byte("sample lease: claimed"))
)

// SampleLedger is what AddSample stored. Every lease is of one slot at
// SamplePrice with one receipt an hour, in November 2026:
//   - SampleDisputed: sold to Buyer from 2026-11-03T10:00Z; three
//     receipts, the last final; the buyer acknowledged two and disputed
//     the third (overcharge); a disputed settlement signed by both.
//   - SampleSettled: bought by the Fake from Seller from
//     2026-11-05T08:00Z; two receipts, both acknowledged, the last final;
//     settled, signed by both.
//   - SampleOpen: sold to Buyer from 2026-11-30T22:00Z; two receipts, the
//     first acknowledged (in November), the second pending (ends in
//     December).
//   - SampleClaimed: sold to Buyer2 from 2026-10-31T23:00Z (its first
//     receipt ends at the first instant of November); two receipts, the
//     first acknowledged; the seller claimed two receipts' worth.
type SampleLedger struct {
	// Buyer and Buyer2 bought from the Fake; Seller sold to it.
	Buyer, Buyer2, Seller peer.ID
}

// AddSample stores the sample leases, with the Fake (whose key signs) as
// their seller or buyer.
func (s *FakeSettle) AddSample(t testing.TB, f *Fake) SampleLedger {
	t.Helper()
	bk, buyer := NewKey(t)
	bk2, buyer2 := NewKey(t)
	sk, seller := NewKey(t)
	out := SampleLedger{Buyer: buyer, Buyer2: buyer2, Seller: seller}
	day := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Disputed.
	id := SampleDisputed
	rs := sampleReceipts(t, f.Key, buyer, id, day(3, 10), 3, true)
	d := &protocol.Dispute{Version: protocol.DisputeVersion, Buyer: buyer, Seller: f.ID, Lease: protocol.Link{Cid: id},
		Receipt: protocol.Link{Cid: rs[2].CID}, Seq: 3, Reason: protocol.DisputeOvercharge,
		Detail: "receipt 3 bills 3h0m0s in all, want 2h40m0s", At: protocol.TimeOf(day(3, 13).Add(time.Second))}
	_, err := protocol.Sign(d, bk)
	must(err)
	dc, err := d.CID()
	must(err)
	ack(rs[:2])
	rs[2].Answered, rs[2].Dispute = true, d
	set := sampleSettlement(id, f.ID, buyer, rs, 2, []protocol.Link{{Cid: dc}}, day(3, 13).Add(time.Minute))
	sign2(t, set, f.Key, bk)
	s.Add(&settle.Summary{Lease: id, Sold: true, Counterparty: buyer, Currency: "USD", Status: settle.StatusDisputed,
		Receipts: 3, Acked: 2, Total: rs[2].Receipt.Total, AckedTotal: rs[1].Receipt.Total, Disputes: []*protocol.Dispute{d},
		Final: true, Settlement: set, Updated: day(3, 13).Add(time.Minute)}, rs)

	// Settled, bought.
	id = SampleSettled
	rs = sampleReceipts(t, sk, f.ID, id, day(5, 8), 2, true)
	ack(rs)
	set = sampleSettlement(id, seller, f.ID, rs, 2, nil, day(5, 10).Add(time.Minute))
	sign2(t, set, sk, f.Key)
	s.Add(&settle.Summary{Lease: id, Sold: false, Counterparty: seller, Currency: "USD", Status: settle.StatusSettled,
		Receipts: 2, Acked: 2, Total: rs[1].Receipt.Total, AckedTotal: rs[1].Receipt.Total, Final: true, Settlement: set,
		Updated: day(5, 10).Add(time.Minute)}, rs)

	// Open.
	id = SampleOpen
	rs = sampleReceipts(t, f.Key, buyer, id, day(30, 22), 2, false)
	ack(rs[:1])
	s.Add(&settle.Summary{Lease: id, Sold: true, Counterparty: buyer, Currency: "USD", Status: settle.StatusOpen,
		Receipts: 2, Acked: 1, Total: rs[1].Receipt.Total, AckedTotal: rs[0].Receipt.Total, Updated: day(30, 22).Add(2 * time.Hour)}, rs)

	// Claimed: the claim carries the whole lease as evidence.
	id = SampleClaimed
	start := day(1, 0).Add(-time.Hour)
	l := sampleLease(t, f.Key, bk2, start, 4)
	rs = sampleReceipts(t, f.Key, buyer2, id, start, 2, false)
	ack(rs[:1])
	a := &protocol.ReceiptAck{Version: protocol.ReceiptAckVersion, Buyer: buyer2, Seller: f.ID, Lease: protocol.Link{Cid: id},
		Receipt: protocol.Link{Cid: rs[0].CID}, Seq: 1, Total: rs[0].Receipt.Total, At: rs[0].Receipt.IssuedAt}
	_, err = protocol.Sign(a, bk2)
	must(err)
	head := protocol.Link{Cid: rs[1].CID}
	c := &protocol.Claim{Version: protocol.ClaimVersion, Seller: f.ID, Lease: *l, Receipt: rs[0].Receipt, Ack: a,
		Head: &head, HeadTotal: rs[1].Receipt.Total, Amount: 2 * SamplePrice.Micro, Currency: "USD",
		At: protocol.TimeOf(start.Add(3 * time.Hour))}
	_, err = protocol.Sign(c, f.Key)
	must(err)
	s.Add(&settle.Summary{Lease: id, Sold: true, Counterparty: buyer2, Currency: "USD", Status: settle.StatusClaimed,
		Receipts: 2, Acked: 1, Total: rs[1].Receipt.Total, AckedTotal: rs[0].Receipt.Total, Claim: c,
		Updated: start.Add(3 * time.Hour)}, rs)
	return out
}

// sampleLease makes a lease of one slot at SamplePrice for hours from
// start, with receipts every hour, signed by both parties.
func sampleLease(t testing.TB, seller, buyer crypto.PrivKey, start time.Time, hours int) *protocol.Lease {
	t.Helper()
	sid, _ := peer.IDFromPrivateKey(seller)
	bid, _ := peer.IDFromPrivateKey(buyer)
	issued := start.Add(-time.Minute)
	p := protocol.LeaseProposal{
		Version: protocol.LeaseProposalVersion, Buyer: bid, Seller: sid,
		Offer: protocol.Link{Cid: protocol.CIDOf([]byte("sample offer " + sid.String()))}, OfferKey: "a", Slots: 1,
		Start: protocol.TimeOf(start), Length: protocol.MillisOf(time.Duration(hours) * time.Hour), Price: SamplePrice,
		Appliance: protocol.Link{Cid: protocol.CIDOf([]byte("sample appliance"))}, ApplianceSize: 1 << 20, ApplianceFormat: "bundle",
		ReceiptInterval: protocol.MillisOf(time.Hour), PaymentGrace: protocol.MillisOf(5 * time.Minute),
		Nonce:    []byte(start.Format("2006010215") + "nonce-"),
		IssuedAt: protocol.TimeOf(issued), ExpiresAt: protocol.TimeOf(issued.Add(time.Minute)),
	}
	if _, err := protocol.Sign(&p, buyer); err != nil {
		t.Fatal(err)
	}
	l := &protocol.Lease{Version: protocol.LeaseVersion, Seller: sid, Proposal: p, AcceptedAt: protocol.TimeOf(issued.Add(time.Second))}
	if _, err := protocol.Sign(l, seller); err != nil {
		t.Fatal(err)
	}
	return l
}

// sampleReceipts makes the first n receipts of lease id from start, an
// hour each, signed by the seller, none answered; the last is final when
// final.
func sampleReceipts(t testing.TB, seller crypto.PrivKey, buyer peer.ID, id cid.Cid, start time.Time, n int, final bool) []settle.Receipt {
	t.Helper()
	sid, _ := peer.IDFromPrivateKey(seller)
	var out []settle.Receipt
	var prev *protocol.Link
	from := protocol.TimeOf(start)
	hour := protocol.MillisOf(time.Hour)
	for i := 1; i <= n; i++ {
		to := from + protocol.Time(hour)
		r := &protocol.UsageReceipt{
			Version: protocol.UsageReceiptVersion, Seller: sid, Buyer: buyer, Lease: protocol.Link{Cid: id},
			Seq: uint64(i), Prev: prev, From: from, To: to, Billed: hour * protocol.Millis(i),
			Usage:  protocol.Usage{InstanceMs: hour, CPUMs: protocol.MillisOf(20 * time.Minute), MemoryPeak: 256 << 20, BytesIn: 1 << 20, BytesOut: 2 << 20, Network: true},
			Amount: SamplePrice.Micro, Total: SamplePrice.Micro * int64(i), Currency: SamplePrice.Currency,
			Endpoint: FakeEndpoint, Final: final && i == n, IssuedAt: to,
		}
		b, err := protocol.Sign(r, seller)
		if err != nil {
			t.Fatal(err)
		}
		c := protocol.CIDOf(b)
		out = append(out, settle.Receipt{CID: c, Receipt: r})
		prev = &protocol.Link{Cid: c}
		from = to
	}
	return out
}

func ack(rs []settle.Receipt) {
	for i := range rs {
		rs[i].Acked, rs[i].Answered = true, true
	}
}

// sampleSettlement settles a chain whose first acked receipts the buyer
// acknowledged.
func sampleSettlement(id cid.Cid, seller, buyer peer.ID, rs []settle.Receipt, acked int, disputes []protocol.Link, at time.Time) *protocol.Settlement {
	head, ack := protocol.Link{Cid: rs[len(rs)-1].CID}, protocol.Link{Cid: rs[acked-1].CID}
	st := protocol.SettlementSettled
	if disputes != nil {
		st = protocol.SettlementDisputed
	}
	return &protocol.Settlement{Version: protocol.SettlementVersion, Lease: protocol.Link{Cid: id}, Seller: seller, Buyer: buyer,
		Head: &head, HeadSeq: uint64(len(rs)), HeadTotal: rs[len(rs)-1].Receipt.Total,
		Acked: &ack, AckedSeq: uint64(acked), Total: rs[acked-1].Receipt.Total, Currency: "USD",
		Disputes: disputes, State: st, At: protocol.TimeOf(at)}
}

func sign2(t testing.TB, s *protocol.Settlement, keys ...crypto.PrivKey) {
	t.Helper()
	for _, k := range keys {
		if _, err := protocol.SignSettlement(s, k); err != nil {
			t.Fatal(err)
		}
	}
}
