package lease

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/spotmesh/spotmesh/protocol"
)

func TestProposeGrantsLease(t *testing.T) {
	e := newEnv(t)
	seller, buyer := e.seller(), e.buyer()
	offer := seller.offers.add(sampleOffer("c4m8-1"), 10)
	ctx := context.Background()

	in, err := buyer.Propose(ctx, offer, params(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if in.State != protocol.StateProvisioning || in.Role != RoleBuyer || in.Seller != seller.id || in.Buyer != buyer.id {
		t.Fatalf("buyer's view: %+v", in)
	}
	if want := e.clk.Now().Add(2 * time.Hour).Truncate(time.Millisecond); !in.Ends.Equal(want) {
		t.Fatalf("ends %v, want %v", in.Ends, want)
	}
	// Both sides hold the same signed lease, and it verifies on its own.
	sold, err := seller.Get(in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sold.Raw, in.Raw) || sold.Role != RoleSeller {
		t.Fatal("the seller's lease differs from the buyer's")
	}
	if err := in.Lease.Validate(e.clk.Now(), e.lim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "provisioning", func() bool { return seller.prov.provisions(in.ID) == 1 })
	waitFor(t, "free slots published", func() bool { n, ok := seller.offers.lastFree("c4m8-1"); return ok && n == 9 })
	if n, ok := seller.Free("c4m8-1"); !ok || n != 9 {
		t.Fatalf("Free = %d %v, want 9", n, ok)
	}

	// The runtime reports the instance running; the buyer asks and sees it.
	if err := seller.SetState(ctx, in.ID, Report{State: protocol.StateRunning, Endpoint: "127.0.0.1:4000"}); err != nil {
		t.Fatal(err)
	}
	got, err := buyer.Refresh(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != protocol.StateRunning || got.Endpoint != "127.0.0.1:4000" {
		t.Fatalf("refreshed: %s at %q", got.State, got.Endpoint)
	}
	if got, _ := buyer.Get(in.ID); got.State != protocol.StateRunning {
		t.Fatalf("stored state %s after refresh", got.State)
	}
	// Running cannot go back to provisioning; a bad endpoint is refused.
	if err := seller.SetState(ctx, in.ID, Report{State: protocol.StateProvisioning}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("running to provisioning: %v", err)
	}
	if err := seller.SetState(ctx, in.ID, Report{State: protocol.StateRunning, Endpoint: "a\nb"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad endpoint: %v", err)
	}
	list, err := buyer.List("")
	if err != nil || len(list) != 1 || list[0].ID != in.ID {
		t.Fatalf("buyer's list: %v %v", list, err)
	}
}

// 500 proposals from 50 buyers at once against 100 slots: exactly 100
// leases, 400 clear refusals, and both sides agree on every lease.
func TestConcurrentProposalsNeverOversell(t *testing.T) {
	const buyers, each, capacity = 50, 10, 100
	e := newEnv(t)
	seller := e.seller()
	offer := seller.offers.add(sampleOffer("big"), capacity)
	var bs []*tnode
	for range buyers {
		bs = append(bs, e.buyer())
	}
	type result struct {
		b   *tnode
		in  *Info
		err error
	}
	results := make(chan result, buyers*each)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, b := range bs {
		for range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				in, err := b.Propose(context.Background(), offer, params(time.Hour))
				results <- result{b, in, err}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(results)

	granted := map[cid.Cid][]byte{}
	refused := 0
	for r := range results {
		switch {
		case r.err == nil:
			if _, dup := granted[r.in.ID]; dup {
				t.Fatalf("lease %s granted twice", r.in.ID)
			}
			granted[r.in.ID] = r.in.Raw
		case ReasonOf(r.err) == protocol.ReasonNoCapacity:
			refused++
			var rej *RejectedError
			if !errors.As(r.err, &rej) || rej.Rejection == nil || rej.Detail == "" {
				t.Fatalf("refusal without the seller's signed reason: %v", r.err)
			}
		default:
			t.Fatalf("unexpected outcome: %v", r.err)
		}
	}
	if len(granted) != capacity || refused != buyers*each-capacity {
		t.Fatalf("%d leases and %d refusals, want %d and %d", len(granted), refused, capacity, buyers*each-capacity)
	}
	// The seller stored exactly those leases, with the same bytes, and so
	// did their buyers.
	sold := seller.leasesByID(t, RoleSeller)
	if len(sold) != capacity {
		t.Fatalf("seller stored %d leases, want %d", len(sold), capacity)
	}
	bought := 0
	for _, b := range bs {
		for id, in := range b.leasesByID(t, RoleBuyer) {
			bought++
			s, ok := sold[id]
			if !ok || !bytes.Equal(s.Raw, in.Raw) || !bytes.Equal(granted[id], in.Raw) || s.Buyer != b.id {
				t.Fatalf("lease %s: the buyer's copy and the seller's disagree", id)
			}
		}
		if l, _ := b.List(RoleBuyer); len(l) != len(b.leasesByID(t, RoleBuyer)) {
			t.Fatalf("buyer %s kept pending proposals after refusals", b.id)
		}
	}
	if bought != capacity {
		t.Fatalf("buyers stored %d leases, want %d", bought, capacity)
	}
	var slots uint32
	for _, s := range sold {
		slots += s.Slots
	}
	if slots != capacity {
		t.Fatalf("%d slots leased of %d", slots, capacity)
	}
	waitFor(t, "sold out published", func() bool { n, ok := seller.offers.lastFree("big"); return ok && n == 0 })
	if seller.offers.current("big").Slots != 0 {
		t.Fatal("the offer's copy does not say sold out")
	}
}

// Free-slot counts reach the OfferSource coalesced: at most one update
// per interval, the latest count last.
func TestFreeSlotsCoalesced(t *testing.T) {
	e := newEnv(t)
	e.cfg.PublishInterval = 100 * time.Millisecond
	s := e.seller()
	o := s.offers.add(sampleOffer("main"), 50)
	var bs []*tnode
	for range 5 {
		bs = append(bs, e.buyer())
	}
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 6 {
				if _, err := b.Propose(context.Background(), o, params(time.Hour)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "20 free published", func() bool { n, _ := s.offers.lastFree("main"); return n == 20 })
	s.offers.mu.Lock()
	updates := len(s.offers.offer["main"].frees)
	s.offers.mu.Unlock()
	if updates >= 30 {
		t.Fatalf("%d updates for 30 leases: not coalesced", updates)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"ttl":     func(c *Config) { c.ProposalTTL = time.Hour },
		"timeout": func(c *Config) { c.RequestTimeout = 0 },
		"dial":    func(c *Config) { c.DialTimeout = -1 },
		"batch":   func(c *Config) { c.MaxBatch = 1000 },
		"commits": func(c *Config) { c.MaxCommits = 0 },
		"queue":   func(c *Config) { c.QueueDepth = -1 },
		"copies":  func(c *Config) { c.OfferCopies = 0 },
		"resend":  func(c *Config) { c.ResendEnd = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: bad config accepted", name)
		}
	}
}

// A proposal sent again, even twice at once, gets the one lease granted
// on it, and holds one slot.
func TestDuplicateProposal(t *testing.T) {
	e := newEnv(t)
	s, b := e.seller(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 5)
	prop, err := b.buildProposal(o, offerCID(o), params(time.Hour), e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := protocol.Sign(prop, b.key)
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := protocol.Marshal(o)
	req := appendFrame(appendFrame(nil, tagPropose, raw), tagOffer, ob)
	answers := make(chan answer, 3)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); answers <- b.sendRaw(t, s, req) }()
	}
	wg.Wait()
	close(answers)
	var first []byte
	for a := range answers {
		if a.tag == tagRejection {
			// A copy that arrives while the first is being stored may
			// be told to come back.
			if r := rejection(t, a); r.Reason != protocol.ReasonBusy {
				t.Fatalf("duplicate refused for %s: %s", r.Reason, r.Detail)
			}
			continue
		}
		if a.tag != tagLease {
			t.Fatalf("answer 0x%02x", a.tag)
		}
		if first == nil {
			first = a.body
		} else if !bytes.Equal(first, a.body) {
			t.Fatal("one proposal, two different leases")
		}
	}
	if a := b.sendRaw(t, s, req); a.tag != tagLease || !bytes.Equal(a.body, first) {
		t.Fatal("a retry did not get the same lease")
	}
	if n := len(s.leasesByID(t, RoleSeller)); n != 1 {
		t.Fatalf("%d leases stored", n)
	}
	waitFor(t, "4 slots free", func() bool { n, _ := s.Free("main"); return n == 4 })
}

func TestReadFrameBounds(t *testing.T) {
	lim := protocol.DefaultLimits()
	ok := appendFrame(nil, tagStatus, make([]byte, maxCIDBytes))
	if _, body, err := readFrame(bufio.NewReader(bytes.NewReader(ok)), lim, tagStatus); err != nil || len(body) != maxCIDBytes {
		t.Fatalf("frame at the bound: %v", err)
	}
	cases := map[string][]byte{
		"over the bound":   appendFrame(nil, tagStatus, make([]byte, maxCIDBytes+1)),
		"unexpected tag":   appendFrame(nil, tagLease, []byte{1}),
		"truncated body":   appendFrame(nil, tagStatus, make([]byte, 10))[:8],
		"huge length":      {tagPropose, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"empty":            {},
		"length overflows": {tagPropose, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, b := range cases {
		if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(b)), lim, tagStatus, tagPropose); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, tagPropose, []byte("proposal")), tagOffer, nil))
	f.Add(appendFrame(nil, tagStatus, protocol.CIDOf([]byte("x")).Bytes()))
	f.Add([]byte{tagRenew, 0x80})
	lim := protocol.DefaultLimits()
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for {
			tag, body, err := readFrame(r, lim, tagPropose, tagOffer, tagRenew, tagEnd, tagStatus)
			if err != nil {
				return
			}
			if len(body) > maxBody(tag, lim) {
				t.Fatalf("frame 0x%02x of %d bytes passed its bound", tag, len(body))
			}
		}
	})
}
