package testnet_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/testnet"
)

// BenchmarkPropagation measures the time from a seller publishing an offer
// to the offer being in every book of a 100-node in-process network where
// each node dialed 8 random others and the mesh had 2 s to form; p50 and
// p99 over 100 offers from random sellers (per iteration). Run with
// -benchtime=1x. SPOTMESH_BENCH_TCP=1 runs it over real TCP on loopback
// instead of mocknet; SPOTMESH_BENCH_SETTLE sets the settling time.
func BenchmarkPropagation(b *testing.B) {
	const nodes, degree, offersPerRun = 100, 8, 100
	opts := []testnet.Option{testnet.WithDegree(degree)}
	if os.Getenv("SPOTMESH_BENCH_TCP") == "" {
		opts = append(opts, testnet.WithMock())
	}
	net := testnet.New(b, nodes, opts...)
	time.Sleep(settle()) // the mesh's time to form, as the benchmark defines it

	// One watcher per book records when each offer arrived.
	var mu sync.Mutex
	seen := map[protocol.OfferID][]time.Time{}
	done := make(chan protocol.OfferID, nodes*offersPerRun)
	var wg sync.WaitGroup
	var cancels []func()
	for _, n := range net.Nodes {
		ch, cancel := n.MarketBook().Subscribe()
		cancels = append(cancels, cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				if ev.Kind != market.EventAdded {
					continue
				}
				id := ev.Entry.Offer.ID()
				mu.Lock()
				seen[id] = append(seen[id], time.Now())
				full := len(seen[id]) == nodes
				mu.Unlock()
				if full {
					done <- id
				}
			}
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	}()

	r := rand.New(rand.NewPCG(1, 2))
	var lat []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for i := 0; i < offersPerRun; i++ {
			seller := net.Nodes[r.IntN(nodes)]
			spec := sampleSpec(fmt.Sprintf("p-%d-%d", it, i), "eu-de", int64(1000+i))
			t0 := time.Now()
			st, err := seller.AddOffer(ctx, spec)
			if err != nil {
				b.Fatal(err)
			}
			id := st.Current.ID()
			select {
			case got := <-done:
				if got != id {
					b.Fatalf("out of order: %v", got)
				}
			case <-ctx.Done():
				b.Fatal("offer never reached every book")
			}
			mu.Lock()
			last := seen[id][nodes-1]
			mu.Unlock()
			lat = append(lat, last.Sub(t0))

		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// settle is how long the network gets to form before measuring: 2 s as the
// benchmark is defined, or SPOTMESH_BENCH_SETTLE.
func settle() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SPOTMESH_BENCH_SETTLE")); err == nil {
		return d
	}
	return 2 * time.Second
}
