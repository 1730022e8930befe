package protocol

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestPayloadFromEncodedMatchesSigningBytes(t *testing.T) {
	key, id := newKey(t)
	for _, mut := range []func(*Offer){
		func(*Offer) {},
		func(o *Offer) { o.Withdrawn = true; o.Hardware.GPUModel = "A10"; o.Hardware.GPUs = 2 },
		func(o *Offer) {
			for i := 0; i < 20; i++ {
				o.Addrs = append(o.Addrs, "/ip4/10.0.0.1/tcp/4001")
			}
		},
	} {
		o := sampleOffer(id, time.Now())
		mut(o)
		raw, err := Sign(o, key)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := SigningBytes(o)
		got, err := payloadFromEncoded(OfferDomain, raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("payload from the encoding differs from the signing bytes")
		}
		if _, err := ReceiveOffer(raw, time.Now(), DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReceiveOfferRejectsTampering(t *testing.T) {
	key, id := newKey(t)
	o := sampleOffer(id, time.Now())
	if _, err := Sign(o, key); err != nil {
		t.Fatal(err)
	}
	o.Slots = 99
	raw, _ := Marshal(o)
	if _, err := ReceiveOffer(raw, time.Now(), DefaultLimits()); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("want bad signature, got %v", err)
	}
	o.Sig = nil
	raw, _ = Marshal(o)
	if _, err := ReceiveOffer(raw, time.Now(), DefaultLimits()); err == nil {
		t.Fatal("unsigned offer accepted")
	}
}

func FuzzPayloadFromEncoded(f *testing.F) {
	key, id := newKey(f)
	raw, _ := Sign(sampleOffer(id, time.Now()), key)
	f.Add(raw)
	f.Add([]byte{0xa1, 0x63, 's', 'i', 'g', 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = payloadFromEncoded(OfferDomain, b) // must not panic
		_, _ = ReceiveOffer(b, time.Now(), DefaultLimits())
	})
}
