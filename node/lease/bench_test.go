package lease

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// benchEnv is a TCP env tuned as a node runs: free-slot updates paced.
func benchEnv(b *testing.B) *env {
	e := newTCPEnv(b)
	e.cfg.PublishInterval = time.Second
	e.prodStore = true
	return e
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkLeaseRoundTrip: one buyer proposes to one seller over real TCP
// on loopback, one proposal at a time: from sending the proposal to the
// countersigned lease stored durably at both ends. Beside p50 and p99 it
// reports what the step must cost on this machine, measured in the same
// run, interleaved with the proposals so that both see the same load: two
// synced writes (one in each party's store), two signatures, two
// verifications and one round trip on a new stream, taken one after the
// other; floor_p50 and floor_p99 are the quantiles of their sum.
func BenchmarkLeaseRoundTrip(b *testing.B) {
	e := benchEnv(b)
	s, buyer := e.seller(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 1<<30)
	ctx := context.Background()
	p := params(time.Hour)
	for range 20 { // warm up: connection, caches
		if _, err := buyer.Propose(ctx, o, p); err != nil {
			b.Fatal(err)
		}
	}
	fl := newFloorProbe(b, e, s, buyer)
	defer fl.close()
	lat := make([]time.Duration, 0, b.N)
	var floors []floor
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := buyer.Propose(ctx, o, p); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		floors = append(floors, fl.sample(b))
		b.StartTimer()
	}
	b.StopTimer()
	sum := make([]time.Duration, len(floors))
	var w, sg, v, rtt []time.Duration
	for i, f := range floors {
		sum[i] = f.total()
		w, sg, v, rtt = append(w, f.write), append(sg, f.sign), append(v, f.verify), append(rtt, f.rtt)
	}
	b.ReportMetric(ms(quantile(lat, 0.5)), "p50_ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "p99_ms")
	b.ReportMetric(ms(quantile(sum, 0.5)), "floor_p50_ms")
	b.ReportMetric(ms(quantile(sum, 0.99)), "floor_p99_ms")
	b.ReportMetric(ms(quantile(w, 0.5)), "synced_write_ms")
	b.ReportMetric(ms(quantile(sg, 0.5))*1000, "sign_us")
	b.ReportMetric(ms(quantile(v, 0.5))*1000, "verify_us")
	b.ReportMetric(ms(quantile(rtt, 0.5))*1000, "stream_rtt_us")
	b.ReportMetric(float64(quantile(lat, 0.5))/float64(quantile(sum, 0.5)), "p50/floor")
}

// floor is one measurement of what a lease round trip must cost.
type floor struct {
	write, sign, verify, rtt time.Duration // write, sign, verify: the mean of the two
	sum                      time.Duration
}

func (f floor) total() time.Duration { return f.sum }

const echoProto = "/spotmesh/bench-echo/1"

// floorProbe measures the parts of a lease round trip on the same hosts
// and stores.
type floorProbe struct {
	e        *env
	s, buyer *tnode
	prop     *protocol.LeaseProposal
	val      []byte
	out      []byte
	n        int
}

func newFloorProbe(b *testing.B, e *env, s, buyer *tnode) *floorProbe {
	prop, err := buyer.buildProposal(s.offers.current("main"), offerCID(s.offers.current("main")), params(time.Hour), e.clk.Now())
	if err != nil {
		b.Fatal(err)
	}
	// An echo on a new stream: a proposal's size out, a lease's back.
	s.h.SetStreamHandler(echoProto, func(st network.Stream) {
		defer st.Close()
		buf, _ := io.ReadAll(io.LimitReader(st, 1<<16))
		_, _ = st.Write(buf)
	})
	return &floorProbe{e: e, s: s, buyer: buyer, prop: prop, val: bytes.Repeat([]byte{'x'}, 1500), out: bytes.Repeat([]byte{'p'}, 1300)}
}

func (f *floorProbe) close() { f.s.h.RemoveStreamHandler(echoProto) }

func (f *floorProbe) sample(b *testing.B) floor {
	var out floor
	f.n++
	k := store.Key("bench", fmt.Sprint(f.n))
	for _, n := range []*tnode{f.s, f.buyer} { // a synced write of a lease-sized record in each store
		t0 := time.Now()
		if err := n.db.Update(func(t *store.Txn) error { return t.Set(k, f.val) }); err != nil {
			b.Fatal(err)
		}
		out.write += time.Since(t0)
	}
	for range 2 {
		t0 := time.Now()
		if _, err := protocol.Sign(f.prop, f.buyer.key); err != nil {
			b.Fatal(err)
		}
		out.sign += time.Since(t0)
		t0 = time.Now()
		if err := protocol.VerifySignature(f.prop); err != nil {
			b.Fatal(err)
		}
		out.verify += time.Since(t0)
	}
	t0 := time.Now()
	st, err := f.buyer.h.NewStream(context.Background(), f.s.id, echoProto)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Write(f.out); err != nil {
		b.Fatal(err)
	}
	_ = st.CloseWrite()
	if _, err := io.ReadAll(st); err != nil {
		b.Fatal(err)
	}
	_ = st.Close()
	out.rtt = time.Since(t0)
	out.sum = out.write + out.sign + out.verify + out.rtt
	out.write, out.sign, out.verify = out.write/2, out.sign/2, out.verify/2
	return out
}

// BenchmarkLeasesPerSecond: many buyers propose to one seller at once over
// real TCP; reports the leases the seller grants per second (each stored
// durably at both ends). Target: at least 2,000/s.
func BenchmarkLeasesPerSecond(b *testing.B) {
	const buyers, perBuyer = 2, 60 // 128 proposals in flight
	e := benchEnv(b)
	s := e.seller()
	o := s.offers.add(sampleOffer("main"), 1<<30)
	var bs []*tnode
	for range buyers {
		n := e.buyer()
		if err := n.h.Connect(context.Background(), peer.AddrInfo{ID: s.id, Addrs: s.h.Addrs()}); err != nil {
			b.Fatal(err)
		}
		bs = append(bs, n)
	}
	ctx := context.Background()
	p := params(time.Hour)
	for _, n := range bs { // warm up
		if _, err := n.Propose(ctx, o, p); err != nil {
			b.Fatal(err)
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	t0 := time.Now()
	for _, n := range bs {
		for range perBuyer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					if _, err := n.Propose(ctx, o, p); err != nil {
						if failed.Add(1) == 1 {
							b.Error(err)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	el := time.Since(t0)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d proposals failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "leases/s")
}

// BenchmarkSellerGrants: the seller's side alone, without buyers or
// network: 128 verified-and-signed proposals from 16 buyers in flight at
// once, each checked (signature, offer copy, deny list), decided by the
// capacity owner, countersigned and stored durably with its expiry job.
// It is the rate one seller can grant at when the buyers run elsewhere.
func BenchmarkSellerGrants(b *testing.B) {
	const buyers, inflight = 16, 128
	e := benchEnv(b)
	s := e.seller()
	o := s.offers.add(sampleOffer("main"), 1<<30)
	ob, err := protocol.Marshal(o)
	if err != nil {
		b.Fatal(err)
	}
	type req struct {
		from peer.ID
		raw  []byte
	}
	keys := make([]*tnode, buyers)
	for i := range keys {
		keys[i] = e.key()
	}
	reqs := make([]req, b.N)
	now := e.clk.Now()
	for i := range reqs {
		k := keys[i%buyers]
		prop, err := k.buildProposal(o, protocol.CIDOf(ob), params(time.Hour), now)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := protocol.Sign(prop, k.key)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = req{k.id, raw}
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	b.ResetTimer()
	t0 := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(reqs)) {
					return
				}
				if tag, _ := s.serveProposal(ctx, reqs[i].from, reqs[i].raw, ob); tag != tagLease {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d proposals refused", failed.Load())
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "leases/s")
}
