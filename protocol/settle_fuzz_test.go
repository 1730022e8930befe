package protocol

import (
	"errors"
	"math"
	"testing"

	"github.com/ipfs/go-cid"
)

// withoutLimits adapts a decoder that takes no Limits to fuzzDecoder.
func withoutLimits[T any](decode func([]byte) (*T, error)) func([]byte, Limits) (*T, error) {
	return func(b []byte, _ Limits) (*T, error) { return decode(b) }
}

// settleSeeds is a fixture with a chain of three receipts, the last final,
// an ack and a dispute, for fuzz seeds.
type settleSeeds struct {
	f   *settleFixture
	rs  []*UsageReceipt
	ids []cid.Cid
	ack *ReceiptAck
}

func newSettleSeeds(tb testing.TB) *settleSeeds {
	f := newSettleFixture(tb, nil)
	rs, ids := f.chain(tb, 60_000, 59_999)
	last := f.next(tb, rs[1], ids[1], rs[1].To, rs[1].To)
	last.Final = true
	rs, ids = append(rs, last), append(ids, f.sign(tb, last))
	return &settleSeeds{f: f, rs: rs, ids: ids, ack: f.ack(tb, rs[1], ids[1])}
}

func marshalSeeds(tb testing.TB, vs ...any) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, v := range vs {
		b, err := Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzDecodeUsageReceipt(f *testing.F) {
	s := newSettleSeeds(f)
	fuzzDecoder(f, marshalSeeds(f, s.rs[0], s.rs[1], s.rs[2]), withoutLimits(DecodeUsageReceipt), (*UsageReceipt).ValidateFields)
}

func FuzzDecodeReceiptAck(f *testing.F) {
	s := newSettleSeeds(f)
	fuzzDecoder(f, marshalSeeds(f, s.ack), withoutLimits(DecodeReceiptAck), (*ReceiptAck).Validate)
}

func FuzzDecodeDispute(f *testing.F) {
	s := newSettleSeeds(f)
	d := &Dispute{Version: DisputeVersion, Buyer: s.f.buyer, Seller: s.f.seller, Lease: Link{s.f.id},
		Receipt: Link{s.ids[1]}, Seq: 2, Reason: DisputeOverlap, Detail: "receipt 2 starts 1s early", At: s.rs[1].IssuedAt}
	mustSign(f, d, s.f.buyerKey)
	fuzzDecoder(f, marshalSeeds(f, d), withoutLimits(DecodeDispute), (*Dispute).Validate)
}

func FuzzDecodeSettlement(f *testing.F) {
	s := newSettleSeeds(f)
	settled := s.f.settlement(s.rs[2], s.ids[2], s.rs[2], s.ids[2])
	signBoth(f, s.f, settled)
	disputed := s.f.settlement(s.rs[2], s.ids[2], s.rs[0], s.ids[0])
	disputed.Disputes = []Link{testCID("dispute 1"), testCID("dispute 2")}
	signBoth(f, s.f, disputed)
	empty := s.f.settlement(nil, cid.Undef, nil, cid.Undef)
	if _, err := SignSettlement(empty, s.f.sellerKey); err != nil {
		f.Fatal(err)
	}
	fuzzDecoder(f, marshalSeeds(f, settled, disputed, empty), withoutLimits(DecodeSettlement), (*Settlement).Validate)
}

func FuzzDecodeClaim(f *testing.F) {
	s := newSettleSeeds(f)
	head := Link{s.ids[2]}
	withReceipt := s.f.claim(f, s.rs[1], s.ack, s.rs[1].Total+1)
	withReceipt.Head = &head
	mustSign(f, withReceipt, s.f.sellerKey)
	without := s.f.claim(f, nil, nil, 1000)
	fuzzDecoder(f, marshalSeeds(f, withReceipt, without), DecodeClaim, (*Claim).Validate)
}

// FuzzCharge holds Charge to math/big over valid lease terms: the exact
// total whenever it fits an int64, an error otherwise, and a refusal of
// negative input.
func FuzzCharge(f *testing.F) {
	f.Add(int64(40000), uint32(1), int64(3_600_000))
	f.Add(int64(123457), uint32(3), int64(60_001))
	f.Add(int64(1e12), uint32(MaxLeaseSlots), int64(MillisOf(MaxLeaseLength)))
	f.Add(int64(1_000_000), uint32(MaxLeaseSlots), int64(MillisOf(MaxLeaseLength)))
	f.Add(int64(-1), uint32(1), int64(1))
	f.Add(int64(1), uint32(1), int64(-1))
	f.Fuzz(func(t *testing.T, micro int64, slots uint32, billed int64) {
		slots %= MaxLeaseSlots + 1
		if micro < 0 || billed < 0 {
			if _, err := Charge(Price{Micro: micro, Currency: "USD"}, slots, Millis(billed)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Charge(%d, %d, %d): want ErrInvalid, got %v", micro, slots, billed, err)
			}
			return
		}
		if err := chargeAgrees(micro, slots, Millis(billed)); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzCheckReceipt signs receipts that follow a chain of two with fuzzed
// periods and amounts, and checks that every receipt CheckReceipt passes
// is exactly the honest next receipt, that every refusal is a known
// dispute reason, and that the honest receipt passes.
func FuzzCheckReceipt(f *testing.F) {
	s := newSettleSeeds(f)
	fx := s.f
	prev, prevID := s.rs[1], s.ids[1]
	price, slots := fx.lease.Proposal.Price, fx.lease.Proposal.Slots
	f.Add(int64(0), int64(60_000), int64(0), int64(60_000), int64(0), int64(0), uint8(0), false)
	f.Add(int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), uint8(0), true)
	f.Add(int64(-1), int64(60_000), int64(0), int64(60_000), int64(0), int64(0), uint8(0), false)
	f.Add(int64(1), int64(60_000), int64(0), int64(60_000), int64(0), int64(0), uint8(0), false)
	f.Add(int64(0), int64(60_000), int64(1), int64(60_000), int64(0), int64(0), uint8(0), false)
	f.Add(int64(0), int64(60_000), int64(0), int64(60_001), int64(0), int64(0), uint8(0), false)
	f.Add(int64(0), int64(60_000), int64(0), int64(60_000), int64(1), int64(1), uint8(0), false)
	f.Add(int64(0), int64(60_000), int64(0), int64(60_000), int64(0), int64(0), uint8(1), false)
	f.Add(int64(0), int64(math.MaxInt64), int64(0), int64(0), int64(0), int64(0), uint8(0), false)
	f.Fuzz(func(t *testing.T, fromOff, period, billedDelta, inst, amountDelta, totalDelta int64, seqDelta uint8, final bool) {
		from := prev.To + Time(fromOff)
		r := fx.next(t, prev, prevID, prev.To, prev.To) // honest empty period, then changed
		r.From, r.To = from, from+Time(period)
		r.IssuedAt = r.To
		r.Billed = prev.Billed + Millis(r.To-r.From) + Millis(billedDelta)
		r.Usage.InstanceMs = Millis(inst)
		total, err := Charge(price, slots, prev.Billed+Millis(r.To-r.From))
		if err != nil {
			total = 0
		}
		r.Total = total + totalDelta
		r.Amount = r.Total - prev.Total + amountDelta
		r.Seq += uint64(seqDelta)
		r.Final = final
		mustSign(t, r, fx.sellerKey)

		err = CheckReceipt(fx.check(prev, prevID), r, fx.at, fx.lim)
		if err != nil {
			var de *DisputeError
			if !errors.As(err, &de) || !de.Reason.Known() || de.Detail == "" {
				t.Fatalf("refusal %v is not a known dispute", err)
			}
		}
		honest := fromOff == 0 && period >= 0 && (period > 0 || final) && period <= int64(fx.ends-prev.To) &&
			billedDelta == 0 && amountDelta == 0 && totalDelta == 0 && seqDelta == 0 &&
			inst >= 0 && inst <= period
		if honest && err != nil {
			t.Fatalf("honest receipt refused: %v", err)
		}
		if err != nil {
			return
		}
		want := bigCharge(price.Micro, slots, r.Billed)
		switch {
		case r.Seq != prev.Seq+1 || r.Prev == nil || r.Prev.Cid != prevID:
			t.Fatalf("passed out of sequence: seq %d", r.Seq)
		case r.From != prev.To || r.To < r.From || r.To > fx.ends:
			t.Fatalf("passed period %d..%d after %d, lease ends %d", r.From, r.To, prev.To, fx.ends)
		case r.To == r.From && !r.Final:
			t.Fatal("passed an empty period on a receipt that is not final")
		case r.Billed != prev.Billed+Millis(r.To-r.From):
			t.Fatalf("passed billed %d after %d for %d", r.Billed, prev.Billed, r.To-r.From)
		case r.Usage.InstanceMs < 0 || r.Usage.InstanceMs > Millis(r.To-r.From):
			t.Fatalf("passed instance time %d in a period of %d", r.Usage.InstanceMs, r.To-r.From)
		case !want.IsInt64() || r.Total != want.Int64() || r.Amount != r.Total-prev.Total:
			t.Fatalf("passed amount %d total %d, want total %s", r.Amount, r.Total, want)
		case r.To.Std().After(fx.at.Add(fx.lim.ClockSkew)):
			t.Fatal("passed a period that ends in the future")
		}
	})
}
