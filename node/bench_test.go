package node_test

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

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
