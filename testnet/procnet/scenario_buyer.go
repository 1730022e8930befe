package procnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// pollEvery is how often the scenario asks the nodes where a lease stands.
const pollEvery = 50 * time.Millisecond

// buyer runs buyer i's part of the scenario and fills l. It stops at the
// first check that fails; a lease it made and did not see end is ended on
// the way out, even when ctx is over.
func (r *run) buyer(ctx context.Context, i int, l *LeaseReport) {
	b := l.Buyer
	c, err := r.client(b)
	if err != nil {
		r.check(CheckImport, b, false, "%v", err)
		return
	}

	// The appliance.
	bu, err := newBundle(r.bin, b, time.Now())
	if err != nil {
		r.check(CheckImport, b, false, "%v", err)
		return
	}
	t0 := time.Now()
	app, err := importBundle(ctx, c, bu, b+"-echo.tar")
	if err != nil {
		r.check(CheckImport, b, false, "%v", err)
		return
	}
	l.Import, l.Appliance, l.ApplianceSize = ms(time.Since(t0)), app.CID, app.Size
	r.say(b, "appliance", "%s packs its appliance, a bundle of %s (a run script and the spotmesh binary, which serves HTTP), and imports it in %s: CID %s",
		b, protocol.FormatSize(app.Size), l.Import.Std(), short(app.CID))
	r.check(CheckImport, b, true, "%s in %s", protocol.FormatSize(app.Size), l.Import.Std())

	// The best lease among the scenario's offers, cheapest first.
	demand := map[string]string{"profile": ScenarioProfile}
	t0 = time.Now()
	ls, err := c.NewLease(ctx, api.LeaseRequest{Best: demand, Appliance: app.CID, For: api.Duration(r.cfg.Lease)})
	rtt := time.Since(t0)
	if err != nil {
		r.check(CheckLease, b, false, "best lease for %v: %s", demand, leaseRefusal(err))
		return
	}
	granted := time.Now()
	// The lease runs from the start of the proposal the seller granted
	// (signed by the buyer just before it went out); the seller fetches
	// the appliance as soon as it has granted it, which may be well before
	// a loaded buyer's node answers the request.
	start := ls.Start
	if start.IsZero() || start.After(granted) {
		start = granted
	}
	ended := false
	defer func() {
		if !ended {
			r.endOnExit(ctx, b, ls.ID, l.Seller)
		}
	}()
	seller := r.nodeOf(ls.Seller)
	l.Seller, l.Lease, l.OfferID, l.Price, l.Refused = seller, ls.ID, ls.OfferID, ls.PriceText, len(ls.Attempts)
	l.RoundTrip = ms(rtt)
	fallback := ""
	if len(ls.Attempts) > 0 {
		fallback = fmt.Sprintf("; %d offer(s) refused first (%s), so it took the next", len(ls.Attempts), attemptWords(ls.Attempts))
	}
	r.say(b, "lease", "%s takes the best lease for %s: %s's offer at %s for %s, countersigned in %s (lease %s)%s",
		b, demandWords(demand), seller, ls.PriceText, protocol.FormatDuration(r.cfg.Lease), l.RoundTrip.Std(), short(ls.ID), fallback)
	r.check(CheckLease, b, true, "lease %s from %s in %s", ls.ID, seller, l.RoundTrip.Std())
	if seller == "" {
		r.check(CheckRuns, b, false, "the lease's seller %s is no node of this testnet", ls.Seller)
		return
	}

	// The instance: fetched, started, answering.
	r.say(b, "instance", "%s fetches the appliance from %s, verifies it block by block and starts it", seller, b)
	for {
		if ls.State == string(protocol.StateRunning) && ls.Endpoint != "" {
			break
		}
		if ls.State == string(protocol.StateEnded) {
			ended = true
			r.check(CheckRuns, b, false, "the lease ended before its instance ran: %s %s", ls.Cause, ls.Detail)
			return
		}
		if !sleepCtx(ctx, pollEvery) {
			r.check(CheckRuns, b, false, "not running within the scenario's time: %s (%s)", ls.State, ls.Detail)
			return
		}
		if next, err := c.Lease(ctx, ls.ID); err == nil {
			ls = next
		}
	}
	l.Endpoint = ls.Endpoint
	sc, err := r.client(seller)
	if err != nil {
		r.check(CheckRuns, b, false, "%v", err)
		return
	}
	in, err := instanceOf(ctx, sc, ls.ID)
	if err != nil {
		r.check(CheckRuns, b, false, "%s's instance of lease %s: %v", seller, short(ls.ID), err)
		return
	}
	l.InstancePID = in.PID
	if !in.Created.IsZero() {
		l.Transfer = ms(max(in.Created.Sub(start), time.Millisecond))
		l.TransferRate = rate(l.ApplianceSize, l.Transfer.Std())
	}
	r.check(CheckRuns, b, true, "pid %d on %s, endpoint %s", in.PID, seller, ls.Endpoint)
	var page string
	err = poll(ctx, pollEvery, func() (bool, error) {
		var err error
		page, err = r.get(ctx, ls.Endpoint)
		return err == nil && strings.Contains(page, ls.ID), nil
	})
	if err != nil {
		r.check(CheckAnswers, b, false, "http://%s/ did not answer with the lease's ID: last answer %q", ls.Endpoint, strings.TrimSpace(page))
		return
	}
	l.ToRunning = ms(time.Since(start))
	r.say(b, "instance", "the appliance reached %s in %s (%s/s); the instance answers at http://%s/, %s after the lease: %q",
		seller, l.Transfer.Std(), protocol.FormatSize(l.TransferRate), ls.Endpoint, l.ToRunning.Std(), firstLine(page))
	r.check(CheckAnswers, b, true, "http://%s/ in %s", ls.Endpoint, l.ToRunning.Std())

	// Receipts, and the fault.
	var restarted time.Time
	if r.cfg.Fault == FaultKillSeller && i == 0 {
		var ok bool
		if restarted, ok = r.killSeller(ctx, b, seller, ls, l); !ok {
			return
		}
	}
	if r.cfg.Fault == FaultPartitionSeller && i == 0 {
		var ok bool
		if restarted, ok = r.partitionSeller(ctx, b, seller, ls); !ok {
			return
		}
	}
	r.say(b, "receipts", "%s meters the instance and signs a usage receipt every %s; %s checks each and acknowledges it",
		seller, protocol.FormatDuration(r.cfg.ReceiptInterval), b)
	rs, done := r.waitReceipts(ctx, c, ls.ID, r.cfg.Receipts, restarted)
	acked, disputed := answers(rs)
	switch {
	case !done:
		r.check(CheckReceipts, b, false, "%d acknowledged, %d disputed when the scenario's time ran out", acked, len(disputed))
		return
	case acked == 0 || (len(disputed) > 0 && r.cfg.Fault == ""):
		r.check(CheckReceipts, b, false, "%d acknowledged, %d disputed: %s", acked, len(disputed), strings.Join(disputed, "; "))
		return
	}
	r.check(CheckReceipts, b, true, "%d acknowledged, %d disputed", acked, len(disputed))

	// The end, on both sides.
	if len(rs) > 0 && rs[len(rs)-1].Final {
		r.say(b, "end", "the lease's time is up: %s has acknowledged %d receipt(s), the final one included", b, acked)
	} else {
		r.say(b, "end", "%s has acknowledged %d receipt(s) and ends the lease", b, acked)
	}
	tEnd := time.Now()
	if _, err := c.EndLease(ctx, ls.ID); err != nil {
		r.check(CheckEnded, b, false, "end lease %s: %v", ls.ID, err)
		return
	}
	ended = true
	if !r.waitEnded(ctx, b, seller, ls.ID) {
		return
	}

	// The settlement, on both sides.
	sb, ss, ok := r.waitSettled(ctx, b, seller, ls.ID)
	if !ok {
		return
	}
	l.Settle = ms(time.Since(tEnd))
	set := sb.Settlement
	l.Settlement, l.SettlementCID, l.Total, l.Currency = set.State, set.CID, set.Total, set.Currency
	r.settled(ctx, b, seller, ls, l, sb, ss)
	r.stopped(ctx, b, seller, ls.ID)
}

// importBundle streams the bundle to the node, which imports and pins it.
func importBundle(ctx context.Context, c *api.Client, bu *bundle, name string) (api.Appliance, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := bu.writeTo(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	app, err := c.ImportAppliance(ctx, pr, api.ImportOptions{Name: name, Format: "bundle", Size: bu.size()})
	pr.CloseWithError(errors.New("import over"))
	werr := <-done
	if err != nil {
		return app, fmt.Errorf("import %s: %w", name, err)
	}
	if werr != nil {
		return app, fmt.Errorf("pack %s: %w", name, werr)
	}
	if app.Size != uint64(bu.size()) {
		return app, fmt.Errorf("import %s: the node holds %d bytes, %d were sent", name, app.Size, bu.size())
	}
	return app, nil
}

// killSeller kills the lease's seller once the buyer has acknowledged a
// receipt, checks that the instance answers while the seller is down,
// and starts the seller again after the downtime. It returns when the
// seller is back.
func (r *run) killSeller(ctx context.Context, b, seller string, ls api.Lease, l *LeaseReport) (time.Time, bool) {
	c, err := r.client(b)
	if err != nil {
		return time.Time{}, r.check(CheckKill, b, false, "%v", err)
	}
	if _, done := r.waitReceipts(ctx, c, ls.ID, 1, time.Time{}); !done {
		return time.Time{}, r.check(CheckKill, b, false, "no receipt acknowledged to kill %s after", seller)
	}
	nd, err := r.n.Kill(ctx, seller)
	if err != nil {
		return time.Time{}, r.check(CheckKill, b, false, "kill %s: %v", seller, err)
	}
	down := time.Now()
	r.say(b, "fault", "FAULT: %s is killed (SIGKILL, pid %d) in the middle of the lease", seller, nd.PID)
	r.check(CheckKill, b, true, "%s (pid %d) killed mid-lease", seller, nd.PID)
	page, err := r.get(ctx, ls.Endpoint)
	if r.check(CheckOutlives, b, err == nil && strings.Contains(page, ls.ID), "http://%s/ while %s is down: %q %v", ls.Endpoint, seller, firstLine(page), errOrNil(err)) {
		r.say(b, "fault", "the instance still answers at http://%s/: it runs in its own session and outlives its seller's crash", ls.Endpoint)
	}
	if !sleepCtx(ctx, r.cfg.Downtime) {
		return time.Time{}, r.check(CheckRestart, b, false, "interrupted while %s was down", seller)
	}
	back, err := r.n.Start(ctx, seller)
	if err != nil {
		return time.Time{}, r.check(CheckRestart, b, false, "start %s: %v", seller, err)
	}
	at := time.Now()
	l.SellerDown = ms(at.Sub(down))
	r.say(b, "fault", "%s starts again from its home (pid %d) after %s down: it re-adopts the instance and catches up on the receipts it owes",
		seller, back.PID, l.SellerDown.Std())
	r.check(CheckRestart, b, true, "%s back after %s (pid %d)", seller, l.SellerDown.Std(), back.PID)
	return at, true
}

// partitionSeller cuts the seller off after the first acknowledged
// receipt, for the scenario's downtime, then heals the network.
func (r *run) partitionSeller(ctx context.Context, b, seller string, ls api.Lease) (time.Time, bool) {
	c, err := r.client(b)
	if err != nil {
		return time.Time{}, r.check(CheckPartition, b, false, "%v", err)
	}
	if _, done := r.waitReceipts(ctx, c, ls.ID, 1, time.Time{}); !done {
		return time.Time{}, r.check(CheckPartition, b, false, "no receipt acknowledged to cut %s off after", seller)
	}
	if _, err := r.n.Partition(ctx, seller); err != nil {
		return time.Time{}, r.check(CheckPartition, b, false, "partition %s: %v (the fault needs a testnet made with --netns)", seller, err)
	}
	r.say(b, "fault", "FAULT: %s is cut off from every other node in the middle of the lease", seller)
	r.check(CheckPartition, b, true, "%s cut off mid-lease", seller)
	if !sleepCtx(ctx, r.cfg.Downtime) {
		return time.Time{}, r.check(CheckHeal, b, false, "interrupted while %s was cut off", seller)
	}
	if _, err := r.n.Heal(ctx, seller); err != nil {
		return time.Time{}, r.check(CheckHeal, b, false, "heal: %v", err)
	}
	at := time.Now()
	r.say(b, "fault", "the network is healed after %s: %s sends the receipts it owes; %s answers each, and may dispute a period in which it could not reach the instance",
		protocol.FormatDuration(r.cfg.Downtime), seller, b)
	r.check(CheckHeal, b, true, "healed after %s", protocol.FormatDuration(r.cfg.Downtime))
	return at, true
}

// waitReceipts waits until the buyer has acknowledged at least need
// receipts (one of them issued after since, when set), has disputed one,
// or holds the final receipt. done is false when ctx ended first.
func (r *run) waitReceipts(ctx context.Context, c *api.Client, lease string, need int, since time.Time) (rs []api.Receipt, done bool) {
	err := poll(ctx, pollEvery, func() (bool, error) {
		resp, err := c.Receipts(ctx, lease)
		if err != nil {
			return false, nil
		}
		rs = resp.Receipts
		acked, disputed := answers(rs)
		fresh := since.IsZero()
		for _, x := range rs {
			if x.State == api.ReceiptAcked && !x.Issued.Before(since) {
				fresh = true
			}
			if x.Final && x.State != api.ReceiptPending {
				return true, nil
			}
		}
		return len(disputed) > 0 || (acked >= need && fresh), nil
	})
	return rs, err == nil
}

// answers counts a chain's acknowledged receipts and describes its
// disputed ones.
func answers(rs []api.Receipt) (acked int, disputed []string) {
	for _, x := range rs {
		switch x.State {
		case api.ReceiptAcked:
			acked++
		case api.ReceiptDisputed:
			why := "disputed"
			if x.Dispute != nil {
				why = x.Dispute.Words
			}
			disputed = append(disputed, fmt.Sprintf("receipt %d: %s", x.Seq, why))
		}
	}
	return acked, disputed
}

// waitEnded waits until both nodes hold the lease as ended.
func (r *run) waitEnded(ctx context.Context, b, seller, lease string) bool {
	states := map[string]string{}
	err := poll(ctx, pollEvery, func() (bool, error) {
		done := true
		for _, side := range []struct{ node, role string }{{b, "buyer"}, {seller, "seller"}} {
			c, err := r.client(side.node)
			if err != nil {
				return false, err
			}
			list, err := c.Leases(ctx, side.role)
			if err != nil {
				states[side.node] = err.Error()
				done = false
				continue
			}
			states[side.node] = "no such lease"
			for _, x := range list {
				if x.ID == lease {
					states[side.node] = x.State
					if x.Cause != "" {
						states[side.node] += " (" + x.Cause + ")"
					}
				}
			}
			if !strings.HasPrefix(states[side.node], string(protocol.StateEnded)) {
				done = false
			}
		}
		return done, nil
	})
	return r.check(CheckEnded, b, err == nil, "%s: %s; %s: %s", b, states[b], seller, states[seller])
}

// waitSettled waits until both nodes hold a settlement of the lease.
func (r *run) waitSettled(ctx context.Context, b, seller, lease string) (sb, ss api.LeaseSettlement, ok bool) {
	r.say(b, "settle", "%s issues the final receipt and proposes the settlement; %s checks it against its own chain and countersigns", seller, b)
	final := func(s api.LeaseSettlement) bool { return s.Settlement != nil || s.Status == "claimed" }
	err := poll(ctx, pollEvery, func() (bool, error) {
		bc, err := r.client(b)
		if err != nil {
			return false, err
		}
		sc, err := r.client(seller)
		if err != nil {
			return false, err
		}
		if x, err := bc.Settlement(ctx, lease); err == nil {
			sb = x
		}
		if x, err := sc.Settlement(ctx, lease); err == nil {
			ss = x
		}
		return final(sb) && final(ss), nil
	})
	if err != nil {
		return sb, ss, r.check(CheckSettled, b, false, "not settled within the scenario's time: the lease is lost: %s: %s; %s: %s",
			b, billing(sb), seller, billing(ss))
	}
	return sb, ss, true
}

// billing describes where a lease's billing stands at a node.
func billing(s api.LeaseSettlement) string {
	if s.Lease == "" {
		return "no billing yet"
	}
	return fmt.Sprintf("%s, %d receipts, %d acknowledged, final %v", s.Status, s.HeadSeq, s.AckedSeq, s.Final)
}

// settled checks the settlement and the receipt chains on both sides.
func (r *run) settled(ctx context.Context, b, seller string, ls api.Lease, l *LeaseReport, sb, ss api.LeaseSettlement) {
	x, y := sb.Settlement, ss.Settlement
	var bad []string
	switch {
	case x == nil || y == nil:
		bad = append(bad, fmt.Sprintf("claimed instead of settled (%s: %s; %s: %s)", b, sb.Status, seller, ss.Status))
	case x.CID != y.CID:
		bad = append(bad, fmt.Sprintf("the two sides hold different settlements: %s and %s", x.CID, y.CID))
	case !x.SellerSigned || !x.BuyerSigned || !y.SellerSigned || !y.BuyerSigned:
		bad = append(bad, "a signature is missing or does not verify")
	case x.State != "settled" && (r.cfg.Fault == "" || x.State != "disputed"):
		bad = append(bad, fmt.Sprintf("state %s, want settled", x.State))
	}
	if len(bad) > 0 {
		r.check(CheckSettled, b, false, "%s", strings.Join(bad, "; "))
		return
	}
	r.say(b, "settle", "both signed the settlement (%s): %d receipts, %s owed to %s, %s after the end",
		x.State, x.HeadSeq, money(x.Total, x.Currency), seller, l.Settle.Std())
	r.check(CheckSettled, b, true, "%s %s: %d receipts, %s", x.State, short(x.CID), x.HeadSeq, money(x.Total, x.Currency))

	// The chains, receipt by receipt.
	bc, err1 := r.client(b)
	sc, err2 := r.client(seller)
	if err := errors.Join(err1, err2); err != nil {
		r.check(CheckChains, b, false, "%v", err)
		return
	}
	rb, err1 := bc.Receipts(ctx, ls.ID)
	rs, err2 := sc.Receipts(ctx, ls.ID)
	if err := errors.Join(err1, err2); err != nil {
		r.check(CheckChains, b, false, "%v", err)
		return
	}
	acked, disputed := answers(rb.Receipts)
	l.Receipts, l.Acked, l.Disputed = len(rb.Receipts), acked, len(disputed)
	if msg := chainsAgree(rb.Receipts, rs.Receipts, x, ls); msg != "" {
		r.check(CheckChains, b, false, "%s", msg)
		return
	}
	r.check(CheckChains, b, true, "%d receipts, the same on both sides, adding up to %s", len(rb.Receipts), money(x.HeadTotal, x.Currency))
}

// chainsAgree compares the buyer's and the seller's receipt chains with
// each other and with the settlement: "" when they agree, else what does
// not.
func chainsAgree(rb, rs []api.Receipt, set *api.SettlementRecord, ls api.Lease) string {
	if len(rb) != len(rs) {
		return fmt.Sprintf("the buyer holds %d receipts, the seller %d", len(rb), len(rs))
	}
	if uint64(len(rb)) != set.HeadSeq {
		return fmt.Sprintf("%d receipts, the settlement's head is receipt %d", len(rb), set.HeadSeq)
	}
	var sum, ackedTotal int64
	for i, x := range rb {
		switch {
		case x.CID != rs[i].CID:
			return fmt.Sprintf("receipt %d differs: %s at the buyer, %s at the seller", i+1, x.CID, rs[i].CID)
		case x.Seq != uint64(i+1):
			return fmt.Sprintf("receipt %d has number %d", i+1, x.Seq)
		case i > 0 && x.Prev != rb[i-1].CID:
			return fmt.Sprintf("receipt %d does not name receipt %d", i+1, i)
		case x.Final != (i == len(rb)-1):
			return fmt.Sprintf("receipt %d of %d: final %v", i+1, len(rb), x.Final)
		}
		sum += x.Amount
		if x.Total != sum {
			return fmt.Sprintf("receipt %d: total %d, its amounts add up to %d", i+1, x.Total, sum)
		}
		if x.State == api.ReceiptAcked {
			ackedTotal = x.Total
		}
	}
	if len(rb) == 0 {
		return "no receipts"
	}
	head := rb[len(rb)-1]
	want, err := protocol.Charge(ls.Price, max(ls.Slots, 1), protocol.Millis(head.BilledMs))
	switch {
	case err != nil:
		return err.Error()
	case head.Total != want:
		return fmt.Sprintf("a total of %d for %d ms at %s, want %d", head.Total, head.BilledMs, ls.PriceText, want)
	case set.HeadTotal != head.Total:
		return fmt.Sprintf("the settlement's head total is %d, the chain's %d", set.HeadTotal, head.Total)
	case set.Total != ackedTotal:
		return fmt.Sprintf("the settlement's total is %d, the acknowledged receipts' %d", set.Total, ackedTotal)
	}
	return ""
}

// stopped checks that the seller stopped the lease's instance and that
// its process is gone.
func (r *run) stopped(ctx context.Context, b, seller, lease string) {
	var in api.Instance
	err := poll(ctx, pollEvery, func() (bool, error) {
		c, err := r.client(seller)
		if err != nil {
			return false, err
		}
		x, err := instanceOf(ctx, c, lease)
		if err != nil {
			return false, nil
		}
		in = x
		return in.State != "provisioning" && in.State != "running", nil
	})
	if err != nil {
		r.check(CheckStopped, b, false, "%s's instance of lease %s is %s after the lease ended", seller, short(lease), in.State)
		return
	}
	gone := in.PID <= 0
	if !gone {
		_ = poll(ctx, pollEvery, func() (bool, error) {
			st, err := readStat(in.PID)
			gone = err != nil || st.ended()
			return gone, nil
		})
	}
	if !gone {
		r.check(CheckStopped, b, false, "instance %s, but its pid %d still runs", in.State, in.PID)
		return
	}
	r.say(b, "settle", "%s stopped the instance (%s)", seller, in.State)
	r.check(CheckStopped, b, true, "%s, pid %d gone", in.State, in.PID)
}

// endOnExit ends a lease the scenario made and leaves unfinished (a
// failed check, or an interruption), and waits briefly for its seller to
// stop the instance, so that taking the testnet down leaves none behind.
func (r *run) endOnExit(ctx context.Context, b, lease, seller string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	c, err := r.client(b)
	if err != nil {
		return
	}
	if _, err := c.EndLease(ctx, lease); err != nil {
		r.say(b, "cleanup", "could not end lease %s: %v", short(lease), err)
		return
	}
	r.say(b, "cleanup", "%s ends lease %s, which the scenario did not finish", b, short(lease))
	if seller == "" {
		return
	}
	_ = poll(ctx, pollEvery, func() (bool, error) {
		sc, err := r.client(seller)
		if err != nil {
			return true, nil
		}
		in, err := instanceOf(ctx, sc, lease)
		return err != nil || (in.State != "provisioning" && in.State != "running"), nil
	})
}

// instanceOf finds the seller's instance of a lease.
func instanceOf(ctx context.Context, c *api.Client, lease string) (api.Instance, error) {
	list, err := c.Instances(ctx)
	if err != nil {
		return api.Instance{}, err
	}
	for _, in := range list {
		if in.LeaseID == lease {
			return in, nil
		}
	}
	return api.Instance{}, errors.New("no instance")
}

// nodeOf names the testnet's node with the peer ID, or "".
func (r *run) nodeOf(id peer.ID) string {
	for _, nd := range r.n.Manifest().Nodes {
		if nd.PeerID == id {
			return nd.Name
		}
	}
	return ""
}

// leaseRefusal puts a failed lease request in words.
func leaseRefusal(err error) string {
	var e *api.Error
	if errors.As(err, &e) && len(e.Attempts) > 0 {
		return fmt.Sprintf("%s (%s)", e.Message, attemptWords(e.Attempts))
	}
	return err.Error()
}

func attemptWords(as []api.Attempt) string {
	var out []string
	for _, a := range as {
		w := a.Words
		if w == "" {
			w = a.Error
		}
		out = append(out, a.OfferID+": "+w)
	}
	return strings.Join(first(out, 3), "; ")
}

// demandWords prints book filters: profile c1m1, region eu.
func demandWords(d map[string]string) string {
	var out []string
	for k, v := range d {
		out = append(out, k+" "+v)
	}
	sort.Strings(out)
	return strings.Join(out, ", ") + ", cheapest first"
}

// money prints micro-units: 0.000123USD.
func money(micro int64, currency string) string { return protocol.FormatMicro(micro) + currency }

// short shortens a CID for a sentence: bafyrei…x7k2q.
func short(c string) string {
	if len(c) <= 16 {
		return c
	}
	return c[:7] + "…" + c[len(c)-5:]
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}

// sleepCtx waits d, or less when ctx ends: it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
