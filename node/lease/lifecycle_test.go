package lease

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"

	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// waitTerminated waits for the fake runtime to terminate id with cause.
func waitTerminated(t *testing.T, s *tnode, id cid.Cid, cause protocol.EndCause) {
	t.Helper()
	waitFor(t, "termination of "+id.String(), func() bool {
		c := s.prov.terminations(id)
		return len(c) > 0 && c[len(c)-1] == cause
	})
}

func waitState(t *testing.T, n *tnode, id cid.Cid, st protocol.LeaseState, cause protocol.EndCause) {
	t.Helper()
	waitFor(t, "lease "+id.String()+" "+string(st), func() bool {
		s, c := n.state(t, id)
		return s == st && c == cause
	})
}

// The lease's end is a durable job: on the mock clock, with no sleeping,
// it ends the lease on both sides, terminates the instance and frees the
// slot.
func TestExpiry(t *testing.T) {
	e := newEnv(t)
	s, b := e.seller(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 2)
	ctx := context.Background()
	in, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, in.ID, Report{State: protocol.StateRunning, Endpoint: "127.0.0.1:9"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one slot free", func() bool { n, _ := s.Free("main"); return n == 1 })

	e.clk.Add(59 * time.Minute)
	if st, _ := s.state(t, in.ID); st != protocol.StateRunning {
		t.Fatalf("ended early: %s", st)
	}
	e.clk.Add(time.Minute)
	waitTerminated(t, s, in.ID, protocol.CauseExpired)
	waitState(t, s, in.ID, protocol.StateEnded, protocol.CauseExpired)
	waitState(t, b, in.ID, protocol.StateEnded, protocol.CauseExpired)
	waitFor(t, "slot freed", func() bool { n, _ := s.Free("main"); return n == 2 })
	waitFor(t, "free slots published", func() bool { n, _ := s.offers.lastFree("main"); return n == 2 })
	if err := s.SetState(ctx, in.ID, Report{State: protocol.StateRunning}); !errors.Is(err, ErrEnded) {
		t.Fatalf("state change after the end: %v", err)
	}
	if got := s.prov.terminations(in.ID); len(got) != 1 {
		t.Fatalf("terminated %d times", len(got))
	}
}

// A seller's node stops; meanwhile one lease's end passes. On restart that
// lease is terminated at once, the other keeps its time, a lease still
// provisioning is handed to the runtime again, and the accounting holds.
func TestSellerRestart(t *testing.T) {
	e := newEnv(t)
	s, b := e.seller(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 3)
	ctx := context.Background()
	short, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	long, err := b.Propose(ctx, o, params(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, short.ID, Report{State: protocol.StateRunning, Endpoint: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "provisioning", func() bool { return s.prov.provisions(long.ID) == 1 })
	if err := s.Deny(ctx, e.buyer().id, ""); err != nil {
		t.Fatal(err)
	}

	s.close()
	e.clk.Add(2 * time.Hour)
	s.open()

	waitTerminated(t, s, short.ID, protocol.CauseExpired)
	waitState(t, s, short.ID, protocol.StateEnded, protocol.CauseExpired)
	if st, _ := s.state(t, long.ID); st != protocol.StateProvisioning {
		t.Fatalf("the long lease is %s after the restart", st)
	}
	if len(s.prov.terminations(long.ID)) != 0 {
		t.Fatal("the long lease was terminated")
	}
	waitFor(t, "re-provisioning", func() bool { return s.prov.provisions(long.ID) == 2 })
	if s.prov.provisions(short.ID) != 1 {
		t.Fatal("a running lease was provisioned again")
	}
	if len(s.ListDenied()) != 1 {
		t.Fatal("the deny list was lost")
	}
	waitFor(t, "two slots free", func() bool { n, ok := s.Free("main"); return ok && n == 2 })
	// Two more leases fit, a third does not: the held slot was reloaded.
	o = s.offers.current("main")
	for range 2 {
		if _, err := b.Propose(ctx, o, params(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Propose(ctx, o, params(time.Hour)); ReasonOf(err) != protocol.ReasonNoCapacity {
		t.Fatalf("want no capacity, got %v", err)
	}
	e.clk.Add(time.Hour)
	waitTerminated(t, s, long.ID, protocol.CauseExpired)
	waitState(t, b, long.ID, protocol.StateEnded, protocol.CauseExpired)
}

// TestRenewalExtendsInstance: a renewal tells the seller's Provisioner
// the new end, and the lease outlives its old end.
func TestRenewalExtendsInstance(t *testing.T) {
	e := newEnv(t)
	s, b := e.seller(), e.buyer()
	ctx := context.Background()
	spec := sampleOffer("main")
	spec.MaxLease = protocol.MillisOf(3 * time.Hour)
	o := s.offers.add(spec, 5)
	in, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if x := s.prov.extensions(in.ID); len(x) != 0 {
		t.Fatalf("extended before any renewal: %v", x)
	}
	got, err := b.Renew(ctx, in.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The seller extends the instance by a durable job, right after.
	waitFor(t, "the instance extended", func() bool { return len(s.prov.extensions(in.ID)) > 0 })
	if x := s.prov.extensions(in.ID); len(x) != 1 || !x[0].Equal(got.Ends) || !got.Ends.Equal(in.Start.Add(2*time.Hour)) {
		t.Fatalf("Extend calls %v; want one with the new end %v", x, got.Ends)
	}
	// Past the old end the lease goes on; at the new end it expires.
	e.clk.Add(time.Hour + time.Minute)
	if st, _ := s.state(t, in.ID); st == protocol.StateEnded {
		t.Fatal("the seller ended the lease at its old end")
	}
	if c := s.prov.terminations(in.ID); len(c) != 0 {
		t.Fatalf("terminated at the old end: %v", c)
	}
	e.clk.Add(time.Hour)
	waitTerminated(t, s, in.ID, protocol.CauseExpired)
}

func TestRenewal(t *testing.T) {
	e := newEnv(t)
	s, b := e.seller(), e.buyer()
	ctx := context.Background()
	spec := sampleOffer("main")
	spec.MaxLease = protocol.MillisOf(3 * time.Hour)
	o := s.offers.add(spec, 5)
	in, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	start := in.Start
	got, err := b.Renew(ctx, in.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Ends.Equal(start.Add(2*time.Hour)) || got.Extensions != 1 {
		t.Fatalf("renewed: ends %v with %d extensions", got.Ends, got.Extensions)
	}
	sold, _ := s.Get(in.ID)
	if !sold.Ends.Equal(got.Ends) || sold.Extensions != 1 {
		t.Fatalf("the seller's lease ends %v, the buyer's %v", sold.Ends, got.Ends)
	}
	// The chain of extensions checks out from the records alone.
	var exts []*protocol.LeaseExtension
	for _, n := range []*tnode{b, s} {
		_ = n.db.View(func(txn *store.Txn) error {
			rec, err := getRecord(txn, map[*tnode]Role{b: RoleBuyer, s: RoleSeller}[n], in.ID)
			if err != nil {
				return err
			}
			exts = exts[:0]
			for _, eb := range rec.Exts {
				x, err := protocol.DecodeLeaseExtension(eb, e.lim)
				if err != nil {
					t.Fatal(err)
				}
				if err := x.Validate(e.clk.Now(), e.lim); err != nil {
					t.Fatal(err)
				}
				exts = append(exts, x)
			}
			return nil
		})
		end, err := protocol.ExtendedEnd(in.Lease, in.ID, exts)
		if err != nil || !end.Std().Equal(got.Ends) {
			t.Fatalf("extension chain: %v %v", end, err)
		}
	}
	// Beyond the offer's maximum: refused here, without asking.
	_, err = b.Renew(ctx, in.ID, 90*time.Minute)
	var rej *RejectedError
	if !errors.As(err, &rej) || !rej.Local || rej.Reason != protocol.ReasonLengthOutOfRange {
		t.Fatalf("want a local length_out_of_range, got %v", err)
	}
	if _, err := b.Renew(ctx, in.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The expiry moved with the renewals, on both sides.
	e.clk.Add(2*time.Hour + 59*time.Minute)
	if st, _ := s.state(t, in.ID); st == protocol.StateEnded {
		t.Fatal("ended before its renewed end")
	}
	e.clk.Add(time.Minute)
	waitTerminated(t, s, in.ID, protocol.CauseExpired)
	waitState(t, b, in.ID, protocol.StateEnded, protocol.CauseExpired)
	if _, err := b.Renew(ctx, in.ID, time.Minute); !errors.Is(err, ErrEnded) {
		t.Fatalf("renewing an ended lease: %v", err)
	}

	// An offer that is not renewable: refused here.
	spec = sampleOffer("fixed")
	spec.Renewable = false
	fixed := s.offers.add(spec, 5)
	in, err = b.Propose(ctx, fixed, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Renew(ctx, in.ID, time.Hour); !errors.As(err, &rej) || rej.Reason != protocol.ReasonNotRenewable || !rej.Local {
		t.Fatalf("want a local not_renewable, got %v", err)
	}
}

// The buyer ends a lease early, in any state: provisioning, running, and
// a proposal the seller has not answered yet.
func TestEndInAnyState(t *testing.T) {
	e := newEnv(t)
	s, b := e.seller(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 3)
	ctx := context.Background()

	prov, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	run, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, run.ID, Report{State: protocol.StateRunning, Endpoint: "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []cid.Cid{prov.ID, run.ID} {
		in, err := b.End(ctx, id)
		if err != nil || in.State != protocol.StateEnded || in.Cause != protocol.CauseEndedByBuyer || in.Detail != "" {
			t.Fatalf("end: %+v %v", in, err)
		}
		waitTerminated(t, s, id, protocol.CauseEndedByBuyer)
		waitState(t, s, id, protocol.StateEnded, protocol.CauseEndedByBuyer)
		if _, err := b.End(ctx, id); err != nil {
			t.Fatalf("ending twice: %v", err)
		}
	}
	waitFor(t, "slots freed", func() bool { n, _ := s.Free("main"); return n == 3 })

	// A proposal in flight: the seller's capacity owner is held up.
	release := s.offers.hold()
	errc := make(chan error, 1)
	go func() {
		_, err := b.Propose(ctx, s.offers.current("main"), params(time.Hour))
		errc <- err
	}()
	<-s.offers.gated
	var pending *Info
	waitFor(t, "the pending proposal", func() bool {
		l, _ := b.List(RoleBuyer)
		for _, in := range l {
			if in.State == protocol.StateProposed {
				pending = in
				return true
			}
		}
		return false
	})
	in, err := b.End(ctx, pending.Proposal)
	if err != nil || in.State != protocol.StateEnded {
		t.Fatalf("end pending: %+v %v", in, err)
	}
	if err := <-errc; err == nil {
		t.Fatal("the proposal ended by its buyer returned a lease")
	}
	release()
	// The seller decides the proposal after its end: no lease stands.
	waitFor(t, "the proposal's slot back", func() bool {
		n, ok := s.Free("main")
		return ok && n == 3 && len(s.proposals) == 0
	})
	for id, in := range s.leasesByID(t, RoleSeller) {
		if in.State != protocol.StateEnded {
			t.Fatalf("lease %s still %s after every end", id, in.State)
		}
	}
	if n := len(s.leasesByID(t, RoleSeller)); n != 2 {
		t.Fatalf("the seller holds %d leases, want 2", n)
	}
	waitFor(t, "the pending record forgotten", func() bool {
		l, _ := b.List(RoleBuyer)
		return len(l) == 2
	})
}

// Drain: a paused offer refuses new proposals while its leases go on and
// end on time; resumed, it leases again. Deny: a denied buyer is refused,
// others are not, and allowed again it leases.
func TestDrainAndDeny(t *testing.T) {
	e := newEnv(t)
	s, b, c := e.seller(), e.buyer(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 5)
	ctx := context.Background()
	running, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, running.ID, Report{State: protocol.StateRunning, Endpoint: "127.0.0.1:3"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if !s.offers.current("main").Paused {
		t.Fatal("the published copy is not paused")
	}
	if _, err := c.Propose(ctx, o, params(time.Hour)); ReasonOf(err) != protocol.ReasonOfferPaused {
		t.Fatalf("paused offer: %v", err)
	}
	got, err := b.Refresh(ctx, running.ID)
	if err != nil || got.State != protocol.StateRunning || got.Endpoint != "127.0.0.1:3" {
		t.Fatalf("the running lease while draining: %+v %v", got, err)
	}
	e.clk.Add(time.Hour)
	waitTerminated(t, s, running.ID, protocol.CauseExpired)
	if err := s.Resume(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Propose(ctx, s.offers.current("main"), params(time.Hour)); err != nil {
		t.Fatalf("resumed offer: %v", err)
	}

	if err := s.Deny(ctx, b.id, "spam"); err != nil {
		t.Fatal(err)
	}
	if err := s.Deny(ctx, s.id, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("denying itself: %v", err)
	}
	if d := s.ListDenied(); len(d) != 1 || d[0].Peer != b.id || d[0].Note != "spam" {
		t.Fatalf("deny list %+v", d)
	}
	o = s.offers.current("main")
	if _, err := b.Propose(ctx, o, params(time.Hour)); ReasonOf(err) != protocol.ReasonBuyerRefused {
		t.Fatalf("denied buyer: %v", err)
	}
	if _, err := c.Propose(ctx, o, params(time.Hour)); err != nil {
		t.Fatalf("another buyer: %v", err)
	}
	if err := s.Allow(ctx, b.id); err != nil {
		t.Fatal(err)
	}
	if err := s.Allow(ctx, b.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("allowing twice: %v", err)
	}
	if _, err := b.Propose(ctx, o, params(time.Hour)); err != nil {
		t.Fatalf("allowed again: %v", err)
	}
}

// Best walks the book in order: it skips what cannot fit, falls back past
// refusals, reports each, and leases from the first that grants.
func TestBestFallsBack(t *testing.T) {
	e := newEnv(t)
	paused, denying, sold, good := e.seller(), e.seller(), e.seller(), e.seller()
	b := e.buyer()
	ctx := context.Background()

	pausedOffer := paused.offers.add(sampleOffer("a"), 5)
	if err := paused.Pause(ctx, "a"); err != nil { // the book's copy is older: asked, refused
		t.Fatal(err)
	}
	denyOffer := denying.offers.add(sampleOffer("b"), 5)
	if err := denying.Deny(ctx, b.id, ""); err != nil {
		t.Fatal(err)
	}
	short := sampleOffer("c")
	short.MaxLease = protocol.MillisOf(30 * time.Minute)
	shortOffer := sold.offers.add(short, 5) // skipped without asking
	goodOffer := good.offers.add(sampleOffer("d"), 5)
	b.book.set(pausedOffer, denyOffer, shortOffer, goodOffer)

	in, tried, err := b.Best(ctx, market.Query{}, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if in.Seller != good.id {
		t.Fatalf("leased from %s, want the fourth seller", in.Seller)
	}
	var reasons []protocol.Reason
	for _, a := range tried {
		reasons = append(reasons, ReasonOf(a.Err))
	}
	want := []protocol.Reason{protocol.ReasonOfferPaused, protocol.ReasonBuyerRefused, protocol.ReasonLengthOutOfRange}
	if !slices.Equal(reasons, want) {
		t.Fatalf("attempts %v, want %v", reasons, want)
	}
	var rej *RejectedError
	if !errors.As(tried[2].Err, &rej) || !rej.Local || tried[2].Offer != shortOffer.ID() {
		t.Fatalf("the short offer was not skipped locally: %v", tried[2].Err)
	}

	b.book.set(pausedOffer, denyOffer)
	_, tried, err = b.Best(ctx, market.Query{}, params(time.Hour))
	if !errors.Is(err, ErrNoOffer) || len(tried) != 2 {
		t.Fatalf("nothing grants: %v after %d attempts", err, len(tried))
	}
}

// One lease over real TCP on loopback.
func TestProposeOverTCP(t *testing.T) {
	e := newTCPEnv(t)
	s, b := e.seller(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 2)
	in, err := b.Propose(context.Background(), o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(context.Background(), in.ID, Report{State: protocol.StateRunning, Endpoint: "127.0.0.1:8080"}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Refresh(context.Background(), in.ID)
	if err != nil || got.Endpoint != "127.0.0.1:8080" {
		t.Fatalf("%+v %v", got, err)
	}
}

// A seller that cannot be reached: the proposal is given up, and its end
// reaches the seller once it is back (here: a seller whose service has
// not started, then does).
func TestUnreachableSellerGetsTheEnd(t *testing.T) {
	e := newEnv(t)
	e.cfg.DialTimeout = time.Second
	e.cfg.RequestTimeout = time.Second
	s, b := e.seller(), e.buyer()
	o := s.offers.add(sampleOffer("main"), 2)
	s.close()
	_, err := b.Propose(context.Background(), o, params(time.Hour))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("want unreachable, got %v", err)
	}
	l, _ := b.List(RoleBuyer)
	if len(l) != 1 || l[0].State != protocol.StateEnded {
		t.Fatalf("the given-up proposal: %+v", l)
	}
	s.open()
	// The queue retries on its backoff (1s in tests), on the mock clock.
	waitFor(t, "the end delivered", func() bool {
		e.clk.Add(time.Second)
		l, _ := b.List(RoleBuyer)
		return len(l) == 0
	})
}

// Clocks apart within the allowed skew change nothing: the lease is
// granted, both sides agree on its times, and each ends it on its own
// clock. Beyond the skew, the seller refuses the proposal.
func TestClockSkew(t *testing.T) {
	e := newEnv(t)
	skew := e.lim.ClockSkew
	ahead := clock.NewMock()
	ahead.Set(e.clk.Now().Add(skew - 5*time.Second)) // the buyer's clock runs ahead
	s := e.seller()
	b := e.addWithClock(false, ahead)
	o := s.offers.add(sampleOffer("main"), 2)
	ctx := context.Background()
	in, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sold, _ := s.Get(in.ID)
	if !sold.Ends.Equal(in.Ends) || !sold.Start.Equal(in.Start) {
		t.Fatalf("the parties disagree: %v–%v and %v–%v", sold.Start, sold.Ends, in.Start, in.Ends)
	}
	// The lease started on the buyer's clock; the seller ends it when its
	// own clock reaches the end.
	e.clk.Add(time.Hour)
	if st, _ := s.state(t, in.ID); st == protocol.StateEnded {
		t.Fatal("the seller ended the lease before its end")
	}
	e.clk.Add(skew)
	waitTerminated(t, s, in.ID, protocol.CauseExpired)
	ahead.Add(time.Hour)
	waitState(t, b, in.ID, protocol.StateEnded, protocol.CauseExpired)

	far := clock.NewMock()
	far.Set(e.clk.Now().Add(skew + 10*time.Second))
	c := e.addWithClock(false, far)
	if _, err := c.Propose(ctx, s.offers.current("main"), params(time.Hour)); ReasonOf(err) != protocol.ReasonInvalid {
		t.Fatalf("a proposal from beyond the skew: %v", err)
	}
}

// TestRenewalExtendRetried: when the runtime fails to extend the instance,
// the seller tries again (a durable job with backoff) until it succeeds.
func TestRenewalExtendRetried(t *testing.T) {
	e := newEnv(t)
	s, b := e.seller(), e.buyer()
	ctx := context.Background()
	spec := sampleOffer("main")
	spec.MaxLease = protocol.MillisOf(3 * time.Hour)
	o := s.offers.add(spec, 5)
	in, err := b.Propose(ctx, o, params(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s.prov.mu.Lock()
	s.prov.extendFails = 2
	s.prov.mu.Unlock()
	got, err := b.Renew(ctx, in.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for try := 1; try <= 2; try++ {
		waitFor(t, "a failed extend", func() bool { return s.prov.tries() >= try })
		e.clk.Add(time.Second) // the queue's backoff
	}
	waitFor(t, "the instance extended", func() bool { return len(s.prov.extensions(in.ID)) == 1 })
	if x := s.prov.extensions(in.ID); !x[0].Equal(got.Ends) {
		t.Fatalf("extended to %v, want %v", x[0], got.Ends)
	}
}
