package settle

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// chain signs n receipts of a lease, one interval each from since.
func chain(tb testing.TB, seller *party, l *Lease, since time.Time, n int, interval time.Duration) [][]byte {
	tb.Helper()
	st := newState(true, l)
	st.To = protocol.TimeOf(since)
	out := make([][]byte, 0, n)
	svc := &Service{self: seller.id, key: seller.key}
	for i := 0; i < n; i++ {
		raw, err := svc.issue(l, st, st.To+protocol.Time(interval/time.Millisecond), i == n-1, Usage{}, st.To+protocol.Time(interval/time.Millisecond))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// BenchmarkBuyerReceipts measures the receipts one buyer's node verifies,
// acknowledges and stores durably per second, with 1,000 leases running
// from 8 sellers over real libp2p TCP connections on loopback, 64 streams
// at a time (one receipt per message, as each lease sends its own). It
// reports the machine's single-core ed25519 verify rate beside it.
func BenchmarkBuyerReceipts(b *testing.B) {
	const leases, sellers, senders = 1000, 8, 128
	e := newEnv(b)
	e.clk.Set(time.Now())
	e.tcp = true
	buyer := e.party()
	var sps []*party
	for i := 0; i < sellers; i++ {
		s := e.party()
		if err := s.h.Connect(context.Background(), peer.AddrInfo{ID: buyer.id, Addrs: buyer.h.Addrs()}); err != nil {
			b.Fatal(err)
		}
		sps = append(sps, s)
	}
	tm := defaultTerms()
	tm.length = 24 * time.Hour
	tm.start = e.clk.Now().Add(-time.Hour)
	perLease := b.N/leases + 1
	type lease struct {
		seller *party
		raws   [][]byte
		next   int
	}
	ls := make([]*lease, leases)
	for i := range ls {
		s := sps[i%sellers]
		id := e.dealQuiet(s, buyer, tm)
		l, _ := buyer.leases.Lease(id, false)
		ls[i] = &lease{seller: s, raws: chain(b, s, l, tm.start, perLease, time.Second)}
	}
	var sent atomic.Int64
	work := make(chan *lease, leases)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range work {
				body, _ := encodeMsg([][]byte{l.raws[l.next]})
				_, resp, err := l.seller.roundTrip(context.Background(), buyer.id, string(ReceiptProtocol), appendFrame(nil, tagReceipts, body), tagAnswers)
				if err != nil {
					b.Error(err)
					return
				}
				var as []answer
				if err := storedDec.Unmarshal(resp, &as); err != nil || len(as) != 1 || as[0].Ack == nil {
					b.Errorf("answer %+v, %v", as, err)
					return
				}
				l.next++
				sent.Add(1)
			}
		}()
	}
	for n := 0; n < b.N; {
		for _, l := range ls {
			if n == b.N {
				break
			}
			work <- l
			n++
		}
		if n < b.N {
			// One round per lease at a time, so that receipts of a lease
			// arrive in order.
			for sent.Load() < int64(n) {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	close(work)
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(sent.Load())/el.Seconds(), "receipts/s")
	b.ReportMetric(verifyRate(b), "ed25519-verifies/s")
}

// verifyRate measures single-core ed25519 verifications per second.
func verifyRate(tb testing.TB) float64 {
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	msg := make([]byte, 400)
	sig, _ := k.Sign(msg)
	start := time.Now()
	const n = 5000
	for i := 0; i < n; i++ {
		if ok, _ := k.GetPublic().Verify(msg, sig); !ok {
			tb.Fatal("verify")
		}
	}
	return n / time.Since(start).Seconds()
}

// BenchmarkSettle10k measures reconciling and settling a lease of 10,000
// receipts that both nodes already hold verified: the seller proposes,
// the buyer walks its chain, countersigns and stores, the seller checks
// and stores.
func BenchmarkSettle10k(b *testing.B) {
	const n = 10_000
	e := newEnv(b)
	seller, buyer := e.party(), e.party()
	tm := defaultTerms()
	tm.length = 3 * time.Hour
	tm.start = e.clk.Now()
	id := e.dealQuiet(seller, buyer, tm)
	l, _ := seller.leases.Lease(id, true)
	since := tm.start
	raws := chain(b, seller, l, since, n, time.Second)
	e.clk.Set(since.Add(n * time.Second))
	// Both hold the whole chain, acknowledged.
	for _, p := range []*party{seller, buyer} {
		st := newState(p == seller, l)
		if p == buyer {
			st.Counterparty = seller.id.String()
		}
		for i := 0; i < n; i += 200 {
			err := p.db.Update(func(t *store.Txn) error {
				for j := i; j < i+200; j++ {
					r, _ := protocol.DecodeUsageReceipt(raws[j])
					rc := protocol.CIDOf(raws[j])
					a := &protocol.ReceiptAck{Version: protocol.ReceiptAckVersion, Buyer: buyer.id, Seller: seller.id, Lease: r.Lease,
						Receipt: protocol.Link{Cid: rc}, Seq: r.Seq, Total: r.Total, At: r.IssuedAt}
					ack, err := protocol.Sign(a, buyer.key)
					if err != nil {
						return err
					}
					if err := t.Set(rcptKey(id, r.Seq), raws[j]); err != nil {
						return err
					}
					if err := putAnswer(t, id, r.Seq, ansAck, ack); err != nil {
						return err
					}
					st.Seq, st.Head, st.To, st.Billed, st.Total, st.Final = r.Seq, rc.Bytes(), r.To, r.Billed, r.Total, r.Final
					st.AckedSeq, st.Acked, st.AckedTotal, st.Answered = r.Seq, rc.Bytes(), r.Total, r.Seq
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		st.Ended = st.To
		if err := p.db.Update(func(t *store.Txn) error { return putState(t, id, st) }); err != nil {
			b.Fatal(err)
		}
	}
	reset := func(p *party) {
		if err := p.db.Update(func(t *store.Txn) error {
			st, _, err := getState(t, p == seller, id)
			if err != nil {
				return err
			}
			st.Settlement, st.Status = nil, StatusOpen
			return putState(t, id, st)
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		reset(seller)
		reset(buyer)
		st := sellerState(b, seller, id)
		b.StartTimer()
		if err := seller.proposeSettlement(context.Background(), id, st); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if sm := buyer.summary(id); sm.Status != StatusSettled || sm.Settlement.HeadSeq != n {
		b.Fatalf("buyer: %s over %d", sm.Status, sm.Receipts)
	}
}

// dealQuiet is deal without starting the billing on the seller's side
// (benchmarks drive the receipts themselves).
func (e *env) dealQuiet(seller, buyer *party, tm terms) cid.Cid {
	e.t.Helper()
	nonce := make([]byte, protocol.NonceSize)
	_, _ = rand.Read(nonce)
	p := protocol.LeaseProposal{
		Version: protocol.LeaseProposalVersion, Buyer: buyer.id, Seller: seller.id,
		Offer: protocol.Link{Cid: protocol.CIDOf([]byte("offer"))}, OfferKey: "c4m8",
		Slots: tm.slots, Start: protocol.TimeOf(tm.start), Length: protocol.MillisOf(tm.length),
		Price: tm.price, Appliance: protocol.Link{Cid: protocol.CIDOf([]byte("appliance"))},
		ApplianceSize: 1 << 20, ApplianceFormat: "bundle",
		ReceiptInterval: protocol.MillisOf(tm.interval), PaymentGrace: protocol.MillisOf(tm.grace),
		Nonce: nonce, IssuedAt: protocol.TimeOf(tm.start), ExpiresAt: protocol.TimeOf(tm.start.Add(time.Minute)),
	}
	if _, err := protocol.Sign(&p, buyer.key); err != nil {
		e.t.Fatal(err)
	}
	l := &protocol.Lease{Version: protocol.LeaseVersion, Seller: seller.id, Proposal: p, AcceptedAt: protocol.TimeOf(tm.start)}
	raw, err := protocol.Sign(l, seller.key)
	if err != nil {
		e.t.Fatal(err)
	}
	id := protocol.CIDOf(raw)
	for _, side := range []struct {
		p    *party
		sold bool
	}{{seller, true}, {buyer, false}} {
		side.p.leases.mu.Lock()
		side.p.leases.m[id] = &Lease{ID: id, Sold: side.sold, Lease: l, State: protocol.StateRunning, Ends: tm.start.Add(tm.length)}
		side.p.leases.mu.Unlock()
	}
	return id
}

// BenchmarkBuyerAccept is BenchmarkBuyerReceipts without the transport:
// 64 goroutines hand receipts of 1,000 leases straight to the buyer's
// handler, which verifies, checks, signs the ack and stores it durably
// (grouped commits), so the figure is the buyer node's own capacity on
// this machine, with no load generator sharing its cores.
func BenchmarkBuyerAccept(b *testing.B) {
	const leases, workers = 1000, 64
	e := newEnv(b)
	e.clk.Set(time.Now())
	buyer := e.party()
	var sps []*party
	for i := 0; i < 8; i++ {
		sps = append(sps, e.party())
	}
	tm := defaultTerms()
	tm.length = 24 * time.Hour
	tm.start = e.clk.Now().Add(-time.Hour)
	perLease := 2*b.N/leases + 2 // some workers run ahead of others
	type lease struct {
		id     cid.Cid
		seller *party
		raws   [][]byte
		recs   []*protocol.UsageReceipt
	}
	ls := make([]*lease, leases)
	for i := range ls {
		s := sps[i%len(sps)]
		id := e.dealQuiet(s, buyer, tm)
		l, _ := buyer.leases.Lease(id, false)
		raws := chain(b, s, l, tm.start, perLease, time.Second)
		recs := make([]*protocol.UsageReceipt, len(raws))
		for j, raw := range raws {
			recs[j], _ = protocol.DecodeUsageReceipt(raw)
		}
		ls[i] = &lease{id: id, seller: s, raws: raws, recs: recs}
	}
	if err := buyer.enter(); err != nil {
		b.Fatal(err)
	}
	defer buyer.leave()
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	// Worker w serves leases w, w+64, ...: each lease's receipts stay in order.
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < perLease; round++ {
				for i := w; i < leases; i += workers {
					if next.Add(1) > int64(b.N) {
						return
					}
					l := ls[i]
					out := make([]answer, 1)
					if err := buyer.acceptReceipts(l.seller.id, l.id, l.raws[round:round+1], l.recs[round:round+1], out); err != nil || out[0].Ack == nil {
						b.Errorf("receipt %d of lease %d: %v %+v", round, i, err, out[0])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "receipts/s")
	b.ReportMetric(verifyRate(b), "ed25519-verifies/s")
}
