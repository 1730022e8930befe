package market

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/protocol"
)

// TestRestartWarm closes a book and starts a new one over the same
// persister later: the live offers come back, those that expired meanwhile
// do not (and are deleted), and a withdrawal is still remembered.
func TestRestartWarm(t *testing.T) {
	s := newSeller(t)
	p := newMemPersister()
	clk := newMock()
	now := clk.Now()
	b1 := NewBook(Config{PersistInterval: time.Hour}, p, clk, protocol.DefaultLimits(), nil)
	if err := b1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	long := makeOffer(t, s, "long", now, func(o *protocol.Offer) { o.ExpiresAt = protocol.TimeOf(now.Add(2 * time.Hour)) })
	short := makeOffer(t, s, "short", now, func(o *protocol.Offer) { o.ExpiresAt = protocol.TimeOf(now.Add(10 * time.Minute)) })
	gone := makeOffer(t, s, "gone", now, func(o *protocol.Offer) { o.IssuedAt -= 1000 })
	goneW := makeOffer(t, s, "gone", now, func(o *protocol.Offer) { o.Withdrawn = true; o.ExpiresAt = protocol.TimeOf(now.Add(2 * time.Hour)) })
	for _, so := range []signedOffer{long, short, gone, goneW} {
		mustAdd(t, b1, so)
	}
	if _, puts, _ := p.snapshot(); puts != 0 {
		t.Fatalf("the book wrote %d batches before its interval", puts)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	m, _, _ := p.snapshot()
	if len(m) != 3 || protocol.CIDOf(m[goneW.o.ID()]) != goneW.c {
		t.Fatalf("Close persisted %d offers (want 3), withdrawal held: %v", len(m), protocol.CIDOf(m[goneW.o.ID()]) == goneW.c)
	}
	p.m[protocol.OfferID{Seller: s.id, Key: "junk"}] = []byte("not an offer") // skipped at load

	clk.Add(time.Hour) // short expires while the node is down
	b2 := NewBook(Config{PersistInterval: time.Hour}, p, clk, protocol.DefaultLimits(), nil)
	if err := b2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if n := b2.Len(); n != 1 {
		t.Fatalf("restarted book holds %d offers, want 1", n)
	}
	if e, ok := b2.Get(long.o.ID()); !ok || e.CID != long.c {
		t.Fatalf("long-lived offer not restored: %v %v", e.CID, ok)
	}
	if _, ok := b2.Get(short.o.ID()); ok {
		t.Fatal("offer that expired during the restart came back")
	}
	if err := b2.Add(gone.o, gone.c, gone.raw); !errors.Is(err, protocol.ErrStale) {
		t.Fatalf("live copy of a withdrawn offer after restart: %v, want ErrStale", err)
	}
	if err := b2.Add(long.o, long.c, long.raw); !errors.Is(err, protocol.ErrDuplicate) {
		t.Fatalf("restored copy again: %v, want ErrDuplicate", err)
	}
	m, _, _ = p.snapshot()
	if _, ok := m[short.o.ID()]; ok {
		t.Fatal("expired offer still persisted after load")
	}
	if len(b2.Query(Query{})) != 1 {
		t.Fatal("restored offer is not indexed")
	}
}

// TestPersistBatching: Add never writes on the caller's goroutine; the
// writer coalesces copies of one offer to the newest, writes on its
// interval or when a batch is full, and deletes offers that expire.
func TestPersistBatching(t *testing.T) {
	s := newSeller(t)
	p := newMemPersister()
	b, clk := startBook(t, Config{PersistInterval: time.Second, PersistBatch: 5}, p)
	now := clk.Now()
	v1 := makeOffer(t, s, "k", now, func(o *protocol.Offer) { o.IssuedAt -= 2 })
	v2 := makeOffer(t, s, "k", now, func(o *protocol.Offer) { o.IssuedAt -= 1 })
	v3 := makeOffer(t, s, "k", now, func(o *protocol.Offer) { o.ExpiresAt = protocol.TimeOf(now.Add(time.Minute)) })
	for _, so := range []signedOffer{v1, v2, v3} {
		mustAdd(t, b, so)
	}
	if _, puts, _ := p.snapshot(); puts != 0 {
		t.Fatal("Add wrote to the persister")
	}
	if st := b.Stats(); st.Pending != 1 {
		t.Fatalf("pending = %d, want 1 (coalesced)", st.Pending)
	}
	clk.Add(time.Second)
	p.waitFor(t, "the interval's write", func(m map[protocol.OfferID][]byte) bool { return len(m) == 1 })
	m, puts, _ := p.snapshot()
	if protocol.CIDOf(m[v3.o.ID()]) != v3.c || puts != 1 {
		t.Fatalf("persisted %d batches, newest copy: %v", puts, protocol.CIDOf(m[v3.o.ID()]) == v3.c)
	}

	// A full batch is written without waiting for the interval.
	for i := range 5 {
		mustAdd(t, b, makeOffer(t, s, string(rune('a'+i)), now, nil))
	}
	p.waitFor(t, "a full batch", func(m map[protocol.OfferID][]byte) bool { return len(m) == 6 })

	// An expired offer is deleted.
	clk.Add(time.Minute)
	p.waitFor(t, "the expired offer's deletion", func(m map[protocol.OfferID][]byte) bool {
		_, ok := m[v3.o.ID()]
		return !ok
	})
}

func TestPersistWithoutRaw(t *testing.T) {
	p := newMemPersister()
	clk := newMock()
	b := NewBook(DefaultConfig(), p, clk, protocol.DefaultLimits(), nil)
	so := makeOffer(t, newSeller(t), "k", clk.Now(), nil)
	if err := b.Add(so.o, so.c, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	m, _, _ := p.snapshot()
	if got := protocol.CIDOf(m[so.o.ID()]); got != so.c {
		t.Fatalf("re-encoded offer has CID %s, want %s", got, so.c)
	}
}

func TestPersistErrors(t *testing.T) {
	p := newMemPersister()
	p.fail = errDiskFull
	clk := newMock()
	b := NewBook(DefaultConfig(), p, clk, protocol.DefaultLimits(), nil)
	mustAdd(t, b, makeOffer(t, newSeller(t), "k", clk.Now(), nil))
	if err := b.Close(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close = %v, want the persister's error", err)
	}
	if st := b.Stats(); st.PersistErrors != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v: want one error and nothing pending", st)
	}
	if b.Len() != 1 {
		t.Fatal("a failed write lost the offer from memory")
	}
}

// failingLoader fails LoadOffers after the first offer.
type failingLoader struct{ *memPersister }

func (f failingLoader) LoadOffers(fn func(raw []byte) error) error {
	n := 0
	err := f.memPersister.LoadOffers(func(raw []byte) error {
		if n++; n > 1 {
			return errDiskFull
		}
		return fn(raw)
	})
	return err
}

func TestLoadFailureStartsAnyway(t *testing.T) {
	s := newSeller(t)
	p := newMemPersister()
	clk := newMock()
	for _, k := range []string{"a", "b", "c"} {
		so := makeOffer(t, s, k, clk.Now(), nil)
		p.m[so.o.ID()] = so.raw
	}
	b := NewBook(DefaultConfig(), failingLoader{p}, clk, protocol.DefaultLimits(), nil)
	if err := b.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer b.Close()
	if n := b.Len(); n != 1 {
		t.Fatalf("Len = %d, want the 1 offer read before the failure", n)
	}
}

func TestLoadCancelled(t *testing.T) {
	p := newMemPersister()
	clk := newMock()
	so := makeOffer(t, newSeller(t), "k", clk.Now(), nil)
	p.m[so.o.ID()] = so.raw
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := NewBook(DefaultConfig(), p, clk, protocol.DefaultLimits(), nil)
	if err := b.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context: %v", err)
	}
	_ = b.Close()
}
