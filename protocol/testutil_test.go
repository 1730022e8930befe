package protocol

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func sampleOffer(seller peer.ID, now time.Time) *Offer {
	return &Offer{
		Version: OfferVersion,
		Seller:  seller,
		Key:     "c4m8-1",
		Region:  "eu-de",
		Hardware: Hardware{
			Profile: "c4m8", VCPU: 4, Memory: 8 << 30, Disk: 40 << 30, Arch: "amd64",
		},
		Slots:            10,
		Price:            Price{Micro: 40000, Currency: "USD"},
		MinLease:         MillisOf(time.Minute),
		MaxLease:         MillisOf(72 * time.Hour),
		Renewable:        true,
		Formats:          []string{"bundle", "qcow2"},
		MaxApplianceSize: 10 << 30,
		ReceiptInterval:  MillisOf(time.Minute),
		PaymentGrace:     MillisOf(5 * time.Minute),
		Addrs:            []string{"/ip4/127.0.0.1/tcp/4001"},
		IssuedAt:         TimeOf(now),
		ExpiresAt:        TimeOf(now.Add(10 * time.Minute)),
	}
}
