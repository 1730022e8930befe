package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	"github.com/spotmesh/spotmesh/protocol"
)

// signedOffers makes n distinct signed offers from a few sellers.
func signedOffers(b *testing.B, n int, now time.Time) ([][]byte, []crypto.PrivKey) {
	b.Helper()
	keys := make([]crypto.PrivKey, 8)
	ids := make([]peer.ID, len(keys))
	for i := range keys {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
		ids[i], _ = peer.IDFromPrivateKey(k)
	}
	out := make([][]byte, n)
	for i := range out {
		k := i % len(keys)
		o := &protocol.Offer{
			Version: protocol.OfferVersion, Seller: ids[k], Key: fmt.Sprintf("o-%d", i),
			Region:          []string{"eu-de", "eu-fr", "us-east", "ap-sg"}[i%4],
			Hardware:        protocol.Hardware{Profile: "c4m8", VCPU: uint32(1 + i%32), Memory: 8 << 30, Disk: 40 << 30, Arch: "amd64"},
			Slots:           10,
			Price:           protocol.Price{Micro: int64(1000 + i%5000), Currency: "USD"},
			MaxLease:        protocol.MillisOf(72 * time.Hour),
			Formats:         []string{"bundle", "qcow2"},
			ReceiptInterval: protocol.MillisOf(time.Minute),
			PaymentGrace:    protocol.MillisOf(5 * time.Minute),
			Addrs:           []string{"/ip4/127.0.0.1/tcp/4001"},
			IssuedAt:        protocol.TimeOf(now),
			ExpiresAt:       protocol.TimeOf(now.Add(time.Hour)),
		}
		raw, err := protocol.Sign(o, keys[k])
		if err != nil {
			b.Fatal(err)
		}
		out[i] = raw
	}
	return out, keys
}

// BenchmarkIngest takes signed offers through the full receive path of one
// node (decode, validate, verify, book index, persistence) and, in the same
// run, measures this machine's single-core ed25519 verify rate over the same
// payloads, reporting both and their ratio.
func BenchmarkIngest(b *testing.B) {
	now := time.Now()
	raws, _ := signedOffers(b, b.N, now)

	// The limit: one core verifying the same signatures.
	offers := make([]*protocol.Offer, len(raws))
	payloads := make([][]byte, len(raws))
	pubs := make([]crypto.PubKey, len(raws))
	for i, raw := range raws {
		o, err := protocol.DecodeOffer(raw, protocol.DefaultLimits())
		if err != nil {
			b.Fatal(err)
		}
		offers[i] = o
		payloads[i], _ = protocol.SigningBytes(o)
		pubs[i], _ = o.Seller.ExtractPublicKey()
	}
	cfg := initHome(b, filepath.Join(b.TempDir(), "n"))
	n := start(b, cfg)
	from := n.ID()

	// Interleave the two in chunks, so that a change in the machine's load
	// during the run affects both alike.
	const chunk = 256
	var verifyTime, ingestTime time.Duration
	b.ResetTimer()
	for lo := 0; lo < len(raws); lo += chunk {
		hi := min(lo+chunk, len(raws))
		t0 := time.Now()
		for i := lo; i < hi; i++ {
			if ok, _ := pubs[i].Verify(payloads[i], offers[i].Sig); !ok {
				b.Fatal("verify failed")
			}
		}
		t1 := time.Now()
		for i := lo; i < hi; i++ {
			if err := n.IngestOffer(raws[i], from); err != nil {
				b.Fatal(err)
			}
		}
		t2 := time.Now()
		verifyTime += t1.Sub(t0)
		ingestTime += t2.Sub(t1)
	}
	b.StopTimer()
	if n.MarketBook().Len() != len(raws) {
		b.Fatalf("book holds %d of %d", n.MarketBook().Len(), len(raws))
	}
	verifyRate := float64(len(raws)) / verifyTime.Seconds()
	ingestRate := float64(len(raws)) / ingestTime.Seconds()
	b.ReportMetric(ingestRate, "offers/s")
	b.ReportMetric(verifyRate, "verifies/s")
	b.ReportMetric(100*ingestRate/verifyRate, "%-of-verify")
}

// BenchmarkBestLeaseAPI: a buyer's best-lease request through its REST
// API (POST /v1/leases with book filters, as the testnet scenario and
// 'spotmesh lease new --best' send it), from the client's call to the lease
// countersigned by the seller in the answer. Two nodes run in this
// process, over real TCP on loopback, each with its own store (synced
// writes); the seller runs a fake driver, fetches the buyer's small
// appliance and "starts" it after granting, as a seller does. Each lease
// is ended, untimed, before the next. Interleaved with the requests, the
// same lease is taken through the buyer's lease service directly
// (lease_p50_ms, lease_p99_ms: no HTTP, JSON or appliance lookup);
// api_ms is the difference of the medians: what the API adds.
//
// The lease is stored durably at both ends before the buyer answers: two
// fsyncs, whose time depends on what else writes to the same disk. In
// disk-busy, a goroutine writes and syncs 55 MiB files back to back on
// the same file system, as a testnet's other nodes do while they import
// and fetch the scenario's appliances.
func BenchmarkBestLeaseAPI(b *testing.B) {
	b.Run("disk-idle", func(b *testing.B) { benchBestLeaseAPI(b, false) })
	b.Run("disk-busy", func(b *testing.B) { benchBestLeaseAPI(b, true) })
}

func benchBestLeaseAPI(b *testing.B, busy bool) {
	dir := b.TempDir()
	drv := drivertest.NewFake(clock.New(), runtime.Resources{VCPU: 64, Memory: 64 << 30, Disk: 1 << 40, Instances: 64})
	seller := start(b, initHome(b, filepath.Join(dir, "seller")), node.WithDriver(drv))
	bcfg := initHome(b, filepath.Join(dir, "buyer"), seller.Identity().Addrs[0])
	bcfg.Driver = node.DriverNone
	buyer := start(b, bcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sp := spec("bench")
	sp.Hardware = protocol.Hardware{Profile: "p1m512", VCPU: 1, Memory: 512 << 20, Disk: 1 << 30, Arch: "amd64"}
	sp.Formats = []string{"bundle"}
	offerToBuyer(ctx, b, seller, buyer, sp)
	ai, err := buyer.ApplianceService().Import(ctx, bytes.NewReader(bytes.Repeat([]byte("appliance "), 1000)),
		appliance.Meta{Name: "bench", Format: "bundle"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := node.ReadToken(bcfg.Home)
	if err != nil {
		b.Fatal(err)
	}
	c := api.NewClient(buyer.APIAddr(), tok)
	defer c.CloseIdleConnections()
	req := api.LeaseRequest{Best: map[string]string{"profile": "p1m512"}, Appliance: ai.CID.String(), For: api.Duration(time.Hour)}
	q := market.Query{Profile: "p1m512"}
	p := lease.Params{Length: time.Hour, Appliance: ai.CID, ApplianceSize: ai.Size, ApplianceFormat: "bundle"}
	viaAPI := func() time.Duration {
		t0 := time.Now()
		l, err := c.NewLease(ctx, req)
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.EndLease(ctx, l.ID); err != nil {
			b.Fatal(err)
		}
		return d
	}
	direct := func() time.Duration {
		t0 := time.Now()
		in, _, err := buyer.Leases().Best(ctx, q, p)
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := buyer.Leases().End(ctx, in.ID); err != nil {
			b.Fatal(err)
		}
		return d
	}
	for range 10 { // warm up: streams, caches
		viaAPI()
		direct()
	}
	if busy {
		stop := diskWriter(b, filepath.Join(dir, "busy"), 55<<20)
		defer stop()
	}
	lat := make([]time.Duration, 0, b.N)
	base := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		lat = append(lat, viaAPI())
		b.StopTimer()
		base = append(base, direct())
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(msQuantile(lat, 0.5), "p50_ms")
	b.ReportMetric(msQuantile(lat, 0.99), "p99_ms")
	b.ReportMetric(msQuantile(base, 0.5), "lease_p50_ms")
	b.ReportMetric(msQuantile(base, 0.99), "lease_p99_ms")
	b.ReportMetric(msQuantile(lat, 0.5)-msQuantile(base, 0.5), "api_ms")
	b.ReportMetric(0, "ns/op")
}

// diskWriter writes a file of size bytes at path and syncs it, over and
// over, until the returned stop is called.
func diskWriter(b *testing.B, path string, size int) (stop func()) {
	buf := bytes.Repeat([]byte{0x5a}, 1<<20)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			f, err := os.Create(path)
			if err != nil {
				b.Error(err)
				return
			}
			for n := 0; n < size; n += len(buf) {
				if _, err := f.Write(buf); err != nil {
					b.Error(err)
					break
				}
			}
			if err := f.Sync(); err != nil {
				b.Error(err)
			}
			f.Close()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		os.Remove(path)
	}
}

// msQuantile is the q quantile of d in milliseconds (nearest rank below).
func msQuantile(d []time.Duration, q float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(q*float64(len(s)-1))]) / float64(time.Millisecond)
}
