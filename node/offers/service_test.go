package offers_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

type pubs struct {
	mu  sync.Mutex
	raw [][]byte
}

func (p *pubs) PublishOffer(_ context.Context, raw []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.raw = append(p.raw, raw)
	return nil
}

func newService(t *testing.T) *offers.Service {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	opts := store.DefaultOptions(t.TempDir())
	opts.Clock = clk
	opts.Logger = slog.New(slog.DiscardHandler)
	db, err := store.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	q := store.NewQueue(db, store.QueueOptions{Clock: clk})
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := offers.New(offers.DefaultConfig(), db, q, key, &pubs{}, func() []string { return nil }, clk, protocol.DefaultLimits(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCopiesStateFreeSlotsAndPaused(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	spec := offers.Spec{
		Key:      "k",
		Region:   "eu-de",
		Hardware: protocol.Hardware{Profile: "c1", VCPU: 1, Memory: 1 << 30, Disk: 1 << 30},
		Slots:    4,
		Price:    protocol.Price{Micro: 1, Currency: "USD"},
		MaxLease: time.Hour,
	}
	free := map[string]uint32{}
	for _, tc := range []struct {
		name   string
		hook   bool
		free   map[string]uint32
		paused bool
		want   uint32
	}{
		{"no hook: capacity", false, nil, false, 4},
		{"hook without a count: capacity", true, nil, false, 4},
		{"hook count", true, map[string]uint32{"k": 1}, false, 1},
		{"sold out", true, map[string]uint32{"k": 0}, true, 0},
		{"count above capacity is capped", true, map[string]uint32{"k": 9}, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(free)
			for k, v := range tc.free {
				free[k] = v
			}
			if tc.hook {
				s.SetFreeSlots(func(key string) (uint32, bool) { n, ok := free[key]; return n, ok })
			} else {
				s.SetFreeSlots(nil)
			}
			var st offers.Status
			var err error
			if _, gerr := s.Get("k"); gerr != nil {
				sp := spec
				sp.Paused = tc.paused
				st, err = s.Add(ctx, sp)
			} else {
				st, err = s.Update(ctx, "k", func(sp *offers.Spec) { sp.Paused = tc.paused })
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Current.Slots != tc.want || st.Spec.Slots != 4 {
				t.Fatalf("copy states %d slots (spec %d), want %d (spec 4)", st.Current.Slots, st.Spec.Slots, tc.want)
			}
			if st.Current.Paused != tc.paused || st.Spec.Paused != tc.paused {
				t.Fatalf("paused: copy %v, spec %v, want %v", st.Current.Paused, st.Spec.Paused, tc.paused)
			}
		})
	}
}

// Books keep the copy with the later issued-at, in milliseconds: copies
// made within one millisecond (here, on a clock that stands still) must
// still each be newer than the last.
func TestCopiesAreIssuedStrictlyLater(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	st, err := s.Add(ctx, offers.Spec{
		Key:      "k",
		Region:   "eu-de",
		Hardware: protocol.Hardware{Profile: "c1", VCPU: 1, Memory: 1 << 30},
		Slots:    2,
		Price:    protocol.Price{Micro: 1, Currency: "USD"},
		MaxLease: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	last := st.Current
	for i := 0; i < 3; i++ {
		st, err = s.Update(ctx, "k", func(sp *offers.Spec) { sp.Paused = i%2 == 0 })
		if err != nil {
			t.Fatal(err)
		}
		if !st.Current.Newer(last) {
			t.Fatalf("copy %d issued at %s is not newer than %s", i, st.Current.IssuedAt, last.IssuedAt)
		}
		last = st.Current
	}
	wd, err := s.Withdraw(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if !wd.Current.Newer(last) || !wd.Current.Withdrawn {
		t.Fatal("the withdrawal is not newer than the last live copy")
	}
}
