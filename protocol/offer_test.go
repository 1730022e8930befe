package protocol

import (
	"errors"
	"testing"
	"time"
)

func TestOfferSignDecodeValidate(t *testing.T) {
	key, id := newKey(t)
	otherKey, _ := newKey(t)
	now := time.Now()
	lim := DefaultLimits()

	signed := func(mut func(o *Offer)) []byte {
		o := sampleOffer(id, now)
		mut(o)
		b, err := Sign(o, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		bytes func() []byte
		want  error
	}{
		{"valid", func() []byte { return signed(func(*Offer) {}) }, nil},
		{"withdrawn", func() []byte { return signed(func(o *Offer) { o.Withdrawn = true }) }, nil},
		{"expired", func() []byte {
			return signed(func(o *Offer) {
				o.IssuedAt = TimeOf(now.Add(-time.Hour))
				o.ExpiresAt = TimeOf(now.Add(-time.Minute))
			})
		}, ErrExpired},
		{"far future", func() []byte {
			return signed(func(o *Offer) {
				o.IssuedAt = TimeOf(now.Add(time.Hour))
				o.ExpiresAt = TimeOf(now.Add(2 * time.Hour))
			})
		}, ErrFarFuture},
		{"ttl too long", func() []byte {
			return signed(func(o *Offer) { o.ExpiresAt = TimeOf(now.Add(48 * time.Hour)) })
		}, ErrFarFuture},
		{"unknown version", func() []byte {
			o := sampleOffer(id, now)
			o.Version = 2
			b, _ := Sign(o, key)
			return b
		}, ErrUnknownVersion},
		{"bad signature", func() []byte {
			o := sampleOffer(id, now)
			if _, err := Sign(o, key); err != nil {
				t.Fatal(err)
			}
			o.Price.Micro = 1 // changed after signing
			b, _ := Marshal(o)
			return b
		}, ErrBadSignature},
		{"signed by another", func() []byte {
			// Claims to be id, signed with another key: forged by hand,
			// since Sign refuses a key that is not the author's.
			o := sampleOffer(id, now)
			payload, _ := SigningBytes(o)
			o.Sig, _ = otherKey.Sign(payload)
			b, _ := Marshal(o)
			return b
		}, ErrBadSignature},
		{"oversized", func() []byte {
			return signed(func(o *Offer) {
				for i := 0; i < 60; i++ {
					o.Addrs = append(o.Addrs, "/ip4/127.0.0.1/tcp/4001/p2p/"+id.String())
				}
			})
		}, ErrTooLarge},
		{"not cbor", func() []byte { return []byte("hello") }, ErrMalformed},
		{"bad region", func() []byte { return signed(func(o *Offer) { o.Region = "EU DE" }) }, ErrInvalid},
		{"no vcpu", func() []byte { return signed(func(o *Offer) { o.Hardware.VCPU = 0 }) }, ErrInvalid},
		{"min over max", func() []byte { return signed(func(o *Offer) { o.MinLease = o.MaxLease + 1 }) }, ErrInvalid},
		{"bad currency", func() []byte { return signed(func(o *Offer) { o.Price.Currency = "usd" }) }, ErrInvalid},
		{"bad addr", func() []byte { return signed(func(o *Offer) { o.Addrs = []string{"nope"} }) }, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.bytes()
			o, err := DecodeOffer(b, lim)
			if err == nil {
				err = o.Validate(now, lim)
			}
			if tc.want == nil && err != nil {
				t.Fatalf("want valid, got %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

func TestOfferCanonical(t *testing.T) {
	key, id := newKey(t)
	o := sampleOffer(id, time.Now())
	b, err := Sign(o, key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeOffer(b, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := Marshal(d)
	if string(b) != string(b2) || CIDOf(b) != CIDOf(b2) {
		t.Fatal("round trip changed the bytes")
	}
	if c, _ := d.CID(); c != CIDOf(b) {
		t.Fatal("CID differs from CIDOf(bytes)")
	}
	// A non-canonical encoding of the same map (an extra unknown field) is refused.
	type extra struct {
		Offer
		X int `cbor:"x"`
	}
	eb, _ := Marshal(extra{Offer: *d, X: 1})
	if _, err := DecodeOffer(eb, DefaultLimits()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown field: want ErrMalformed, got %v", err)
	}
}

func TestSignRefusesOtherKey(t *testing.T) {
	key, _ := newKey(t)
	_, other := newKey(t)
	if _, err := Sign(sampleOffer(other, time.Now()), key); err == nil {
		t.Fatal("signed for another author")
	}
}

func TestSignedByTellsForger(t *testing.T) {
	key, id := newKey(t)
	_, victim := newKey(t)
	o := sampleOffer(id, time.Now())
	if _, err := Sign(o, key); err != nil {
		t.Fatal(err)
	}
	o.Seller = victim // claims to be the victim, signed by id
	if err := VerifySignature(o); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("want bad signature, got %v", err)
	}
	if !SignedBy(o, key.GetPublic()) {
		// the signature covered Seller=id, so it must not verify with the changed seller either
		return
	}
	t.Fatal("signature verified over changed content")
}

func FuzzDecodeOffer(f *testing.F) {
	key, id := newKey(f)
	o := sampleOffer(id, time.Now())
	b, _ := Sign(o, key)
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Add([]byte("garbage"))
	lim := DefaultLimits()
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeOffer(b, lim)
		if err != nil {
			if o != nil {
				t.Fatal("offer returned with error")
			}
			return
		}
		_ = o.Validate(now, lim)
		// A decoded offer re-encodes to exactly the input.
		again, err := Marshal(o)
		if err != nil || string(again) != string(b) {
			t.Fatalf("decoded offer does not re-encode to its bytes: %v", err)
		}
	})
}
