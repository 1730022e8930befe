package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
)

const msPerHour = 3_600_000

// bigCharge is Charge computed with math/big: floor(micro × slots × ms /
// 3,600,000), with no overflow.
func bigCharge(micro int64, slots uint32, billed Millis) *big.Int {
	n := new(big.Int).Mul(big.NewInt(micro), new(big.Int).SetUint64(uint64(slots)))
	n.Mul(n, big.NewInt(int64(billed)))
	return n.Quo(n, big.NewInt(msPerHour))
}

// checkCharge holds Charge to bigCharge: the exact total when it fits an
// int64, an ErrInvalid otherwise.
func checkCharge(t testing.TB, micro int64, slots uint32, billed Millis) {
	t.Helper()
	if err := chargeAgrees(micro, slots, billed); err != nil {
		t.Fatal(err)
	}
}

// chargeAgrees says how Charge differs from bigCharge, or nil.
func chargeAgrees(micro int64, slots uint32, billed Millis) error {
	got, err := Charge(Price{Micro: micro, Currency: "USD"}, slots, billed)
	want := bigCharge(micro, slots, billed)
	if !want.IsInt64() {
		if err == nil || !errors.Is(err, ErrInvalid) {
			return fmt.Errorf("Charge(%d, %d, %d) = %d, %v; want an overflow error (exact total %s)", micro, slots, billed, got, err, want)
		}
		return nil
	}
	if err != nil || got != want.Int64() {
		return fmt.Errorf("Charge(%d, %d, %d) = %d, %v; want %s", micro, slots, billed, got, err, want)
	}
	return nil
}

func TestChargeValues(t *testing.T) {
	hour := MillisOf(time.Hour)
	tenYears := MillisOf(MaxLeaseLength)
	tests := []struct {
		micro  int64
		slots  uint32
		billed Millis
		want   int64
	}{
		{40000, 1, hour, 40000},
		{40000, 3, hour, 120000},
		{40000, 1, 1, 0},                                    // 0.011 micro rounds down
		{40000, 1, 90, 1},                                   // 1.0 exactly
		{40000, 1, 89, 0},                                   // 0.989
		{1, 1, msPerHour - 1, 0},                            // just under one micro
		{1, 1, msPerHour, 1},                                // one micro
		{msPerHour, 1, 1, 1},                                // one micro per ms
		{123457, 3, 60_000, 6172},                           // 6172.85
		{0, 65536, tenYears, 0},                             // free
		{40000, 0, hour, 0},                                 // no slots
		{40000, 65536, 0, 0},                                // no time
		{1_000_000, 65536, tenYears, 5_740_953_600_000_000}, // 1 USD/h, every slot, ten years
		{1_000_000_000_000, 1, tenYears, 87_600_000_000_000_000}, // 1e6 USD/h for ten years
	}
	for _, tc := range tests {
		got, err := Charge(Price{Micro: tc.micro, Currency: "USD"}, tc.slots, tc.billed)
		if err != nil || got != tc.want {
			t.Errorf("Charge(%d, %d, %d) = %d, %v; want %d", tc.micro, tc.slots, tc.billed, got, err, tc.want)
		}
		if w := bigCharge(tc.micro, tc.slots, tc.billed); !w.IsInt64() || w.Int64() != tc.want {
			t.Errorf("test table wrong: bigCharge(%d, %d, %d) = %s, table says %d", tc.micro, tc.slots, tc.billed, w, tc.want)
		}
	}
}

// Charge agrees with math/big on the whole range of lease terms: prices up
// to 1e12 micro-units an hour, up to MaxLeaseSlots slots, up to ten years.
func TestChargeMatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tenYears := int64(MillisOf(MaxLeaseLength))
	prices := []int64{0, 1, 7, 40000, 123457, 999_999, 1_000_000, 3_600_000, 1e9, 1e12 - 1, 1e12}
	slotss := []uint32{0, 1, 2, 3, 100, 65535, MaxLeaseSlots}
	billeds := []int64{0, 1, 89, 90, 3_599_999, 3_600_000, 3_600_001, 86_400_000, tenYears - 1, tenYears}
	for _, p := range prices {
		for _, s := range slotss {
			for _, b := range billeds {
				checkCharge(t, p, s, Millis(b))
			}
		}
	}
	for i := 0; i < 200_000; i++ {
		p := rng.Int64N(1e12 + 1)
		if i%4 == 0 {
			p = rng.Int64N(1_000_000) // everyday prices
		}
		s := uint32(rng.IntN(MaxLeaseSlots + 1))
		b := rng.Int64N(tenYears + 1)
		checkCharge(t, p, s, Millis(b))
	}
}

// The largest total that fits is charged exactly, one millisecond more
// fails, for several prices of all slots.
func TestChargeOverflowBoundary(t *testing.T) {
	for _, micro := range []int64{1e12, 999_999_999_937, 40000, 123457} {
		p := new(big.Int).Mul(big.NewInt(micro), big.NewInt(MaxLeaseSlots))
		// The last billed time whose total fits: p*b < (MaxInt64+1)*H.
		lim := new(big.Int).Mul(new(big.Int).Add(big.NewInt(math.MaxInt64), big.NewInt(1)), big.NewInt(msPerHour))
		last := lim.Sub(lim, big.NewInt(1))
		last.Quo(last, p)
		if !last.IsInt64() {
			// Every time fits: the longest time is charged.
			checkCharge(t, micro, MaxLeaseSlots, math.MaxInt64)
			continue
		}
		b := Millis(last.Int64())
		got, err := Charge(Price{Micro: micro, Currency: "USD"}, MaxLeaseSlots, b)
		if err != nil {
			t.Fatalf("price %d, %d slots, %d ms: %v; the total fits", micro, MaxLeaseSlots, b, err)
		}
		if want := bigCharge(micro, MaxLeaseSlots, b); want.Int64() != got {
			t.Fatalf("price %d at the boundary: %d, want %s", micro, got, want)
		}
		if _, err := Charge(Price{Micro: micro, Currency: "USD"}, MaxLeaseSlots, b+1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("price %d, %d ms past the boundary: want an overflow error, got %v", micro, b+1, err)
		}
	}
	// A ten-year lease of every slot at 1e12 micro an hour overflows.
	if _, err := Charge(Price{Micro: 1e12, Currency: "USD"}, MaxLeaseSlots, MillisOf(MaxLeaseLength)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ten years at 1e12 x 65536: want an overflow error, got %v", err)
	}
	// Overflow of the time alone at the largest price.
	if _, err := Charge(Price{Micro: math.MaxInt64, Currency: "USD"}, 1, math.MaxInt64); !errors.Is(err, ErrInvalid) {
		t.Fatalf("MaxInt64 x MaxInt64: want an overflow error, got %v", err)
	}
}

// Charge "fails only when the total does not fit an int64": that holds for
// any valid lease, including a price per slot so large that price × slots
// alone exceeds 64 bits while the total for a short time is small.
func TestChargeHugePriceTimesSlots(t *testing.T) {
	cases := []struct {
		micro  int64
		slots  uint32
		billed Millis
	}{
		{1e15, MaxLeaseSlots, 1},                  // 1.8e13 micro
		{1e15, MaxLeaseSlots, 0},                  // nothing billed yet: 0
		{math.MaxInt64, 3, 1},                     // 7.7e12 micro
		{math.MaxInt64, MaxLeaseSlots, msPerHour}, // one hour: does not fit
	}
	for _, tc := range cases {
		if err := chargeAgrees(tc.micro, tc.slots, tc.billed); err != nil {
			t.Error(err)
		}
	}
}

func TestChargeRefusesNegative(t *testing.T) {
	for _, tc := range []struct {
		micro  int64
		billed Millis
	}{{-1, 1000}, {1000, -1}, {math.MinInt64, 1}, {1, math.MinInt64}} {
		if got, err := Charge(Price{Micro: tc.micro, Currency: "USD"}, 1, tc.billed); !errors.Is(err, ErrInvalid) {
			t.Errorf("Charge(%d, 1, %d) = %d, %v; want ErrInvalid", tc.micro, tc.billed, got, err)
		}
	}
}

// Receipts charge each period as the difference of running totals, so the
// amounts add up to the charge of the whole time, and each differs from
// the period's own exact price by less than one micro-unit; charging each
// period on its own would drift.
func TestChargeNeverDrifts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	drifted := false
	for run := 0; run < 200; run++ {
		micro := rng.Int64N(10_000_000) + 1
		if run%10 == 0 {
			micro = rng.Int64N(1e12) + 1
		}
		slots := uint32(rng.IntN(64) + 1)
		if run%7 == 0 {
			slots = MaxLeaseSlots
		}
		var billed Millis
		var prevTotal, sum, naive int64
		for i := 0; i < 500; i++ {
			period := Millis(rng.Int64N(120_000) + 1)
			billed += period
			total, err := Charge(Price{Micro: micro, Currency: "USD"}, slots, billed)
			if err != nil {
				t.Fatal(err)
			}
			amount := total - prevTotal
			exact := bigCharge(micro, slots, period).Int64() // floor of the period's own price
			if amount < exact || amount > exact+1 {
				t.Fatalf("run %d period %d: amount %d, the period alone costs %d to %d", run, i, amount, exact, exact+1)
			}
			sum += amount
			naive += exact
			prevTotal = total
		}
		whole, err := Charge(Price{Micro: micro, Currency: "USD"}, slots, billed)
		if err != nil {
			t.Fatal(err)
		}
		if sum != whole {
			t.Fatalf("run %d: amounts add up to %d, the whole time costs %d", run, sum, whole)
		}
		if naive != whole {
			drifted = true
		}
	}
	if !drifted {
		t.Fatal("charging each period alone never drifted: the test data does not exercise rounding")
	}
}

// settleFixture is a signed lease between the parties and what the buyer
// knows of it, for building receipt chains.
type settleFixture struct {
	*leaseParties
	lease *Lease
	id    cid.Cid
	start Time
	ends  Time
	// at is after the lease's end: every receipt of it is in the past.
	at  time.Time
	lim Limits
}

// settle makes a lease of 3 slots at 0.123457 USD/h, with the proposal
// changed by mut.
func (p *leaseParties) settle(t testing.TB, mut func(*LeaseProposal)) *settleFixture {
	t.Helper()
	lb := p.lease(t, func(pr *LeaseProposal, _ *Lease) {
		pr.Price = Price{Micro: 123457, Currency: "USD"}
		pr.Slots = 3
		if mut != nil {
			mut(pr)
		}
	})
	l, err := DecodeLease(lb, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Validate(p.now, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	return &settleFixture{
		leaseParties: p, lease: l, id: CIDOf(lb),
		start: l.Proposal.Start, ends: l.EndsAt(),
		at:  l.EndsAt().Std().Add(time.Hour),
		lim: DefaultLimits(),
	}
}

func newSettleFixture(t testing.TB, mut func(*LeaseProposal)) *settleFixture {
	t.Helper()
	return newParties(t).settle(t, mut)
}

// next builds the honest, unsigned receipt after prev (nil for the first)
// for the period from..to.
func (f *settleFixture) next(t testing.TB, prev *UsageReceipt, prevID cid.Cid, from, to Time) *UsageReceipt {
	t.Helper()
	period := Millis(to - from)
	r := &UsageReceipt{
		Version: UsageReceiptVersion, Seller: f.seller, Buyer: f.buyer, Lease: Link{f.id},
		Seq: 1, From: from, To: to,
		Usage: Usage{InstanceMs: period, CPUMs: period / 2, MemoryPeak: 1 << 30,
			BytesIn: 1000, BytesOut: 2000, Network: true},
		Currency: f.lease.Proposal.Price.Currency, Endpoint: "127.0.0.1:8080", IssuedAt: to,
	}
	var prevBilled Millis
	var prevTotal int64
	if prev != nil {
		r.Seq = prev.Seq + 1
		r.Prev = &Link{prevID}
		prevBilled, prevTotal = prev.Billed, prev.Total
	}
	r.Billed = prevBilled + period
	total, err := Charge(f.lease.Proposal.Price, f.lease.Proposal.Slots, r.Billed)
	if err != nil {
		t.Fatal(err)
	}
	r.Total, r.Amount = total, total-prevTotal
	return r
}

// sign signs r as the seller and returns its CID.
func (f *settleFixture) sign(t testing.TB, r *UsageReceipt) cid.Cid {
	t.Helper()
	return CIDOf(mustSign(t, r, f.sellerKey))
}

// chain signs honest receipts of the given period lengths, the first
// starting 5 s after the lease.
func (f *settleFixture) chain(t testing.TB, periods ...Millis) ([]*UsageReceipt, []cid.Cid) {
	t.Helper()
	var rs []*UsageReceipt
	var ids []cid.Cid
	from := f.start + 5000
	var prev *UsageReceipt
	var prevID cid.Cid
	for _, d := range periods {
		r := f.next(t, prev, prevID, from, from+Time(d))
		id := f.sign(t, r)
		rs, ids = append(rs, r), append(ids, id)
		prev, prevID, from = r, id, r.To
	}
	return rs, ids
}

func (f *settleFixture) check(prev *UsageReceipt, prevID cid.Cid) ChainCheck {
	return ChainCheck{Lease: f.lease, LeaseID: f.id, Prev: prev, PrevID: prevID, Ends: f.ends}
}

// ack is the buyer's signed ack of r named id.
func (f *settleFixture) ack(t testing.TB, r *UsageReceipt, id cid.Cid) *ReceiptAck {
	t.Helper()
	a := &ReceiptAck{Version: ReceiptAckVersion, Buyer: f.buyer, Seller: f.seller, Lease: r.Lease,
		Receipt: Link{id}, Seq: r.Seq, Total: r.Total, At: r.IssuedAt + 100}
	mustSign(t, a, f.buyerKey)
	return a
}

func TestUsageReceiptValidateFields(t *testing.T) {
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000)
	base := func() *UsageReceipt {
		r := f.next(t, rs[0], ids[0], rs[0].To, rs[0].To+60_000)
		r.Sig = nil
		return r
	}
	now := f.at
	tests := []struct {
		name string
		mut  func(*UsageReceipt)
		want error
		// wire is the error through the wire, where it differs: an
		// empty peer ID does not decode.
		wire error
	}{
		{"valid", func(*UsageReceipt) {}, nil, nil},
		{"valid first", func(r *UsageReceipt) { r.Seq, r.Prev = 1, nil }, nil, nil},
		{"empty period on the final receipt", func(r *UsageReceipt) { r.To, r.IssuedAt, r.Final = r.From, r.From, true }, nil, nil},
		{"billed longer than the period", func(r *UsageReceipt) { r.Billed += 1000 }, nil, nil},
		{"issued after the period", func(r *UsageReceipt) { r.IssuedAt += 5000 }, nil, nil},
		{"issued within the clock skew ahead", func(r *UsageReceipt) { r.IssuedAt = TimeOf(now.Add(20 * time.Second)) }, nil, nil},
		{"amount equals total", func(r *UsageReceipt) { r.Amount = r.Total }, nil, nil},
		{"no endpoint", func(r *UsageReceipt) { r.Endpoint = "" }, nil, nil},
		{"seq 0", func(r *UsageReceipt) { r.Seq, r.Prev = 0, nil }, ErrInvalid, nil},
		{"first with a prev", func(r *UsageReceipt) { r.Seq = 1 }, ErrInvalid, nil},
		{"second without a prev", func(r *UsageReceipt) { r.Prev = nil }, ErrInvalid, nil},
		{"prev present but empty", func(r *UsageReceipt) { r.Prev = &Link{} }, ErrInvalid, nil},
		{"period ends before it starts", func(r *UsageReceipt) { r.To = r.From - 1 }, ErrInvalid, nil},
		{"period from 0", func(r *UsageReceipt) { r.From = 0 }, ErrInvalid, nil},
		{"period from before 1970", func(r *UsageReceipt) { r.From = -1000 }, ErrInvalid, nil},
		{"period to past the year 37000", func(r *UsageReceipt) { r.To, r.IssuedAt = maxWireTime+1, maxWireTime+1 }, ErrInvalid, nil},
		{"empty period not final", func(r *UsageReceipt) { r.To, r.IssuedAt = r.From, r.From }, ErrInvalid, nil},
		{"billed shorter than the period", func(r *UsageReceipt) { r.Billed = Millis(r.To-r.From) - 1 }, ErrInvalid, nil},
		{"billed longer than a lease", func(r *UsageReceipt) { r.Billed = MillisOf(MaxLeaseLength) + 1 }, ErrInvalid, nil},
		{"negative instance time", func(r *UsageReceipt) { r.Usage.InstanceMs = -1 }, ErrInvalid, nil},
		{"negative cpu time", func(r *UsageReceipt) { r.Usage.CPUMs = -1 }, ErrInvalid, nil},
		{"negative amount", func(r *UsageReceipt) { r.Amount = -1 }, ErrInvalid, nil},
		{"amount above total", func(r *UsageReceipt) { r.Amount = r.Total + 1 }, ErrInvalid, nil},
		{"lowercase currency", func(r *UsageReceipt) { r.Currency = "usd" }, ErrInvalid, nil},
		{"no currency", func(r *UsageReceipt) { r.Currency = "" }, ErrInvalid, nil},
		{"endpoint with newline", func(r *UsageReceipt) { r.Endpoint = "127.0.0.1:80\n" }, ErrInvalid, nil},
		{"endpoint too long", func(r *UsageReceipt) { r.Endpoint = strings.Repeat("a", MaxEndpointLen+1) }, ErrInvalid, nil},
		{"issued before the period ends", func(r *UsageReceipt) { r.IssuedAt = r.To - 1 }, ErrInvalid, nil},
		{"issued in the far future", func(r *UsageReceipt) { r.IssuedAt = TimeOf(now.Add(time.Hour)) }, ErrFarFuture, nil},
		{"period ends in the far future", func(r *UsageReceipt) {
			r.To = TimeOf(now.Add(time.Hour))
			r.IssuedAt = r.To
			r.Billed = rs[0].Billed + Millis(r.To-r.From)
		}, ErrFarFuture, nil},
		{"seller is buyer", func(r *UsageReceipt) { r.Buyer = r.Seller }, ErrInvalid, nil},
		{"no seller", func(r *UsageReceipt) { r.Seller = "" }, ErrInvalid, ErrMalformed},
		{"no lease", func(r *UsageReceipt) { r.Lease = Link{} }, ErrInvalid, nil},
		{"unknown version", func(r *UsageReceipt) { r.Version = 2 }, ErrUnknownVersion, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mut(r)
			checkErr(t, r.ValidateFields(now, f.lim), tc.want)
			// Through the wire, where the record encodes at all.
			b, err := Marshal(r)
			if err != nil {
				if tc.want == nil {
					t.Fatal(err)
				}
				return
			}
			d, err := DecodeUsageReceipt(b)
			if err == nil {
				err = d.ValidateFields(now, f.lim)
			}
			if tc.wire != nil {
				checkErr(t, err, tc.wire)
			} else {
				checkErr(t, err, tc.want)
			}
		})
	}
}

// nonCanonical encodes v with the struct's fields in declaration order,
// which is not DAG-CBOR's length-first key order.
func nonCanonical(t testing.TB, v any) []byte {
	t.Helper()
	em, err := cbor.EncOptions{Sort: cbor.SortNone}.EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSettleDecodersRefuseBadBytes(t *testing.T) {
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000, 60_000)
	ack := f.ack(t, rs[1], ids[1])
	d := &Dispute{Version: DisputeVersion, Buyer: f.buyer, Seller: f.seller, Lease: Link{f.id},
		Receipt: Link{ids[1]}, Seq: 2, Reason: DisputeGap, Detail: "x", At: rs[1].IssuedAt}
	mustSign(t, d, f.buyerKey)
	set := f.settlement(rs[1], ids[1], rs[1], ids[1])
	claim := &Claim{Version: ClaimVersion, Seller: f.seller, Lease: *f.lease, Receipt: rs[1], Ack: ack,
		Amount: rs[1].Total, Currency: "USD", At: TimeOf(f.at)}
	mustSign(t, claim, f.sellerKey)

	decoders := []struct {
		name   string
		record any
		max    int
		decode func([]byte) error
	}{
		{"usage receipt", rs[1], MaxReceiptSize, func(b []byte) error { _, err := DecodeUsageReceipt(b); return err }},
		{"receipt ack", ack, MaxAckSize, func(b []byte) error { _, err := DecodeReceiptAck(b); return err }},
		{"dispute", d, MaxDisputeSize, func(b []byte) error { _, err := DecodeDispute(b); return err }},
		{"settlement", set, MaxSettlementSize, func(b []byte) error { _, err := DecodeSettlement(b); return err }},
		{"claim", claim, MaxClaimSize, func(b []byte) error { _, err := DecodeClaim(b, f.lim); return err }},
	}
	for _, dc := range decoders {
		t.Run(dc.name, func(t *testing.T) {
			good, err := Marshal(dc.record)
			if err != nil {
				t.Fatal(err)
			}
			if len(good) > dc.max {
				t.Fatalf("sample of %d bytes over the limit %d", len(good), dc.max)
			}
			if err := dc.decode(good); err != nil {
				t.Fatalf("good bytes: %v", err)
			}
			bad := []struct {
				name string
				b    []byte
				want error
			}{
				{"oversize", make([]byte, dc.max+1), ErrTooLarge},
				{"oversize valid prefix", append(append([]byte{}, good...), make([]byte, dc.max+1-len(good))...), ErrTooLarge},
				{"trailing byte", append(append([]byte{}, good...), 0), ErrMalformed},
				{"truncated", good[:len(good)-1], ErrMalformed},
				{"not cbor", []byte("hello"), ErrMalformed},
				{"empty", nil, ErrMalformed},
				{"key order", nonCanonical(t, dc.record), ErrMalformed},
			}
			for _, tc := range bad {
				if err := dc.decode(tc.b); !errors.Is(err, tc.want) {
					t.Errorf("%s: want %v, got %v", tc.name, tc.want, err)
				}
			}
		})
	}

	// An optional prev encoded as null, an unknown field and an integer
	// in a longer form than needed are not canonical.
	r := rs[0]
	type withNull struct {
		UsageReceipt
		Prev *Link `cbor:"prev"`
	}
	if b, err := Marshal(withNull{UsageReceipt: *r}); err != nil {
		t.Fatal(err)
	} else if _, err := DecodeUsageReceipt(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("null prev: want ErrMalformed, got %v", err)
	}
	type withExtra struct {
		UsageReceipt
		X int `cbor:"x"`
	}
	if b, err := Marshal(withExtra{UsageReceipt: *r, X: 1}); err != nil {
		t.Fatal(err)
	} else if _, err := DecodeUsageReceipt(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown field: want ErrMalformed, got %v", err)
	}
	good, _ := Marshal(r)
	// The shortest key, "v" (0x61 0x76), comes first with its value 1
	// (0x01); write the 1 as a two-byte integer (0x18 0x01).
	i := bytes.Index(good, []byte{0x61, 'v', 0x01})
	if i < 0 {
		t.Fatal("version key not found in the encoding")
	}
	long := append(append(append([]byte{}, good[:i+2]...), 0x18, 0x01), good[i+3:]...)
	if _, err := DecodeUsageReceipt(long); !errors.Is(err, ErrMalformed) {
		t.Errorf("non-minimal integer: want ErrMalformed, got %v", err)
	}

	// Unknown versions are refused at decode.
	versions := []struct {
		name   string
		bytes  func() []byte
		decode func([]byte) error
	}{
		{"usage receipt", func() []byte { c := *rs[0]; c.Version = 2; return mustSign(t, &c, f.sellerKey) },
			func(b []byte) error { _, err := DecodeUsageReceipt(b); return err }},
		{"receipt ack", func() []byte { c := *ack; c.Version = 2; return mustSign(t, &c, f.buyerKey) },
			func(b []byte) error { _, err := DecodeReceiptAck(b); return err }},
		{"dispute", func() []byte { c := *d; c.Version = 0; return mustSign(t, &c, f.buyerKey) },
			func(b []byte) error { _, err := DecodeDispute(b); return err }},
		{"settlement", func() []byte { c := *set; c.Version = 2; b, _ := Marshal(&c); return b },
			func(b []byte) error { _, err := DecodeSettlement(b); return err }},
		{"claim", func() []byte { c := *claim; c.Version = 2; return mustSign(t, &c, f.sellerKey) },
			func(b []byte) error { _, err := DecodeClaim(b, f.lim); return err }},
	}
	for _, v := range versions {
		if err := v.decode(v.bytes()); !errors.Is(err, ErrUnknownVersion) {
			t.Errorf("%s of an unknown version: want ErrUnknownVersion, got %v", v.name, err)
		}
	}
}

func TestCheckReceipt(t *testing.T) {
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000, 60_000)
	r1, r2 := rs[0], rs[1]
	// redo replaces r with the honest receipt after c.Prev for from..to.
	redo := func(t *testing.T, r *UsageReceipt, c *ChainCheck, from, to Time) {
		*r = *f.next(t, c.Prev, c.PrevID, from, to)
	}
	tests := []struct {
		name string
		// first checks the receipt as the lease's first, else as the
		// third, after r1 and r2.
		first bool
		mut   func(t *testing.T, r *UsageReceipt, c *ChainCheck)
		// sign replaces the seller's signature of r.
		sign func(t *testing.T, r *UsageReceipt)
		now  func() time.Time
		want DisputeReason
	}{
		{name: "honest"},
		{name: "honest first", first: true},
		{name: "final", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Final = true }},
		{name: "final with an empty period", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To, c.Prev.To)
			r.Final = true
		}},
		{name: "ends exactly at the lease's end", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			c.Ends = c.Prev.To + 60_000
			redo(t, r, c, c.Prev.To, c.Ends)
		}},
		{name: "ran less than the period", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Usage.InstanceMs = 1 }},
		{name: "period ends within the clock skew ahead", now: func() time.Time { return (r2.To + 60_000 - 20_000).Std() }},
		{name: "period shorter than the interval", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To, c.Prev.To+59_999)
		}, want: DisputeBadChain},
		{name: "period longer than the interval", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To, c.Prev.To+60_001)
		}, want: DisputeBadChain},
		{name: "final period shorter than the interval", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To, c.Prev.To+1)
			r.Final = true
		}},

		{name: "amount too high", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Amount++ }, want: DisputeOvercharge},
		{name: "amount too low", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Amount-- }, want: DisputeOvercharge},
		{name: "total too high", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Total++; r.Amount++ }, want: DisputeOvercharge},
		{name: "total too low", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Total--; r.Amount-- }, want: DisputeOvercharge},
		{name: "billed more than the chain", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			r.Billed += 1000
			r.Total, _ = Charge(f.lease.Proposal.Price, f.lease.Proposal.Slots, r.Billed)
			r.Amount = r.Total - c.Prev.Total
		}, want: DisputeOvercharge},
		{name: "billed less than the chain", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			r.Billed--
			r.Total, _ = Charge(f.lease.Proposal.Price, f.lease.Proposal.Slots, r.Billed)
			r.Amount = r.Total - c.Prev.Total
		}, want: DisputeOvercharge},
		{name: "first bills more than its period", first: true, mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			r.Billed += 60_000
			r.Total, _ = Charge(f.lease.Proposal.Price, f.lease.Proposal.Slots, r.Billed)
			r.Amount = r.Total
		}, want: DisputeOvercharge},
		{name: "instance ran longer than the period", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			r.Usage.InstanceMs = Millis(r.To-r.From) + 1
		}, want: DisputeOvercharge},
		{name: "instance ran in an empty period", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To, c.Prev.To)
			r.Final, r.Usage.InstanceMs = true, 1
		}, want: DisputeOvercharge},

		{name: "overlaps the previous", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To-1000, c.Prev.To+60_000)
		}, want: DisputeOverlap},
		{name: "overlaps by a millisecond", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To-1, c.Prev.To+60_000)
		}, want: DisputeOverlap},
		{name: "repeats the previous period", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.From, c.Prev.To)
		}, want: DisputeOverlap},
		{name: "gap after the previous", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To+1000, c.Prev.To+60_000)
		}, want: DisputeGap},
		{name: "gap of a millisecond", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To+1, c.Prev.To+60_000)
		}, want: DisputeGap},

		{name: "starts before the lease", first: true, mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, f.start-1000, f.start+59_000)
		}, want: DisputeOutsideLease},
		{name: "ends after the lease", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To, f.ends+1)
		}, want: DisputeOutsideLease},
		{name: "ends after the lease was ended early", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			c.Ends = r.To - 1
		}, want: DisputeOutsideLease},
		{name: "ends in the future", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			c.Ends = f.ends + Time(MillisOf(10*time.Hour))
		}, now: func() time.Time { return r2.To.Std().Add(-time.Second) }, want: DisputeOutsideLease},
		{name: "ends far in the future", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			redo(t, r, c, c.Prev.To, c.Prev.To+Time(MillisOf(2*time.Hour)))
			c.Ends = r.To
		}, now: func() time.Time { return r2.To.Std().Add(time.Minute) }, want: DisputeOutsideLease},

		{name: "forged", sign: func(t *testing.T, r *UsageReceipt) { forge(t, r, f.otherKey) }, want: DisputeBadChain},
		{name: "signature verified by the caller is not checked again",
			mut:  func(t *testing.T, r *UsageReceipt, c *ChainCheck) { c.Verified = true },
			sign: func(t *testing.T, r *UsageReceipt) { forge(t, r, f.otherKey) }},
		{name: "signed by the buyer", sign: func(t *testing.T, r *UsageReceipt) { forge(t, r, f.buyerKey) }, want: DisputeBadChain},
		{name: "unsigned", sign: func(t *testing.T, r *UsageReceipt) { r.Sig = nil }, want: DisputeBadChain},
		{name: "changed after signing", sign: func(t *testing.T, r *UsageReceipt) {
			mustSign(t, r, f.sellerKey)
			r.Usage.CPUMs++
		}, want: DisputeBadChain},
		{name: "another lease", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Lease = testCID("another lease") }, want: DisputeBadChain},
		{name: "another seller", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Seller = f.other },
			sign: func(t *testing.T, r *UsageReceipt) { mustSign(t, r, f.otherKey) }, want: DisputeBadChain},
		{name: "another buyer", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Buyer = f.other }, want: DisputeBadChain},
		{name: "another currency", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Currency = "EUR" }, want: DisputeBadChain},
		{name: "seq skipped", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Seq = 4 }, want: DisputeBadChain},
		{name: "seq repeated", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Seq = 2 }, want: DisputeBadChain},
		{name: "prev names another receipt", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			r.Prev = &Link{ids[0]}
		}, want: DisputeBadChain},
		{name: "prev names nothing known", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			l := testCID("nothing")
			r.Prev = &l
		}, want: DisputeBadChain},
		{name: "prev missing", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Prev = nil }, want: DisputeBadChain},
		{name: "after a final receipt", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			fin := *c.Prev
			fin.Final = true
			c.Prev, c.PrevID = &fin, f.sign(t, &fin)
			r.Prev = &Link{c.PrevID}
		}, want: DisputeBadChain},
		{name: "first numbered 2", first: true, mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			l := testCID("prev")
			r.Seq, r.Prev = 2, &l
		}, want: DisputeBadChain},
		{name: "first numbered 0", first: true, mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Seq = 0 }, want: DisputeBadChain},
		{name: "first with a prev", first: true, mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) {
			l := testCID("prev")
			r.Prev = &l
		}, want: DisputeBadChain},
		{name: "unknown version", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Version = 2 }, want: DisputeBadChain},
		{name: "invalid field", mut: func(t *testing.T, r *UsageReceipt, c *ChainCheck) { r.Endpoint = "\x00" }, want: DisputeBadChain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r *UsageReceipt
			var c ChainCheck
			if tc.first {
				c = f.check(nil, cid.Undef)
				r = f.next(t, nil, cid.Undef, r1.From, r1.To)
			} else {
				c = f.check(r2, ids[1])
				r = f.next(t, r2, ids[1], r2.To, r2.To+60_000)
			}
			if tc.mut != nil {
				tc.mut(t, r, &c)
			}
			if tc.sign != nil {
				tc.sign(t, r)
			} else {
				f.sign(t, r)
			}
			now := f.at
			if tc.now != nil {
				now = tc.now()
			}
			err := CheckReceipt(c, r, now, f.lim)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want no dispute, got %v", err)
				}
				return
			}
			var de *DisputeError
			if !errors.As(err, &de) {
				t.Fatalf("want a *DisputeError (%s), got %v", tc.want, err)
			}
			if de.Reason != tc.want {
				t.Fatalf("want %s, got %v", tc.want, err)
			}
			if de.Detail == "" || !strings.HasPrefix(err.Error(), string(tc.want)+": ") {
				t.Fatalf("error %q: want the reason and a detail", err)
			}
		})
	}
}

// A chain of 100 receipts, one per interval and a shorter final one,
// starting at an odd time, checked one by one as a buyer does, passes; the amounts add up to the last total, which is the charge
// of the whole billed time.
func TestCheckReceiptLongChain(t *testing.T) {
	f := newSettleFixture(t, nil)
	var prev *UsageReceipt
	var prevID cid.Cid
	from := f.start + 1234
	var sum int64
	const n = 100
	for i := 1; i <= n; i++ {
		period := Millis(60_000)
		if i == n {
			period = 1234
		}
		r := f.next(t, prev, prevID, from, from+Time(period))
		r.Usage.InstanceMs = period - Millis(i%3)
		r.Final = i == n
		id := f.sign(t, r)
		// Through the wire, as the buyer receives it.
		b, _ := Marshal(r)
		d, err := DecodeUsageReceipt(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckReceipt(f.check(prev, prevID), d, f.at, f.lim); err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		sum += r.Amount
		prev, prevID, from = d, id, r.To
	}
	if sum != prev.Total {
		t.Fatalf("amounts add up to %d, the last total is %d", sum, prev.Total)
	}
	want := bigCharge(f.lease.Proposal.Price.Micro, f.lease.Proposal.Slots, prev.Billed)
	if want.Int64() != prev.Total || prev.Billed != Millis(prev.To-(f.start+1234)) {
		t.Fatalf("last total %d for %v, want %s", prev.Total, prev.Billed.Std(), want)
	}
	// Nothing follows the final receipt.
	r := f.next(t, prev, prevID, prev.To, prev.To+1000)
	f.sign(t, r)
	var de *DisputeError
	if err := CheckReceipt(f.check(prev, prevID), r, f.at, f.lim); !errors.As(err, &de) || de.Reason != DisputeBadChain {
		t.Fatalf("receipt after the final: want %s, got %v", DisputeBadChain, err)
	}
}

func TestDisputeReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range DisputeReasons() {
		if !d.Known() {
			t.Errorf("%s listed but not known", d)
		}
		if err := Reason(d).validateForm(); err != nil {
			t.Errorf("%s: %v", d, err)
		}
		w := d.Words()
		if w == "" || strings.Contains(w, "_") || seen[w] {
			t.Errorf("%s: words %q empty, with underscores or not unique", d, w)
		}
		seen[w] = true
	}
	if len(DisputeReasons()) != len(disputeWords) {
		t.Errorf("DisputeReasons() lists %d, words exist for %d", len(DisputeReasons()), len(disputeWords))
	}
	if DisputeReason("new_reason").Known() {
		t.Error("unknown reason known")
	}
	if w := DisputeReason("new_reason").Words(); w != "disputed (new_reason)" {
		t.Errorf("unknown reason words %q", w)
	}
}

func TestReceiptAckValidate(t *testing.T) {
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000, 60_000)
	r, id := rs[1], ids[1]
	base := func() *ReceiptAck {
		return &ReceiptAck{Version: ReceiptAckVersion, Buyer: f.buyer, Seller: f.seller, Lease: Link{f.id},
			Receipt: Link{id}, Seq: r.Seq, Total: r.Total, At: r.IssuedAt}
	}
	signed := func(mut func(*ReceiptAck)) func() []byte {
		return func() []byte { a := base(); mut(a); return mustSign(t, a, f.buyerKey) }
	}
	tests := []struct {
		name  string
		bytes func() []byte
		want  error
	}{
		{"valid", signed(func(*ReceiptAck) {}), nil},
		{"zero total", signed(func(a *ReceiptAck) { a.Total = 0 }), nil},
		{"seq 0", signed(func(a *ReceiptAck) { a.Seq = 0 }), ErrInvalid},
		{"negative total", signed(func(a *ReceiptAck) { a.Total = -1 }), ErrInvalid},
		{"no time", signed(func(a *ReceiptAck) { a.At = 0 }), ErrInvalid},
		{"no seller", signed(func(a *ReceiptAck) { a.Seller = "" }), ErrMalformed}, // an empty peer ID does not decode
		{"far future", signed(func(a *ReceiptAck) { a.At = TimeOf(f.at.Add(time.Hour)) }), ErrFarFuture},
		{"unknown version", signed(func(a *ReceiptAck) { a.Version = 2 }), ErrUnknownVersion},
		{"forged", func() []byte { return forge(t, base(), f.otherKey) }, ErrBadSignature},
		{"signed by the seller", func() []byte { return forge(t, base(), f.sellerKey) }, ErrBadSignature},
		{"changed after signing", func() []byte {
			a := base()
			mustSign(t, a, f.buyerKey)
			a.Total++
			b, _ := Marshal(a)
			return b
		}, ErrBadSignature},
		{"unsigned", func() []byte { b, _ := Marshal(base()); return b }, ErrBadSignature},
		{"a receipt's signature", func() []byte {
			a := base()
			a.Sig = r.Sig
			b, _ := Marshal(a)
			return b
		}, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := DecodeReceiptAck(tc.bytes())
			if err == nil {
				err = a.Validate(f.at, f.lim)
			}
			checkErr(t, err, tc.want)
		})
	}

	// Acks matches exactly the receipt acknowledged.
	a := f.ack(t, r, id)
	if !a.Acks(id, r) {
		t.Fatal("ack does not ack its receipt")
	}
	other := newParties(t)
	mismatches := []struct {
		name string
		mut  func(*ReceiptAck)
		c    cid.Cid
		r    *UsageReceipt
	}{
		{"another receipt's CID", nil, ids[0], r},
		{"another receipt", nil, id, rs[0]},
		{"seq", func(a *ReceiptAck) { a.Seq++ }, id, r},
		{"total", func(a *ReceiptAck) { a.Total-- }, id, r},
		{"lease", func(a *ReceiptAck) { a.Lease = testCID("another lease") }, id, r},
		{"buyer", func(a *ReceiptAck) { a.Buyer = other.buyer }, id, r},
		{"seller", func(a *ReceiptAck) { a.Seller = other.seller }, id, r},
		{"receipt link", func(a *ReceiptAck) { a.Receipt = Link{ids[0]} }, id, r},
	}
	for _, m := range mismatches {
		c := *a
		if m.mut != nil {
			m.mut(&c)
		}
		if c.Acks(m.c, m.r) {
			t.Errorf("%s differs, but Acks is true", m.name)
		}
	}
}

func TestDisputeValidate(t *testing.T) {
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000)
	base := func() *Dispute {
		return &Dispute{Version: DisputeVersion, Buyer: f.buyer, Seller: f.seller, Lease: Link{f.id},
			Receipt: Link{ids[0]}, Seq: 1, Reason: DisputeOvercharge,
			Detail: "receipt 1: amount 7, total 7; want 6", At: rs[0].IssuedAt}
	}
	signed := func(mut func(*Dispute)) func() []byte {
		return func() []byte { d := base(); mut(d); return mustSign(t, d, f.buyerKey) }
	}
	type tcase struct {
		name  string
		bytes func() []byte
		want  error
	}
	tests := []tcase{
		{"unknown but well-formed reason", signed(func(d *Dispute) { d.Reason = "too_slow_2" }), nil},
		{"empty detail", signed(func(d *Dispute) { d.Detail = "" }), nil},
		{"detail with newline and tab", signed(func(d *Dispute) { d.Detail = "a\n\tb" }), nil},
		{"bad reason form", signed(func(d *Dispute) { d.Reason = "Over Charge" }), ErrInvalid},
		{"empty reason", signed(func(d *Dispute) { d.Reason = "" }), ErrInvalid},
		{"reason too long", signed(func(d *Dispute) { d.Reason = DisputeReason(strings.Repeat("a", 65)) }), ErrInvalid},
		{"detail too long", signed(func(d *Dispute) { d.Detail = strings.Repeat("x", MaxDetailLen+1) }), ErrInvalid},
		{"detail with escape", signed(func(d *Dispute) { d.Detail = "\x1b[2J" }), ErrInvalid},
		{"seq 0", signed(func(d *Dispute) { d.Seq = 0 }), ErrInvalid},
		{"no time", signed(func(d *Dispute) { d.At = 0 }), ErrInvalid},
		{"far future", signed(func(d *Dispute) { d.At = TimeOf(f.at.Add(time.Hour)) }), ErrFarFuture},
		{"unknown version", signed(func(d *Dispute) { d.Version = 2 }), ErrUnknownVersion},
		{"forged", func() []byte { return forge(t, base(), f.otherKey) }, ErrBadSignature},
		{"by the seller", func() []byte { return forge(t, base(), f.sellerKey) }, ErrBadSignature},
		{"changed after signing", func() []byte {
			d := base()
			mustSign(t, d, f.buyerKey)
			d.Reason = DisputeGap
			b, _ := Marshal(d)
			return b
		}, ErrBadSignature},
	}
	for _, reason := range DisputeReasons() {
		reason := reason
		tests = append(tests, tcase{"reason " + string(reason), signed(func(d *Dispute) { d.Reason = reason }), nil})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DecodeDispute(tc.bytes())
			if err == nil {
				err = d.Validate(f.at, f.lim)
			}
			checkErr(t, err, tc.want)
		})
	}
}

// settlement is the settlement of the chain up to head, acknowledged up
// to acked (either may be nil), unsigned.
func (f *settleFixture) settlement(head *UsageReceipt, headID cid.Cid, acked *UsageReceipt, ackedID cid.Cid) *Settlement {
	s := &Settlement{Version: SettlementVersion, Lease: Link{f.id}, Seller: f.seller, Buyer: f.buyer,
		Currency: "USD", State: SettlementSettled, At: TimeOf(f.at)}
	if head != nil {
		s.Head, s.HeadSeq, s.HeadTotal = &Link{headID}, head.Seq, head.Total
	}
	if acked != nil {
		s.Acked, s.AckedSeq, s.Total = &Link{ackedID}, acked.Seq, acked.Total
	}
	if s.AckedSeq != s.HeadSeq {
		s.State = SettlementDisputed
	}
	return s
}

func signBoth(t testing.TB, f *settleFixture, s *Settlement) []byte {
	t.Helper()
	if _, err := SignSettlement(s, f.sellerKey); err != nil {
		t.Fatal(err)
	}
	b, err := SignSettlement(s, f.buyerKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSettlementSign(t *testing.T) {
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000, 60_000)
	base := func() *Settlement { return f.settlement(rs[1], ids[1], rs[1], ids[1]) }

	b := signBoth(t, f, base())
	s, err := DecodeSettlement(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(f.at, f.lim); err != nil {
		t.Fatalf("signed by both: %v", err)
	}
	if !s.SignedBy(f.seller) || !s.SignedBy(f.buyer) || s.SignedBy(f.other) || s.SignedBy("") {
		t.Fatal("SignedBy wrong for a settlement signed by both")
	}
	if c, err := s.CID(); err != nil || c != CIDOf(b) {
		t.Fatalf("CID %s, %v: want the CID of its bytes", c, err)
	}

	// The order of signing does not matter: both sign the same payload.
	s2 := base()
	if _, err := SignSettlement(s2, f.buyerKey); err != nil {
		t.Fatal(err)
	}
	if !s2.SignedBy(f.buyer) || s2.SignedBy(f.seller) {
		t.Fatal("SignedBy wrong after the buyer alone signed")
	}
	b2, err := SignSettlement(s2, f.sellerKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatal("signing in the other order gives other bytes")
	}
	// The payload leaves both signatures out.
	p1, _ := SettlementPayload(s)
	p2, _ := SettlementPayload(base())
	if !bytes.Equal(p1, p2) || !bytes.HasPrefix(p1, []byte(SettlementDomain+"\x00")) {
		t.Fatal("the payload depends on the signatures or lacks the domain")
	}

	// A third key cannot sign, and signing nothing changes.
	s3 := base()
	if _, err := SignSettlement(s3, f.otherKey); err == nil {
		t.Fatal("a third party's key signed the settlement")
	}
	if s3.SellerSig != nil || s3.BuyerSig != nil {
		t.Fatal("a refused signature was kept")
	}

	tests := []struct {
		name string
		mut  func(*Settlement)
	}{
		{"seller's missing", func(s *Settlement) { s.SellerSig = nil }},
		{"buyer's missing", func(s *Settlement) { s.BuyerSig = nil }},
		{"neither", func(s *Settlement) { s.SellerSig, s.BuyerSig = nil, nil }},
		{"seller's forged", func(s *Settlement) {
			p, _ := SettlementPayload(s)
			s.SellerSig, _ = f.otherKey.Sign(p)
		}},
		{"buyer's forged", func(s *Settlement) {
			p, _ := SettlementPayload(s)
			s.BuyerSig, _ = f.otherKey.Sign(p)
		}},
		{"buyer's signature in the seller's place", func(s *Settlement) { s.SellerSig = s.BuyerSig }},
		{"signatures swapped", func(s *Settlement) { s.SellerSig, s.BuyerSig = s.BuyerSig, s.SellerSig }},
		{"seller's over another domain", func(s *Settlement) {
			enc, _ := Marshal(&Settlement{Version: s.Version, Lease: s.Lease, Seller: s.Seller, Buyer: s.Buyer,
				Head: s.Head, HeadSeq: s.HeadSeq, HeadTotal: s.HeadTotal, Acked: s.Acked, AckedSeq: s.AckedSeq,
				Total: s.Total, Currency: s.Currency, Disputes: s.Disputes, State: s.State, At: s.At})
			s.SellerSig, _ = f.sellerKey.Sign(append([]byte(ClaimDomain+"\x00"), enc...))
		}},
		{"changed after signing", func(s *Settlement) { s.At-- }},
		{"totals raised after signing", func(s *Settlement) { s.Total++; s.HeadTotal++ }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			signBoth(t, f, s)
			tc.mut(s)
			b, err := Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			d, err := DecodeSettlement(b)
			if err == nil {
				err = d.Validate(f.at, f.lim)
			}
			checkErr(t, err, ErrBadSignature)
		})
	}
}

func TestSettlementValidateFields(t *testing.T) {
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000, 60_000, 60_000)
	head, headID := rs[2], ids[2]
	dispute := testCID("dispute")
	settled := func() *Settlement { return f.settlement(head, headID, head, headID) }
	disputed := func() *Settlement {
		s := f.settlement(head, headID, rs[1], ids[1])
		s.Disputes = []Link{dispute}
		return s
	}
	tests := []struct {
		name string
		base func() *Settlement
		mut  func(*Settlement)
		want error
	}{
		{"settled", settled, nil, nil},
		{"settled without receipts", func() *Settlement { return f.settlement(nil, cid.Undef, nil, cid.Undef) }, nil, nil},
		{"disputed", disputed, nil, nil},
		{"disputed without a dispute named", disputed, func(s *Settlement) { s.Disputes = nil }, nil},
		{"disputed, nothing acknowledged", func() *Settlement { return f.settlement(head, headID, nil, cid.Undef) }, nil, nil},
		{"disputed, all acknowledged, a dispute named", settled, func(s *Settlement) {
			s.State, s.Disputes = SettlementDisputed, []Link{dispute}
		}, nil},
		{"disputed, another receipt acknowledged at the head's number", settled, func(s *Settlement) {
			s.State, s.Acked = SettlementDisputed, &Link{ids[1]}
		}, nil},
		{"most disputes", disputed, func(s *Settlement) {
			s.Disputes = nil
			for i := 0; i < MaxSettlementDisputes; i++ {
				s.Disputes = append(s.Disputes, testCID("d"+string(rune('a'+i))))
			}
		}, nil},
		{"at within the clock skew ahead", settled, func(s *Settlement) { s.At = TimeOf(f.at.Add(20 * time.Second)) }, nil},

		{"settled, acknowledged less than the head", settled, func(s *Settlement) {
			s.Acked, s.AckedSeq, s.Total = &Link{ids[1]}, 2, rs[1].Total
		}, ErrInvalid},
		{"settled, nothing acknowledged", settled, func(s *Settlement) { s.Acked, s.AckedSeq, s.Total = nil, 0, 0 }, ErrInvalid},
		{"settled with a dispute", settled, func(s *Settlement) { s.Disputes = []Link{dispute} }, ErrInvalid},
		{"settled, total below the head's", settled, func(s *Settlement) { s.Total-- }, ErrInvalid},
		{"settled, another receipt at the head's number", settled, func(s *Settlement) { s.Acked = &Link{ids[1]} }, ErrInvalid},
		{"disputed without a difference", settled, func(s *Settlement) { s.State = SettlementDisputed }, ErrInvalid},
		{"disputed without receipts or disputes", func() *Settlement { return f.settlement(nil, cid.Undef, nil, cid.Undef) },
			func(s *Settlement) { s.State = SettlementDisputed }, ErrInvalid},
		{"acknowledged beyond the head", disputed, func(s *Settlement) { s.AckedSeq = 4 }, ErrInvalid},
		{"acknowledged without a head", func() *Settlement { return f.settlement(nil, cid.Undef, head, headID) }, nil, ErrInvalid},
		{"total beyond the head's", disputed, func(s *Settlement) { s.Total = s.HeadTotal + 1 }, ErrInvalid},
		{"negative total", disputed, func(s *Settlement) { s.Total = -1 }, ErrInvalid},
		{"head without its number", settled, func(s *Settlement) { s.HeadSeq = 0 }, ErrInvalid},
		{"head number without a head", settled, func(s *Settlement) { s.Head = nil }, ErrInvalid},
		{"acked without its number", disputed, func(s *Settlement) { s.AckedSeq = 0 }, ErrInvalid},
		{"acked number without an acked", disputed, func(s *Settlement) { s.Acked = nil }, ErrInvalid},
		// Total is the acknowledged receipt's running total and HeadTotal
		// the head's: without the receipt, there is no total.
		{"a total without an acknowledged receipt", disputed, func(s *Settlement) {
			s.Acked, s.AckedSeq = nil, 0
		}, ErrInvalid},
		{"a head total without a head", func() *Settlement { return f.settlement(nil, cid.Undef, nil, cid.Undef) },
			func(s *Settlement) { s.HeadTotal, s.Total = 500, 500 }, ErrInvalid},
		{"too many disputes", disputed, func(s *Settlement) {
			for i := 0; i < MaxSettlementDisputes; i++ {
				s.Disputes = append(s.Disputes, testCID("d"+string(rune('a'+i))))
			}
		}, ErrInvalid},
		{"unknown state", settled, func(s *Settlement) { s.State = "paid" }, ErrInvalid},
		{"no state", settled, func(s *Settlement) { s.State = "" }, ErrInvalid},
		{"bad currency", settled, func(s *Settlement) { s.Currency = "US" }, ErrInvalid},
		{"seller is buyer", settled, func(s *Settlement) { s.Buyer = s.Seller }, ErrInvalid},
		{"no buyer", settled, func(s *Settlement) { s.Buyer = "" }, ErrInvalid},
		{"no lease", settled, func(s *Settlement) { s.Lease = Link{} }, ErrInvalid},
		{"no time", settled, func(s *Settlement) { s.At = 0 }, ErrInvalid},
		{"far future", settled, func(s *Settlement) { s.At = TimeOf(f.at.Add(time.Hour)) }, ErrFarFuture},
		{"unknown version", settled, func(s *Settlement) { s.Version = 2 }, ErrUnknownVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.base()
			if tc.mut != nil {
				tc.mut(s)
			}
			checkErr(t, s.ValidateFields(f.at, f.lim), tc.want)
			// Signed by both (where both can sign), the whole validation
			// agrees.
			if _, err := Marshal(s); err != nil {
				return
			}
			if _, err := SignSettlement(s, f.sellerKey); err != nil {
				return
			}
			if _, err := SignSettlement(s, f.buyerKey); err != nil {
				return
			}
			checkErr(t, s.Validate(f.at, f.lim), tc.want)
		})
	}
}

// claim is the seller's signed claim on f's lease with receipt r and its
// ack a as evidence (both nil for none), for amount.
func (f *settleFixture) claim(t testing.TB, r *UsageReceipt, a *ReceiptAck, amount int64) *Claim {
	t.Helper()
	c := &Claim{Version: ClaimVersion, Seller: f.seller, Lease: *f.lease, Receipt: r, Ack: a,
		Amount: amount, Currency: f.lease.Proposal.Price.Currency, At: TimeOf(f.at)}
	if r != nil {
		c.HeadTotal = r.Total
	}
	mustSign(t, c, f.sellerKey)
	return c
}

// decodeValidateClaim sends c through the wire and validates it.
func decodeValidateClaim(t *testing.T, f *settleFixture, c *Claim) error {
	t.Helper()
	b, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeClaim(b, f.lim)
	if err != nil {
		return err
	}
	return d.Validate(f.at, f.lim)
}

func TestClaimBound(t *testing.T) {
	f := newSettleFixture(t, nil)
	pr := f.lease.Proposal
	interval, length := pr.ReceiptInterval, pr.Length
	charge := func(ms Millis) int64 { return bigCharge(pr.Price.Micro, pr.Slots, ms).Int64() }
	acked := func(billed Millis, final bool) *UsageReceipt {
		return &UsageReceipt{Billed: billed, Total: charge(billed), Final: final}
	}
	short := newSettleFixture(t, func(p *LeaseProposal) { p.Length = MillisOf(30 * time.Second) })
	tests := []struct {
		name  string
		lease *Lease
		acked *UsageReceipt
		want  int64
	}{
		{"no receipt: one interval", f.lease, nil, charge(interval)},
		{"one interval past the acknowledged", f.lease, acked(10*60_000+17, false), charge(10*60_000 + 17 + interval)},
		{"final: the acknowledged total", f.lease, acked(10*60_000+17, true), charge(10*60_000 + 17)},
		{"final at the length", f.lease, acked(length, true), charge(length)},
		{"capped by the length", f.lease, acked(length-interval/2, false), charge(length)},
		{"just within the length", f.lease, acked(length-interval, false), charge(length)},
		{"at the length: nothing more", f.lease, acked(length, false), charge(length)},
		{"renewed: one interval past the chain", f.lease, acked(length+1, false), charge(length + 1 + interval)},
		{"renewed and final", f.lease, acked(length+MillisOf(time.Hour), true), charge(length + MillisOf(time.Hour))},
		{"lease shorter than an interval", short.lease, nil, charge(MillisOf(30 * time.Second))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ClaimBound(tc.lease, tc.acked)
			if err != nil || got != tc.want {
				t.Fatalf("ClaimBound = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestClaimValidate(t *testing.T) {
	f := newSettleFixture(t, nil)
	pr := f.lease.Proposal
	rs, ids := f.chain(t, 60_000, 59_999, 60_001)
	r, id := rs[1], ids[1]
	a := f.ack(t, r, id)
	bound := bigCharge(pr.Price.Micro, pr.Slots, r.Billed+pr.ReceiptInterval).Int64()
	if got, err := ClaimBound(f.lease, r); err != nil || got != bound {
		t.Fatalf("ClaimBound = %d, %v; want %d", got, err, bound)
	}
	if bound <= r.Total {
		t.Fatal("test lease: one interval costs nothing")
	}
	// The same parties' other lease, with its own receipt and ack.
	g := f.leaseParties.settle(t, func(p *LeaseProposal) { p.Nonce = bytes.Repeat([]byte{8}, NonceSize) })
	grs, gids := g.chain(t, 60_000, 59_999)
	if g.id == f.id {
		t.Fatal("the other lease has the same ID")
	}
	// A final receipt after r, and a lease too short for another interval.
	fin := f.next(t, r, id, r.To, r.To+30_000)
	fin.Final = true
	finID := f.sign(t, fin)
	short := f.leaseParties.settle(t, func(p *LeaseProposal) {
		p.Nonce = bytes.Repeat([]byte{9}, NonceSize)
		p.Length = 150_000
	})
	srs, sids := short.chain(t, 60_000, 59_999) // billed 119999 of 150000

	otherAck := &ReceiptAck{Version: ReceiptAckVersion, Buyer: f.other, Seller: f.seller, Lease: r.Lease,
		Receipt: Link{id}, Seq: r.Seq, Total: r.Total, At: r.IssuedAt}
	mustSign(t, otherAck, f.otherKey)
	forgedAck := &ReceiptAck{Version: ReceiptAckVersion, Buyer: f.buyer, Seller: f.seller, Lease: r.Lease,
		Receipt: Link{id}, Seq: r.Seq, Total: r.Total, At: r.IssuedAt}
	forge(t, forgedAck, f.otherKey)
	forgedReceipt := *r
	forge(t, &forgedReceipt, f.otherKey)

	tests := []struct {
		name  string
		claim func() *Claim
		want  error
	}{
		{"exactly the bound", func() *Claim { return f.claim(t, r, a, bound) }, nil},
		{"the acknowledged total", func() *Claim { return f.claim(t, r, a, r.Total) }, nil},
		{"bound plus one", func() *Claim { return f.claim(t, r, a, bound+1) }, ErrClaimTooHigh},
		{"below the acknowledged total", func() *Claim { return f.claim(t, r, a, r.Total-1) }, ErrInvalid},
		{"no receipt: one interval", func() *Claim {
			return f.claim(t, nil, nil, bigCharge(pr.Price.Micro, pr.Slots, pr.ReceiptInterval).Int64())
		}, nil},
		{"no receipt: one interval plus one", func() *Claim {
			return f.claim(t, nil, nil, bigCharge(pr.Price.Micro, pr.Slots, pr.ReceiptInterval).Int64()+1)
		}, ErrClaimTooHigh},
		{"no receipt: nothing", func() *Claim { return f.claim(t, nil, nil, 0) }, nil},
		{"no receipt: negative", func() *Claim { return f.claim(t, nil, nil, -1) }, ErrInvalid},
		{"final: the acknowledged total", func() *Claim { return f.claim(t, fin, f.ack(t, fin, finID), fin.Total) }, nil},
		{"final: one more", func() *Claim { return f.claim(t, fin, f.ack(t, fin, finID), fin.Total+1) }, ErrClaimTooHigh},
		{"capped by the length", func() *Claim {
			c := short.claim(t, srs[1], short.ack(t, srs[1], sids[1]), bigCharge(pr.Price.Micro, pr.Slots, 150_000).Int64())
			return c
		}, nil},
		{"capped by the length: one more", func() *Claim {
			return short.claim(t, srs[1], short.ack(t, srs[1], sids[1]), bigCharge(pr.Price.Micro, pr.Slots, 150_000).Int64()+1)
		}, ErrClaimTooHigh},

		{"receipt of another lease", func() *Claim { return f.claim(t, grs[1], g.ack(t, grs[1], gids[1]), bound) }, ErrInvalid},
		{"ack by another key", func() *Claim { return f.claim(t, r, otherAck, bound) }, ErrInvalid},
		{"ack forged", func() *Claim { return f.claim(t, r, forgedAck, bound) }, ErrBadSignature},
		{"ack of another receipt", func() *Claim { return f.claim(t, r, f.ack(t, rs[0], ids[0]), bound) }, ErrInvalid},
		{"ack of another lease's receipt", func() *Claim { return f.claim(t, r, g.ack(t, grs[1], gids[1]), bound) }, ErrInvalid},
		{"receipt forged", func() *Claim { return f.claim(t, &forgedReceipt, a, bound) }, ErrBadSignature},
		{"receipt without its ack", func() *Claim { return f.claim(t, r, nil, bound) }, ErrInvalid},
		{"ack without its receipt", func() *Claim { return f.claim(t, nil, a, bound) }, ErrInvalid},
		{"receipt invalid", func() *Claim {
			bad := *r
			bad.Currency = "usd"
			rid := f.sign(t, &bad)
			return f.claim(t, &bad, f.ack(t, &bad, rid), bound)
		}, ErrInvalid},
		{"another currency", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.Currency = "EUR"
			mustSign(t, c, f.sellerKey)
			return c
		}, ErrInvalid},
		{"claimed by a third party", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.Seller = f.other
			mustSign(t, c, f.otherKey)
			return c
		}, ErrInvalid},
		{"claimed by the buyer", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.Seller = f.buyer
			mustSign(t, c, f.buyerKey)
			return c
		}, ErrInvalid},
		{"claim forged", func() *Claim {
			c := f.claim(t, r, a, bound)
			forge(t, c, f.otherKey)
			return c
		}, ErrBadSignature},
		{"claim unsigned", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.Sig = nil
			return c
		}, ErrBadSignature},
		{"lease changed", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.Lease.Proposal.ReceiptInterval *= 2
			mustSign(t, c, f.sellerKey)
			return c
		}, ErrBadSignature},
		{"empty head", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.Head = &Link{} // cannot be signed: checked before the signature
			return c
		}, ErrInvalid},
		{"no time", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.At = 0
			mustSign(t, c, f.sellerKey)
			return c
		}, ErrInvalid},
		{"far future", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.At = TimeOf(f.at.Add(time.Hour))
			mustSign(t, c, f.sellerKey)
			return c
		}, ErrFarFuture},
		{"unknown version", func() *Claim {
			c := f.claim(t, r, a, bound)
			c.Version = 2
			mustSign(t, c, f.sellerKey)
			return c
		}, ErrUnknownVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.claim()
			err := c.Validate(f.at, f.lim)
			checkErr(t, err, tc.want)
			if tc.want != ErrClaimTooHigh && errors.Is(err, ErrClaimTooHigh) {
				t.Fatalf("want %v, not ErrClaimTooHigh: %v", tc.want, err)
			}
			if errors.Is(tc.want, ErrClaimTooHigh) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("ErrClaimTooHigh is not an ErrInvalid: %v", err)
			}
			if b, err := Marshal(c); err == nil {
				if len(b) > MaxClaimSize {
					t.Fatalf("claim of %d bytes, limit %d", len(b), MaxClaimSize)
				}
				checkErr(t, decodeValidateClaim(t, f, c), tc.want)
			}
		})
	}
}

// Settlement-record signatures never verify as another record type's.
func TestSettleDomainsDistinct(t *testing.T) {
	domains := []string{OfferDomain, LeaseProposalDomain, LeaseDomain, LeaseRejectionDomain,
		LeaseRenewalDomain, LeaseExtensionDomain, LeaseEndDomain,
		UsageReceiptDomain, ReceiptAckDomain, DisputeDomain, SettlementDomain, ClaimDomain}
	seen := map[string]bool{}
	for _, d := range domains {
		if seen[d] {
			t.Fatalf("domain %s used twice", d)
		}
		seen[d] = true
	}
	f := newSettleFixture(t, nil)
	rs, ids := f.chain(t, 60_000)
	a := f.ack(t, rs[0], ids[0])
	// The ack's signature presented as a dispute's does not verify.
	d := &Dispute{Version: DisputeVersion, Buyer: f.buyer, Seller: f.seller, Lease: a.Lease, Receipt: a.Receipt,
		Seq: a.Seq, Reason: DisputeGap, At: a.At, Sig: a.Sig}
	if err := VerifySignature(d); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("an ack's signature verified as a dispute's: %v", err)
	}
}
