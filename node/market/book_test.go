package market

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startBook starts a book on a mock clock. Unless cfg says otherwise it
// persists hourly, so that tests moving the clock by minutes do not run
// thousands of ticks.
func startBook(t *testing.T, cfg Config, p Persister) (*Book, *clock.Mock) {
	t.Helper()
	if cfg.PersistInterval == 0 {
		cfg.PersistInterval = time.Hour
	}
	clk := newMock()
	b := NewBook(cfg, p, clk, protocol.DefaultLimits(), nil)
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, clk
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAddCheck walks one offer through the copies a validator sees:
// duplicates, stale copies, newer copies, withdrawals and replays.
func TestAddCheck(t *testing.T) {
	s := newSeller(t)
	clk := newMock()
	now := clk.Now()
	b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	at := func(d time.Duration, edit func(*protocol.Offer)) signedOffer {
		return makeOffer(t, s, "k", now, func(o *protocol.Offer) {
			o.IssuedAt = protocol.TimeOf(now.Add(d))
			o.ExpiresAt = protocol.TimeOf(now.Add(d + time.Hour))
			if edit != nil {
				edit(o)
			}
		})
	}
	v1 := at(-2*time.Minute, nil)
	v0 := at(-3*time.Minute, nil)
	v1b := at(-2*time.Minute, func(o *protocol.Offer) { o.Slots = 3 }) // same instant, other content
	v2 := at(-time.Minute, func(o *protocol.Offer) { o.Region = "us-east"; o.Price.Micro = 50000 })
	w2 := at(-time.Minute, func(o *protocol.Offer) { o.Withdrawn = true }) // same instant as v2
	v3 := at(0, nil)
	expired := makeOffer(t, s, "old", now, func(o *protocol.Offer) {
		o.IssuedAt = protocol.TimeOf(now.Add(-time.Hour))
		o.ExpiresAt = protocol.TimeOf(now.Add(-10 * time.Second)) // within skew: valid, but expired here
	})

	steps := []struct {
		name    string
		so      signedOffer
		want    error
		live    int
		held    string // key of the copy Get returns, "" for none
		holdCID cid.Cid
	}{
		{"first copy", v1, nil, 1, "k", v1.c},
		{"same copy again", v1, protocol.ErrDuplicate, 1, "k", v1.c},
		{"older copy", v0, protocol.ErrStale, 1, "k", v1.c},
		{"same instant, other bytes", v1b, protocol.ErrStale, 1, "k", v1.c},
		{"newer copy supersedes", v2, nil, 1, "k", v2.c},
		{"withdrawal at the same instant wins", w2, nil, 0, "", cid.Undef},
		{"withdrawal again", w2, protocol.ErrDuplicate, 0, "", cid.Undef},
		{"live copy replayed after withdrawal", v2, protocol.ErrStale, 0, "", cid.Undef},
		{"older live copy replayed", v1, protocol.ErrStale, 0, "", cid.Undef},
		{"newer live copy revives", v3, nil, 1, "k", v3.c},
		{"expired copy", expired, protocol.ErrExpired, 1, "k", v3.c},
	}
	for _, st := range steps {
		checkErr := b.Check(st.so.o, st.so.c)
		addErr := b.Add(st.so.o, st.so.c, st.so.raw)
		if !errors.Is(checkErr, st.want) || (st.want == nil) != (checkErr == nil) {
			t.Errorf("%s: Check = %v, want %v", st.name, checkErr, st.want)
		}
		if !errors.Is(addErr, st.want) || (st.want == nil) != (addErr == nil) {
			t.Errorf("%s: Add = %v, want %v", st.name, addErr, st.want)
		}
		if n := b.Len(); n != st.live {
			t.Errorf("%s: Len = %d, want %d", st.name, n, st.live)
		}
		e, ok := b.Get(protocol.OfferID{Seller: s.id, Key: "k"})
		switch {
		case st.held == "" && ok:
			t.Errorf("%s: Get found %s, want nothing", st.name, e.CID)
		case st.held != "" && (!ok || e.CID != st.holdCID):
			t.Errorf("%s: Get = %v %v, want copy %s", st.name, e.CID, ok, st.holdCID)
		}
	}
	// The superseded copy's region and price left the indexes.
	if got := keys(b.Query(Query{RegionPrefix: "us"})); got != "" {
		t.Errorf("query us after v3 (eu-de): %q, want nothing", got)
	}
	if got := keys(b.Query(Query{RegionPrefix: "eu-de"})); got != "k" {
		t.Errorf("query eu-de: %q, want k", got)
	}
}

func TestCheckChangesNothing(t *testing.T) {
	s := newSeller(t)
	clk := newMock()
	b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	v1 := makeOffer(t, s, "k", clk.Now(), func(o *protocol.Offer) { o.IssuedAt-- })
	if err := b.Check(v1.o, v1.c); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 0 || len(b.Query(Query{})) != 0 {
		t.Fatal("Check added the offer")
	}
	mustAdd(t, b, v1)
	v2 := makeOffer(t, s, "k", clk.Now(), nil)
	if err := b.Check(v2.o, v2.c); err != nil {
		t.Fatal(err)
	}
	if e, _ := b.Get(v1.o.ID()); e.CID != v1.c {
		t.Fatal("Check replaced the held copy")
	}
}

func TestWithdrawalRemembered(t *testing.T) {
	s := newSeller(t)
	b, clk := startBook(t, Config{}, nil)
	now := clk.Now()
	// A withdrawal of an offer the book never held is remembered too, so
	// the live copy arriving late over gossip is stale.
	live := makeOffer(t, s, "k", now, func(o *protocol.Offer) { o.IssuedAt = protocol.TimeOf(now.Add(-time.Minute)) })
	w := makeOffer(t, s, "k", now, func(o *protocol.Offer) {
		o.Withdrawn = true
		o.ExpiresAt = protocol.TimeOf(now.Add(30 * time.Minute))
	})
	mustAdd(t, b, w)
	if st := b.Stats(); st.Withdrawals != 1 || st.Live != 0 {
		t.Fatalf("stats after withdrawal: %+v", st)
	}
	if err := b.Add(live.o, live.c, live.raw); !errors.Is(err, protocol.ErrStale) {
		t.Fatalf("late live copy: %v, want ErrStale", err)
	}
	// The withdrawal is forgotten when it expires.
	clk.Add(30 * time.Minute)
	eventually(t, "the withdrawal to be forgotten at its expiry", func() bool { return b.Stats().Withdrawals == 0 })
}

func TestBookFull(t *testing.T) {
	s := newSeller(t)
	clk := newMock()
	now := clk.Now()
	b := NewBook(Config{MaxOffers: 3}, nil, clk, protocol.DefaultLimits(), nil)
	for i := range 3 {
		mustAdd(t, b, makeOffer(t, s, fmt.Sprint(i), now, func(o *protocol.Offer) {
			o.ExpiresAt = protocol.TimeOf(now.Add(time.Duration(i+1) * time.Minute))
		}))
	}
	extra := makeOffer(t, s, "extra", now, nil)
	if err := b.Check(extra.o, extra.c); !errors.Is(err, ErrBookFull) {
		t.Fatalf("Check when full: %v, want ErrBookFull", err)
	}
	if err := b.Add(extra.o, extra.c, extra.raw); !errors.Is(err, ErrBookFull) {
		t.Fatalf("Add when full: %v, want ErrBookFull", err)
	}
	// A newer copy of a held offer is still taken.
	clk.Add(time.Second)
	mustAdd(t, b, makeOffer(t, s, "2", clk.Now(), nil))
	// Once one expires, a new offer fits again (Add evicts on the spot).
	clk.Add(time.Minute)
	extra = makeOffer(t, s, "extra", clk.Now(), nil)
	mustAdd(t, b, extra)
	if n := b.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
}

// TestEviction checks that offers leave the book at their expiry, on the
// mock clock, in expiry order, including one that arrives with an expiry
// earlier than the timer's.
func TestEviction(t *testing.T) {
	s := newSeller(t)
	b, clk := startBook(t, Config{}, nil)
	events, cancel := b.Subscribe()
	defer cancel()
	now := clk.Now()
	add := func(key string, ttl time.Duration) {
		mustAdd(t, b, makeOffer(t, s, key, now, func(o *protocol.Offer) { o.ExpiresAt = protocol.TimeOf(now.Add(ttl)) }))
		if ev := waitEvent(t, events, EventAdded); ev.Entry.Offer.Key != key {
			t.Fatalf("added event for %s, want %s", ev.Entry.Offer.Key, key)
		}
	}
	add("3m", 3*time.Minute)
	add("2m", 2*time.Minute)
	add("5m", 5*time.Minute)
	add("1m", time.Minute) // earlier than the timer: wakes the loop

	for _, step := range []struct {
		advance time.Duration
		expired string
		left    int
	}{
		{time.Minute, "1m", 3},
		{time.Minute, "2m", 2},
		{time.Minute, "3m", 1},
		{2 * time.Minute, "5m", 0},
	} {
		clk.Add(step.advance)
		ev := waitEvent(t, events, EventExpired)
		if ev.Entry.Offer.Key != step.expired {
			t.Fatalf("expired %s, want %s", ev.Entry.Offer.Key, step.expired)
		}
		if got := b.Stats().Live; got != step.left {
			t.Fatalf("after %s expired: %d live, want %d", step.expired, got, step.left)
		}
	}
	if st := b.Stats(); st.Expired != 4 {
		t.Fatalf("Stats.Expired = %d, want 4", st.Expired)
	}
	checkIndexes(t, b)
}

// TestQueryHidesExpired: between evictions (here: a book never started)
// neither Query nor Get returns an expired offer.
func TestQueryHidesExpired(t *testing.T) {
	s := newSeller(t)
	clk := newMock()
	b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	so := makeOffer(t, s, "k", clk.Now(), func(o *protocol.Offer) { o.ExpiresAt = protocol.TimeOf(clk.Now().Add(time.Minute)) })
	mustAdd(t, b, so)
	clk.Add(time.Minute - time.Millisecond)
	if len(b.Query(Query{})) != 1 {
		t.Fatal("offer missing before its expiry")
	}
	clk.Add(time.Millisecond) // ExpiresAt == now: expired
	if got := b.Query(Query{}); len(got) != 0 {
		t.Fatalf("Query returned an expired offer: %v", keys(got))
	}
	if _, ok := b.Get(so.o.ID()); ok {
		t.Fatal("Get returned an expired offer")
	}
	if st := b.Stats(); st.Live != 1 {
		t.Fatalf("offer evicted without a running book: %+v", st)
	}
	if n := b.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0", n)
	}
}

func TestEvents(t *testing.T) {
	s := newSeller(t)
	b, clk := startBook(t, Config{}, nil)
	events, cancel := b.Subscribe()
	now := clk.Now()
	v1 := makeOffer(t, s, "k", now, func(o *protocol.Offer) { o.IssuedAt-- })
	v2 := makeOffer(t, s, "k", now, nil)
	w := makeOffer(t, s, "k", now, func(o *protocol.Offer) { o.Withdrawn = true })
	for _, st := range []struct {
		so   signedOffer
		kind EventKind
	}{{v1, EventAdded}, {v2, EventUpdated}, {w, EventWithdrawn}} {
		mustAdd(t, b, st.so)
		select {
		case ev := <-events:
			if ev.Kind != st.kind || ev.Entry.CID != st.so.c {
				t.Fatalf("event %v %s, want %v %s", ev.Kind, ev.Entry.CID, st.kind, st.so.c)
			}
		default:
			t.Fatalf("no %v event", st.kind)
		}
	}
	if EventAdded.String() != "added" || EventExpired.String() != "expired" || EventKind(0).String() != "unknown" {
		t.Error("EventKind.String")
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-events; ok {
		t.Fatal("channel open after cancel")
	}
}

func TestSlowSubscriberDropsEvents(t *testing.T) {
	s := newSeller(t)
	clk := newMock()
	b := NewBook(Config{EventBuffer: 2}, nil, clk, protocol.DefaultLimits(), nil)
	_, cancel := b.Subscribe()
	defer cancel()
	for i := range 5 {
		mustAdd(t, b, makeOffer(t, s, fmt.Sprint(i), clk.Now(), nil))
	}
	if d := b.Stats().DroppedEvents; d != 3 {
		t.Fatalf("DroppedEvents = %d, want 3", d)
	}
}

func TestLifecycle(t *testing.T) {
	clk := newMock()
	b := NewBook(DefaultConfig(), newMemPersister(), clk, protocol.DefaultLimits(), nil)
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	events, _ := b.Subscribe()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-events; ok {
		t.Fatal("subscription open after Close")
	}
	so := makeOffer(t, newSeller(t), "k", clk.Now(), nil)
	if err := b.Add(so.o, so.c, so.raw); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
	if err := b.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	// Close of a book never started is fine too.
	if err := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil).Close(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{MaxOffers: -1}, {PersistInterval: -time.Second}, {PersistBatch: -1}, {EventBuffer: -1}, {LoadWorkers: -2}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
		b := NewBook(c, nil, newMock(), protocol.DefaultLimits(), nil)
		if err := b.Start(context.Background()); err == nil {
			t.Errorf("Start with %+v succeeded", c)
		}
		_ = b.Close()
	}
}

// TestConcurrent adds, supersedes and withdraws offers from several
// goroutines while others query; run with -race. At the end every offer
// is held in its newest copy.
func TestConcurrent(t *testing.T) {
	sellers := []seller{newSeller(t), newSeller(t), newSeller(t)}
	p := newMemPersister()
	b, clk := startBook(t, Config{PersistBatch: 64}, p)
	now := clk.Now()
	const n, versions = 300, 3
	var copies [versions][]signedOffer
	for v := range versions {
		copies[v] = makeSigned(t, sellers, n, now, func(i int, o *protocol.Offer) {
			o.IssuedAt = protocol.TimeOf(now.Add(time.Duration(v-versions) * time.Second))
			o.Price.Micro = int64(1000 + i*10 + v)
			o.Withdrawn = v == versions-1 && i%10 == 0
		})
	}
	ctx, stop := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for range 3 {
		readers.Go(func() {
			for ctx.Err() == nil {
				for _, e := range b.Query(Query{RegionPrefix: "eu", Limit: 20}) {
					if e.Offer.Withdrawn {
						t.Error("query returned a withdrawn copy")
						return
					}
				}
				b.Query(Query{Sort: SortNewest, VCPU: Range{Min: 2}})
				b.Len()
				b.Get(copies[0][0].o.ID())
				_ = b.Check(copies[1][1].o, copies[1][1].c)
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			// Each writer delivers every copy, in its own order, as gossip does.
			for k := range versions * n {
				v, i := (k/n+w)%versions, (k*7+w)%n
				so := copies[v][i]
				err := b.Add(so.o, so.c, so.raw)
				if err != nil && !errors.Is(err, protocol.ErrStale) && !errors.Is(err, protocol.ErrDuplicate) {
					t.Errorf("add: %v", err)
					return
				}
			}
		})
	}
	writers.Wait()
	stop()
	readers.Wait()

	wantLive := 0
	for i := range n {
		last := copies[versions-1][i]
		e, ok := b.Get(last.o.ID())
		if last.o.Withdrawn {
			if ok {
				t.Errorf("offer %d: withdrawn but held", i)
			}
			continue
		}
		wantLive++
		if !ok || e.CID != last.c {
			t.Errorf("offer %d: holds %v, want the newest copy %s", i, e.CID, last.c)
		}
	}
	if got := b.Len(); got != wantLive {
		t.Errorf("Len = %d, want %d", got, wantLive)
	}
	checkIndexes(t, b)
	if got := len(b.Query(Query{Limit: 10 * n})); got != wantLive {
		t.Errorf("Query found %d, want %d", got, wantLive)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	m, _, _ := p.snapshot()
	if len(m) != n {
		t.Fatalf("persisted %d offers, want %d (live and withdrawn)", len(m), n)
	}
	for i := range n {
		last := copies[versions-1][i]
		if got := protocol.CIDOf(m[last.o.ID()]); got != last.c {
			t.Fatalf("offer %d persisted as %s, want the newest copy %s", i, got, last.c)
		}
	}
}

// checkIndexes verifies that every index holds exactly the live items the
// primary index holds, and the heap every item.
func checkIndexes(t *testing.T, b *Book) {
	t.Helper()
	b.mu.RLock()
	defer b.mu.RUnlock()
	ix := &b.ix
	current := func(it *item) bool { return ix.get(it.offer.ID()) == it && it.live() }
	live, held, gpus := 0, 0, 0
	for _, s := range ix.sellers {
		for _, it := range s.offers {
			held++
			if it.heapIdx < 0 || ix.expiry[it.heapIdx] != it {
				t.Errorf("%s: not in the expiry heap", it.offer.ID())
			}
			if it.live() {
				live++
				if it.offer.Hardware.GPUs > 0 {
					gpus++
				}
			}
		}
	}
	if live != ix.live || held != ix.held || held != len(ix.expiry) {
		t.Errorf("counts: live %d/%d, held %d/%d, heap %d", live, ix.live, held, ix.held, len(ix.expiry))
	}
	n := 0
	for _, r := range ix.regions {
		rn := 0
		for _, ct := range r.byCur {
			ct.t.Ascend(func(e ent) bool {
				if !current(e.it) || e.it.offer.Region != r.name || e.it.offer.Price.Currency != ct.cur || e != entOf(e.it) {
					t.Errorf("region tree %s/%s: stale element for %s", r.name, ct.cur, e.it.offer.ID())
				}
				rn++
				return true
			})
		}
		if rn != r.n {
			t.Errorf("region %s: counts %d, holds %d", r.name, r.n, rn)
		}
		n += rn
	}
	count := func(name string, tr *rankTree) int {
		c := 0
		tr.Ascend(func(r ranked) bool {
			if !current(r.it) {
				t.Errorf("%s: stale element for %s", name, r.it.offer.ID())
			}
			c++
			return true
		})
		return c
	}
	np := 0
	for name, pt := range ix.profiles {
		np += count("profile "+name, pt)
	}
	ng := 0
	for name, gt := range ix.gpus {
		ng += count("gpu "+name, gt)
	}
	for name, c := range map[string]int{
		"regions": n, "profiles": np, "gpu models": ng, "gpus": count("gpus", ix.gpuAll),
		"newest": count("newest", ix.byNewest),
	} {
		want := live
		if name == "gpu models" || name == "gpus" {
			want = gpus
		}
		if c != want {
			t.Errorf("index %s holds %d offers, want %d", name, c, want)
		}
	}
}

// TestSupersedeInPlace: a republished copy at the same price and place
// takes its predecessor's place in every index, with its own expiry,
// slots and times.
func TestSupersedeInPlace(t *testing.T) {
	s := newSeller(t)
	clk := newMock()
	now := clk.Now()
	b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	gpu := func(o *protocol.Offer) {
		o.Hardware.Profile, o.Hardware.GPUs, o.Hardware.GPUModel = "g1a100", 1, "A100"
	}
	v1 := makeOffer(t, s, "k", now, func(o *protocol.Offer) {
		gpu(o)
		o.IssuedAt = protocol.TimeOf(now.Add(-time.Minute))
		o.ExpiresAt = protocol.TimeOf(now.Add(10 * time.Minute))
	})
	v2 := makeOffer(t, s, "k", now, func(o *protocol.Offer) {
		gpu(o)
		o.Hardware.GPUModel = "a100" // another spelling: the same index
		o.Slots = 3
	})
	other := makeOffer(t, s, "other", now, nil)
	mustAdd(t, b, v1)
	mustAdd(t, b, other)
	mustAdd(t, b, v2)
	checkIndexes(t, b)
	clk.Add(10 * time.Minute) // v1's expiry, not v2's
	for _, q := range []Query{{}, {Sort: SortExpires}, {Sort: SortNewest}, {Profile: "g1a100"}, {GPUModel: "A100"}, {GPUs: Range{Min: 1}}, {MinSlots: 3}} {
		got := b.Query(q)
		if len(got) == 0 || got[0].CID != v2.c || got[0].Offer.Slots != 3 {
			t.Errorf("Query(%+v) = %v, want v2 first", q, keys(got))
		}
	}
	if n := b.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	w := makeOffer(t, s, "k", clk.Now(), func(o *protocol.Offer) { gpu(o); o.Withdrawn = true })
	mustAdd(t, b, w)
	checkIndexes(t, b)
	if got := keys(b.Query(Query{IncludePaused: true, Limit: 10})); got != "other" {
		t.Fatalf("after withdrawal: %q, want other", got)
	}
}

// A buyer may name any unexpired copy of an offer: Query by CID finds the
// offer by the copy it holds or by a copy that one replaced, until that
// copy expires; a paused offer only with IncludePaused.
func TestQueryByCopy(t *testing.T) {
	s := newSeller(t)
	clk := newMock()
	b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	v1 := makeOffer(t, s, "k", clk.Now(), func(o *protocol.Offer) { o.ExpiresAt = protocol.TimeOf(clk.Now().Add(time.Minute)) })
	mustAdd(t, b, v1)
	clk.Add(time.Second)
	v2 := makeOffer(t, s, "k", clk.Now(), func(o *protocol.Offer) { o.ExpiresAt = protocol.TimeOf(clk.Now().Add(time.Hour)) })
	mustAdd(t, b, v2)
	other := makeOffer(t, s, "other", clk.Now(), nil)
	mustAdd(t, b, other)
	for _, tc := range []struct {
		name string
		c    cid.Cid
		want cid.Cid
	}{
		{"the copy held", v2.c, v2.c},
		{"a copy it replaced", v1.c, v2.c},
		{"another offer", other.c, other.c},
		{"no such copy", protocol.CIDOf([]byte("nothing")), cid.Undef},
	} {
		got := b.Query(Query{CID: tc.c})
		if !tc.want.Defined() {
			if len(got) != 0 {
				t.Errorf("%s: got %v, want nothing", tc.name, keys(got))
			}
			continue
		}
		if len(got) != 1 || !got[0].CID.Equals(tc.want) {
			t.Errorf("%s: got %v, want the copy %s", tc.name, keys(got), tc.want)
		}
	}
	clk.Add(time.Minute) // v1 expired; v2 holds on
	if got := b.Query(Query{CID: v1.c}); len(got) != 0 {
		t.Fatalf("an expired copy still names its offer: %v", keys(got))
	}
	clk.Add(time.Second)
	paused := makeOffer(t, s, "k", clk.Now(), func(o *protocol.Offer) { o.Paused = true })
	mustAdd(t, b, paused)
	if got := b.Query(Query{CID: v2.c}); len(got) != 0 {
		t.Fatalf("a paused offer without IncludePaused: %v", keys(got))
	}
	if got := b.Query(Query{CID: v2.c, IncludePaused: true}); len(got) != 1 || !got[0].CID.Equals(paused.c) {
		t.Fatalf("a paused offer with IncludePaused: %v", keys(got))
	}
}
