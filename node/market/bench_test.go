package market

import (
	"crypto/ed25519"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/protocol"
)

// benchSize is the book size of the query benchmark and the memory test.
const benchSize = 100_000

var bench struct {
	once sync.Once
	b    *Book
	sy   synthetic
}

// benchBook is a 100,000-offer book of 1,000 sellers, built once per run.
func benchBook(tb testing.TB) (*Book, synthetic) {
	bench.once.Do(func() {
		clk := newMock()
		sy := makeSynthetic(tb, benchSize, 1000, clk.Now(), false)
		b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
		for i, o := range sy.offers {
			if err := b.Add(o, fakeCID(i), nil); err != nil {
				tb.Fatal(err)
			}
		}
		bench.b, bench.sy = b, sy
	})
	return bench.b, bench.sy
}

// BenchmarkQuery runs representative queries over a 100,000-offer book
// and reports each one's latency percentiles: wall clock, and the CPU time
// of the query's thread, which a machine shared with other work does not
// inflate.
func BenchmarkQuery(b *testing.B) {
	book, sy := benchBook(b)
	usd := func(m int64) protocol.Price { return protocol.Price{Micro: m, Currency: "USD"} }
	queries := []struct {
		name string
		q    Query
	}{
		{"region+vcpu+cap/price", Query{RegionPrefix: "eu", VCPU: Range{Min: 4}, MaxPrice: usd(100_000), Limit: 50}},
		{"nofilter/price", Query{Limit: 50}},
		{"seller/price", Query{Seller: sy.offers[17].Seller, Limit: 50}},
		{"gpu-h100/price", Query{GPUModel: "H100", Limit: 50}},
		{"gpu+region+slots/price", Query{GPUs: Range{Min: 1}, RegionPrefix: "us", MinSlots: 1, Limit: 50}},
		{"profile+region/price", Query{Profile: "c8m16", RegionPrefix: "us-east", MinSlots: 1, Limit: 50}},
		{"region+eur-cap/price", Query{RegionPrefix: "eu-de", MaxPrice: protocol.Price{Micro: 30_000, Currency: "EUR"}, Limit: 50}},
		{"arm64+mem/price", Query{Arch: "arm64", Memory: Range{Min: 16 << 30}, Limit: 50}},
		{"region/vcpu", Query{RegionPrefix: "eu", Sort: SortVCPU, Limit: 50}},
		{"nofilter/newest", Query{Sort: SortNewest, Limit: 50}},
	}
	for _, qq := range queries {
		b.Run(qq.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			wall := make([]time.Duration, 0, b.N)
			cpu := make([]time.Duration, 0, b.N)
			n := 0
			for b.Loop() {
				c0, w0 := threadCPU(), time.Now()
				n = len(book.Query(qq.q))
				wall = append(wall, time.Since(w0))
				cpu = append(cpu, threadCPU()-c0)
			}
			pct := func(d []time.Duration, p float64) float64 {
				slices.Sort(d)
				return float64(d[int(p*float64(len(d)-1))].Nanoseconds()) / 1e3
			}
			b.ReportMetric(pct(wall, 0.50), "p50-µs")
			b.ReportMetric(pct(wall, 0.99), "p99-µs")
			b.ReportMetric(pct(cpu, 0.50), "p50-cpu-µs")
			b.ReportMetric(pct(cpu, 0.99), "p99-cpu-µs")
			b.ReportMetric(float64(n), "results")
		})
	}
}

// addPool is two copies of benchSize offers, each encoded with its CID:
// a round adds the first copies, then supersedes them with the second.
var addPool struct {
	once sync.Once
	v    [2]synthetic
}

func addOffers(tb testing.TB) [2]synthetic {
	addPool.once.Do(func() {
		clk := newMock()
		v1 := makeSynthetic(tb, benchSize, 1000, clk.Now(), true)
		v2 := synthetic{offers: make([]*protocol.Offer, benchSize), raws: make([][]byte, benchSize), cids: make([]cid.Cid, benchSize)}
		for i, o := range v1.offers {
			c := *o
			c.IssuedAt++
			c.Slots = (c.Slots + 1) % 20
			raw, err := protocol.Marshal(&c)
			if err != nil {
				tb.Fatal(err)
			}
			v2.offers[i], v2.raws[i], v2.cids[i] = &c, raw, protocol.CIDOf(raw)
		}
		addPool.v = [2]synthetic{v1, v2}
	})
	return addPool.v
}

// verifier measures this machine's Ed25519 verifications per second of
// CPU, over a message the size of an encoded offer: the limit the receive
// path is measured against. Benchmarks run it in short blocks between
// their own, on the same locked thread, so that both see the same machine
// even when other work shares it.
type verifier struct {
	pub      ed25519.PublicKey
	msg, sig []byte
	cpu      time.Duration
	n        int
}

func newVerifier(tb testing.TB) *verifier {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	msg := make([]byte, 600)
	return &verifier{pub: pub, msg: msg, sig: ed25519.Sign(priv, msg)}
}

func (v *verifier) run(tb testing.TB, k int) {
	c0 := threadCPU()
	for range k {
		if !ed25519.Verify(v.pub, v.msg, v.sig) {
			tb.Fatal("signature does not verify")
		}
	}
	v.cpu += threadCPU() - c0
	v.n += k
}

func (v *verifier) rate() float64 { return float64(v.n) / v.cpu.Seconds() }

// BenchmarkAdd measures offers per second into a book that persists them
// (batched, on its own goroutine) to the in-memory fake: half new offers,
// half newer copies of held ones (at the same price: a republish). It
// reports the wall-clock rate, and the CPU time of Add on the caller's
// thread beside the Ed25519 verify rate of the same thread.
func BenchmarkAdd(b *testing.B) {
	pool := addOffers(b)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v := newVerifier(b)
	newBook := func() *Book {
		bk := NewBook(DefaultConfig(), newMemPersister(), newMock(), protocol.DefaultLimits(), nil)
		if err := bk.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
		return bk
	}
	book := newBook()
	const block = 1000
	var wall, cpu time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		if i > 0 && i%(2*benchSize) == 0 {
			_ = book.Close()
			book = newBook()
		}
		v.run(b, 50)
		b.StartTimer()
		w0, c0 := time.Now(), threadCPU()
		for end := min(i+block, b.N); i < end; i++ {
			k := i % (2 * benchSize)
			sy, j := &pool[k/benchSize], k%benchSize
			if err := book.Add(sy.offers[j], sy.cids[j], sy.raws[j]); err != nil {
				b.Fatal(err)
			}
		}
		cpu += threadCPU() - c0
		wall += time.Since(w0)
	}
	b.StopTimer()
	_ = book.Close()
	addRate := float64(b.N) / cpu.Seconds()
	b.ReportMetric(float64(b.N)/wall.Seconds(), "offers/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "add-cpu-µs")
	b.ReportMetric(v.rate(), "ed25519/s")
	b.ReportMetric(addRate/v.rate(), "add/ed25519")
}

// BenchmarkReceivePath measures what the node does with each offer that
// arrives: decode, validate (signature included), name, Check and Add. It
// reports the path's rate per second of CPU as a fraction of the Ed25519
// verify rate of the same thread (the target is 0.7 or more), and the
// book's share (Check and Add) of the path.
func BenchmarkReceivePath(b *testing.B) {
	const n = 20_000
	now := t0
	sellers := make([]seller, 50)
	for i := range sellers {
		sellers[i] = newSeller(b)
	}
	offers := makeSigned(b, sellers, n, now, func(i int, o *protocol.Offer) {
		o.Region = synthRegions[i%len(synthRegions)]
		o.Price.Micro = int64(10_000 + i)
	})
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v := newVerifier(b)
	lim := protocol.DefaultLimits()
	clk := newMock()
	newBook := func() *Book {
		bk := NewBook(DefaultConfig(), newMemPersister(), clk, lim, nil)
		if err := bk.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
		return bk
	}
	book := newBook()
	const block = 200
	var cpu, inBook time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		if i > 0 && i%n == 0 {
			_ = book.Close()
			book = newBook()
		}
		v.run(b, 100)
		b.StartTimer()
		c0 := threadCPU()
		for end := min(i+block, b.N); i < end; i++ {
			raw := offers[i%n].raw
			o, err := protocol.DecodeOffer(raw, lim)
			if err != nil {
				b.Fatal(err)
			}
			if err := o.Validate(now, lim); err != nil {
				b.Fatal(err)
			}
			c := protocol.CIDOf(raw)
			t := time.Now()
			if err := book.Check(o, c); err != nil {
				b.Fatal(err)
			}
			if err := book.Add(o, c, raw); err != nil {
				b.Fatal(err)
			}
			inBook += time.Since(t)
		}
		cpu += threadCPU() - c0
	}
	b.StopTimer()
	_ = book.Close()
	rate := float64(b.N) / cpu.Seconds()
	b.ReportMetric(rate, "offers/cpu-s")
	b.ReportMetric(v.rate(), "ed25519/s")
	b.ReportMetric(rate/v.rate(), "path/ed25519")
	b.ReportMetric(100*inBook.Seconds()/cpu.Seconds(), "book-%")
}

// heapPerOffer builds a book of n offers (with no persister, so no raw
// bytes are held) and returns the heap it costs per offer, after GC.
func heapPerOffer(tb testing.TB, n int) float64 {
	clk := newMock()
	before := heapInUse()
	sy := makeSynthetic(tb, n, 1000, clk.Now(), false)
	book := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	for i, o := range sy.offers {
		if err := book.Add(o, fakeCID(i), nil); err != nil {
			tb.Fatal(err)
		}
	}
	sy = synthetic{} // the caller's copies go; the book's stay
	after := heapInUse()
	if book.Len() != n {
		tb.Fatalf("book holds %d offers, want %d", book.Len(), n)
	}
	runtime.KeepAlive(book)
	return float64(after-before) / float64(n)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestBookMemory checks that a 100,000-offer book stays well under 100 MiB
// of heap.
func TestBookMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("builds a 100,000-offer book; skipped in -short and -race runs")
	}
	per := heapPerOffer(t, benchSize)
	total := per * benchSize / (1 << 20)
	t.Logf("heap: %.0f bytes/offer, %.1f MiB for %d offers", per, total, benchSize)
	if total > 80 {
		t.Errorf("a %d-offer book costs %.1f MiB of heap, want well under 100 MiB", benchSize, total)
	}
}

// BenchmarkBookMemory reports the heap cost of a 100,000-offer book.
func BenchmarkBookMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per = heapPerOffer(b, benchSize)
	}
	b.ReportMetric(per, "bytes/offer")
	b.ReportMetric(per*benchSize/(1<<20), "MiB/100k")
}

// ExampleBook_Query shows a buyer's search: the cheapest machines with at
// least four vCPUs in Europe under 0.10 USD an hour.
func ExampleBook_Query() {
	book := NewBook(DefaultConfig(), nil, nil, protocol.DefaultLimits(), nil)
	for _, e := range book.Query(Query{
		RegionPrefix: "eu",
		VCPU:         Range{Min: 4},
		MaxPrice:     protocol.Price{Micro: 100_000, Currency: "USD"},
		Limit:        10,
	}) {
		fmt.Println(e.Offer.ID(), e.Offer.Price)
	}
}
