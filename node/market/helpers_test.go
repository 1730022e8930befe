package market

import (
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/protocol"
)

// t0 is where the tests' mock clocks start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newMock() *clock.Mock {
	m := clock.NewMock()
	m.Set(t0)
	return m
}

// seller is a test seller: a real Ed25519 key and its peer ID.
type seller struct {
	key crypto.PrivKey
	id  peer.ID
}

func newSeller(t testing.TB) seller {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return seller{k, id}
}

// baseOffer is a valid offer of s, issued at now and living ttl.
func baseOffer(s peer.ID, key string, now time.Time, ttl time.Duration) *protocol.Offer {
	return &protocol.Offer{
		Version: protocol.OfferVersion,
		Seller:  s,
		Key:     key,
		Region:  "eu-de",
		Hardware: protocol.Hardware{
			Profile: "c4m8", VCPU: 4, Memory: 8 << 30, Disk: 40 << 30, Arch: "amd64",
		},
		Slots:            10,
		Price:            protocol.Price{Micro: 40000, Currency: "USD"},
		MinLease:         protocol.MillisOf(time.Minute),
		MaxLease:         protocol.MillisOf(72 * time.Hour),
		Renewable:        true,
		Formats:          []string{"bundle", "qcow2"},
		MaxApplianceSize: 10 << 30,
		ReceiptInterval:  protocol.MillisOf(time.Minute),
		PaymentGrace:     protocol.MillisOf(5 * time.Minute),
		Addrs:            []string{"/ip4/127.0.0.1/tcp/4001"},
		IssuedAt:         protocol.TimeOf(now),
		ExpiresAt:        protocol.TimeOf(now.Add(ttl)),
	}
}

// signedOffer is an offer as a validator hands it to the book.
type signedOffer struct {
	o   *protocol.Offer
	c   cid.Cid
	raw []byte
}

// sign signs o with s's key and checks that it validates at now, as the
// node's validator would before Add.
func sign(t testing.TB, s seller, o *protocol.Offer, now time.Time) signedOffer {
	t.Helper()
	raw, err := protocol.Sign(o, s.key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := protocol.DecodeOffer(raw, protocol.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(now, protocol.DefaultLimits()); err != nil {
		t.Fatalf("test offer does not validate: %v", err)
	}
	return signedOffer{d, protocol.CIDOf(raw), raw}
}

// makeOffer builds, signs and decodes one offer of s; edit changes the base.
func makeOffer(t testing.TB, s seller, key string, now time.Time, edit func(*protocol.Offer)) signedOffer {
	t.Helper()
	o := baseOffer(s.id, key, now, time.Hour)
	if edit != nil {
		edit(o)
	}
	return sign(t, s, o, now)
}

// makeSigned makes n signed offers over the sellers, in parallel; gen sets
// offer i's fields.
func makeSigned(t testing.TB, sellers []seller, n int, now time.Time, gen func(i int, o *protocol.Offer)) []signedOffer {
	t.Helper()
	out := make([]signedOffer, n)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				s := sellers[i%len(sellers)]
				o := baseOffer(s.id, fmt.Sprintf("o%d", i), now, time.Hour)
				if gen != nil {
					gen(i, o)
				}
				raw, err := protocol.Sign(o, s.key)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				out[i] = signedOffer{o, protocol.CIDOf(raw), raw}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	return out
}

func mustAdd(t testing.TB, b *Book, so signedOffer) {
	t.Helper()
	if err := b.Add(so.o, so.c, so.raw); err != nil {
		t.Fatalf("add %s: %v", so.o.ID(), err)
	}
}

// memPersister is the tests' Persister: a map, with call counts, a
// notification on every write, and injectable failures.
type memPersister struct {
	mu      sync.Mutex
	m       map[protocol.OfferID][]byte
	puts    int // PutOffers calls
	dels    int // DeleteOffers calls
	fail    error
	changed chan struct{}
}

func newMemPersister() *memPersister {
	return &memPersister{m: make(map[protocol.OfferID][]byte), changed: make(chan struct{}, 1)}
}

var _ Persister = (*memPersister)(nil)

func (p *memPersister) PutOffers(batch []PersistedOffer) error {
	p.mu.Lock()
	defer p.notify()
	defer p.mu.Unlock()
	p.puts++
	if p.fail != nil {
		return p.fail
	}
	for _, po := range batch {
		p.m[po.ID] = append([]byte(nil), po.Raw...)
	}
	return nil
}

func (p *memPersister) DeleteOffers(ids []protocol.OfferID) error {
	p.mu.Lock()
	defer p.notify()
	defer p.mu.Unlock()
	p.dels++
	if p.fail != nil {
		return p.fail
	}
	for _, id := range ids {
		delete(p.m, id)
	}
	return nil
}

func (p *memPersister) LoadOffers(fn func(raw []byte) error) error {
	p.mu.Lock()
	raws := make([][]byte, 0, len(p.m))
	for _, r := range p.m {
		raws = append(raws, r)
	}
	p.mu.Unlock()
	for _, r := range raws {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (p *memPersister) notify() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *memPersister) snapshot() (m map[protocol.OfferID][]byte, puts, dels int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m = make(map[protocol.OfferID][]byte, len(p.m))
	for k, v := range p.m {
		m[k] = v
	}
	return m, p.puts, p.dels
}

// waitPersisted waits, for at most a few seconds of real time, until cond
// holds of the persister's contents.
func (p *memPersister) waitFor(t testing.TB, what string, cond func(m map[protocol.OfferID][]byte) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		m, _, _ := p.snapshot()
		if cond(m) {
			return
		}
		select {
		case <-p.changed:
		case <-deadline:
			t.Fatalf("persister: timed out waiting for %s; holds %d offers", what, len(m))
		}
	}
}

var errDiskFull = errors.New("disk full")

// waitEvent returns the next event of kind k (skipping others) or fails.
func waitEvent(t testing.TB, ch <-chan Event, k EventKind) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed while waiting for %v", k)
			}
			if ev.Kind == k {
				return ev
			}
		case <-deadline:
			t.Fatalf("timed out waiting for a %v event", k)
		}
	}
}

// synthetic builds n unsigned offers of a realistic market: many regions,
// profiles and sellers, prices mostly in USD, a few GPU offers. The book
// verifies no signatures, so a fake 64-byte signature stands in. withRaw
// also encodes each offer for its raw bytes and CID (slower).
type synthetic struct {
	offers []*protocol.Offer
	cids   []cid.Cid
	raws   [][]byte
}

var (
	synthRegions = []string{
		"eu-de", "eu-de-fra", "eu-de-ber", "eu-fr", "eu-fr-par", "eu-nl", "eu-se", "eu-pl", "eu-it", "eu-es",
		"us-east", "us-east-va", "us-east-oh", "us-west", "us-west-or", "us-central", "ca-central",
		"ap-sg", "ap-jp", "ap-jp-osa", "ap-in", "ap-kr", "au-syd", "sa-br", "af-za", "me-ae", "europe",
	}
	synthProfiles = []struct {
		name      string
		vcpu      uint32
		memGiB    uint64
		gpus      uint32
		model     string
		microBase int64
	}{
		{"c1m2", 1, 2, 0, "", 8_000}, {"c2m4", 2, 4, 0, "", 16_000}, {"c4m8", 4, 8, 0, "", 32_000},
		{"c8m16", 8, 16, 0, "", 64_000}, {"c16m32", 16, 32, 0, "", 128_000}, {"c32m64", 32, 64, 0, "", 256_000},
		{"m4m32", 4, 32, 0, "", 60_000}, {"m8m64", 8, 64, 0, "", 120_000}, {"m16m128", 16, 128, 0, "", 240_000},
		{"a4m8", 4, 8, 0, "", 26_000}, {"a8m16", 8, 16, 0, "", 52_000},
	}
	synthGPUs = []struct {
		name      string
		vcpu      uint32
		memGiB    uint64
		gpus      uint32
		model     string
		microBase int64
	}{
		{"g1l4", 8, 32, 1, "L4", 700_000}, {"g1a100", 12, 85, 1, "A100", 2_900_000},
		{"g8h100", 96, 1024, 8, "H100", 30_000_000},
	}
)

func makeSynthetic(t testing.TB, n, nSellers int, now time.Time, withRaw bool) synthetic {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(1, 2))
	ids := make([]peer.ID, nSellers)
	addrs := make([][]string, nSellers)
	for i := range ids {
		ids[i] = newSeller(t).id
		addrs[i] = []string{
			fmt.Sprintf("/ip4/198.51.%d.%d/tcp/4001", i/250, i%250),
			fmt.Sprintf("/ip4/198.51.%d.%d/udp/4001/quic-v1", i/250, i%250),
		}
	}
	sy := synthetic{offers: make([]*protocol.Offer, n)}
	for i := range n {
		si := i % nSellers
		ttl := 10*time.Minute + time.Duration(rng.IntN(23*3600))*time.Second
		age := time.Duration(rng.Int64N(int64(min(ttl/2, time.Hour))))
		o := baseOffer(ids[si], fmt.Sprintf("offer-%d", i), now.Add(-age), ttl)
		o.Region = synthRegions[rng.IntN(len(synthRegions))]
		p := synthProfiles[rng.IntN(len(synthProfiles))]
		if rng.IntN(100) < 3 {
			p = synthGPUs[rng.IntN(len(synthGPUs))]
		}
		o.Hardware.Profile = p.name
		o.Hardware.VCPU = p.vcpu
		o.Hardware.Memory = p.memGiB << 30
		o.Hardware.Disk = uint64(20+rng.IntN(500)) << 30
		o.Hardware.GPUs = p.gpus
		o.Hardware.GPUModel = p.model
		if p.name[0] == 'a' {
			o.Hardware.Arch = "arm64"
		}
		o.Price.Micro = p.microBase * int64(60+rng.IntN(80)) / 100
		switch r := rng.IntN(100); {
		case r < 8:
			o.Price.Currency = "EUR"
		case r < 11:
			o.Price.Currency = "GBP"
		}
		o.Slots = uint32(rng.IntN(20))
		o.Paused = rng.IntN(100) < 3
		o.Addrs = addrs[si]
		o.Sig = make([]byte, 64)
		_, _ = rand.Read(o.Sig)
		sy.offers[i] = o
	}
	if withRaw {
		sy.raws = make([][]byte, n)
		sy.cids = make([]cid.Cid, n)
		var wg sync.WaitGroup
		const workers = 4
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					raw, err := protocol.Marshal(sy.offers[i])
					if err != nil {
						panic(err)
					}
					sy.raws[i], sy.cids[i] = raw, protocol.CIDOf(raw)
				}
			})
		}
		wg.Wait()
	}
	return sy
}

// fakeCID names offer i without encoding it.
func fakeCID(i int) cid.Cid {
	return protocol.CIDOf(fmt.Appendf(nil, "offer %d", i))
}
