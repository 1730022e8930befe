package settle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// sellerChanged starts billing a lease sold that runs, and closes it when
// the lease ended.
func (s *Service) sellerChanged(l *Lease) {
	if l.State != protocol.StateRunning && l.State != protocol.StateEnded {
		return
	}
	defer s.lock(l.ID)()
	now := s.clk.Now()
	err := s.db.Update(func(t *store.Txn) error {
		st, ok, err := getState(t, true, l.ID)
		if err != nil {
			return err
		}
		if !ok {
			st = newState(true, l)
			if l.State == protocol.StateRunning {
				since := min(max(protocol.TimeOf(now), l.Lease.Proposal.Start), protocol.TimeOf(l.Ends))
				st.Since, st.To = since, since
			} else {
				// Ended before it ran: nothing to bill, only to settle.
				st.Final = true
				st.Ended = endedAt(l, now)
			}
			st.Updated = now.UnixNano()
			if err := putState(t, l.ID, st); err != nil {
				return err
			}
			if st.Final {
				return t.Schedule(store.Job{Kind: JobSend, ID: l.ID.String()})
			}
			return t.Schedule(store.Job{Kind: JobMeter, ID: l.ID.String(), Due: st.To.Std().Add(time.Duration(st.Interval) * time.Millisecond)})
		}
		if l.State != protocol.StateEnded {
			// Running: make sure it is metered (a job lost to an error, or
			// a state written before this version).
			if st.Final {
				return nil
			}
			if _, err := t.Job(JobMeter, l.ID.String()); errors.Is(err, store.ErrNotFound) {
				return t.Schedule(store.Job{Kind: JobMeter, ID: l.ID.String(), Due: st.To.Std().Add(time.Duration(st.Interval) * time.Millisecond)})
			} else if err != nil {
				return err
			}
			return nil
		}
		if st.Final || st.Ended != 0 {
			return nil
		}
		st.Ended = endedAt(l, now)
		st.Updated = now.UnixNano()
		if err := putState(t, l.ID, st); err != nil {
			return err
		}
		return t.Schedule(store.Job{Kind: JobMeter, ID: l.ID.String()})
	})
	if err != nil && !isClosed(err) {
		s.log.Error("start billing", "lease", l.ID, "err", err)
	}
}

func newState(sold bool, l *Lease) *state {
	p := &l.Lease.Proposal
	other := p.Seller
	if sold {
		other = p.Buyer
	}
	return &state{
		Sold: sold, Counterparty: other.String(), Currency: p.Price.Currency,
		Interval: int64(p.ReceiptInterval), Grace: int64(p.PaymentGrace),
		Status: StatusOpen,
	}
}

// endedAt is when a lease ended as the lease service says, never after
// its end nor after now.
func endedAt(l *Lease, now time.Time) protocol.Time {
	at := protocol.TimeOf(now)
	if !l.Ended.IsZero() {
		at = min(at, protocol.TimeOf(l.Ended))
	}
	return min(at, protocol.TimeOf(l.Ends))
}

// runMeter issues the receipts of the periods that ended (the final one
// once the lease ended), ends a lease whose buyer's acks lag more than the
// grace, and schedules itself at the next period's end.
func (s *Service) runMeter(ctx context.Context, j store.Job) error {
	id, err := cid.Decode(j.ID)
	if err != nil {
		s.log.Error("meter job with a bad ID", "id", j.ID)
		return nil
	}
	unlock := s.lock(id)
	defer unlock()
	// The lease is read under the lock, so that an end reported meanwhile
	// (sellerChanged, which waits for the lock) is seen here or runs after.
	l, err := s.leases.Lease(id, true)
	if errors.Is(err, ErrNotFound) {
		s.log.Warn("meter: lease unknown", "lease", id, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	var st *state
	if err := s.db.View(func(t *store.Txn) error {
		st, _, err = getState(t, true, id)
		return err
	}); err != nil {
		return err
	}
	if st == nil || st.Final {
		return nil
	}
	now := s.clk.Now()
	nowT := protocol.TimeOf(now)
	ended := l.State == protocol.StateEnded
	limit := protocol.TimeOf(l.Ends)
	if ended {
		if st.Ended == 0 {
			st.Ended = endedAt(l, now)
		}
		limit = min(limit, st.Ended)
	}
	limit = max(limit, st.To)
	var usage Usage
	if s.meter != nil {
		usage, _ = s.meter.Usage(ctx, id)
	}
	interval := protocol.Millis(st.Interval)
	var raws [][]byte
	issue := func(to protocol.Time, final bool) error {
		raw, err := s.issue(l, st, to, final, usage, nowT)
		if err != nil {
			return err
		}
		raws = append(raws, raw)
		s.met.issued.Inc()
		return nil
	}
	waitEnd := false
	for len(raws) < s.cfg.MaxBatch {
		next := st.To + protocol.Time(interval)
		if next == limit && !ended && next <= nowT {
			// The period that reaches the lease's end waits for the end
			// (or a renewal), so that it is the final receipt.
			waitEnd = true
			break
		}
		if next > limit || next > nowT {
			break
		}
		if err := issue(next, ended && next == limit); err != nil {
			return err
		}
		if st.Final {
			break
		}
	}
	if ended && !st.Final && len(raws) < s.cfg.MaxBatch && st.To+protocol.Time(interval) > limit {
		if err := issue(limit, true); err != nil {
			return err
		}
	}
	unpaid := !ended && st.unpaid()
	st.Updated = now.UnixNano()
	err = s.db.Update(func(t *store.Txn) error {
		for _, raw := range raws {
			r, _ := protocol.DecodeUsageReceipt(raw)
			if err := t.Set(rcptKey(id, r.Seq), raw); err != nil {
				return err
			}
		}
		if err := putState(t, id, st); err != nil {
			return err
		}
		if len(raws) > 0 || ended {
			if err := t.Schedule(store.Job{Kind: JobSend, ID: id.String()}); err != nil {
				return err
			}
		}
		if st.Final {
			return nil
		}
		due := st.To.Std().Add(interval.Std())
		switch {
		case len(raws) == s.cfg.MaxBatch:
			due = now
		case waitEnd:
			// The lease service ends the lease about now and tells us; this
			// is the fallback, not a busy loop.
			due = now.Add(s.cfg.Resend)
		}
		return t.Schedule(store.Job{Kind: JobMeter, ID: id.String(), Due: due})
	})
	if err != nil {
		return err
	}
	if unpaid {
		return s.endUnpaid(ctx, id, st)
	}
	return nil
}

// unpaid reports whether the buyer has failed to acknowledge for longer
// than the grace: a delivery failed (or went unacknowledged) more than the
// grace after the oldest receipt without an ack was issued. Time the
// seller itself was down does not count: only the buyer's failures do.
func (st *state) unpaid() bool {
	return st.Ended == 0 && st.Waiting != 0 && st.Unacked-st.Waiting > protocol.Time(st.Grace)
}

// endUnpaid ends a lease whose buyer's acks lag past the grace.
func (s *Service) endUnpaid(ctx context.Context, id cid.Cid, st *state) error {
	grace := protocol.Millis(st.Grace).Std()
	detail := fmt.Sprintf("the buyer has not acknowledged the receipts issued since %s (grace %v)", st.Waiting, grace)
	s.log.Info("ending lease: receipts unacknowledged past the grace", "lease", id, "since", st.Waiting, "grace", grace)
	s.met.unpaid.Inc()
	if err := s.leases.End(ctx, id, detail); err != nil {
		return fmt.Errorf("end unpaid lease %s: %w", id, err)
	}
	return nil
}

// issue signs the receipt of the period from st.To to to and advances st.
func (s *Service) issue(l *Lease, st *state, to protocol.Time, final bool, u Usage, now protocol.Time) ([]byte, error) {
	p := &l.Lease.Proposal
	period := protocol.Millis(to - st.To)
	billed := st.Billed + period
	total, err := protocol.Charge(p.Price, p.Slots, billed)
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", l.ID, err)
	}
	cpu := max(u.CPU.Milliseconds(), st.CPU)
	r := &protocol.UsageReceipt{
		Version: protocol.UsageReceiptVersion,
		Seller:  s.self, Buyer: p.Buyer, Lease: protocol.Link{Cid: l.ID},
		Seq:  st.Seq + 1,
		From: st.To, To: to, Billed: billed,
		Usage: protocol.Usage{
			InstanceMs: period,
			CPUMs:      min(protocol.Millis(cpu-st.CPU), period*protocol.Millis(max(p.Slots, 1))*1024),
			MemoryPeak: u.MemoryPeak,
			BytesIn:    u.BytesIn - min(st.In, u.BytesIn),
			BytesOut:   u.BytesOut - min(st.Out, u.BytesOut),
			Network:    u.Network,
		},
		Amount: total - st.Total, Total: total, Currency: p.Price.Currency,
		Endpoint: l.Endpoint, Final: final,
		IssuedAt: max(now, to),
	}
	if st.Seq > 0 {
		r.Prev = &protocol.Link{Cid: st.headCID()}
	}
	raw, err := protocol.Sign(r, s.key)
	if err != nil {
		return nil, err
	}
	if s.tamper != nil {
		// Tests play a dishonest seller.
		raw = s.tamper(r, raw)
		if r, err = protocol.DecodeUsageReceipt(raw); err != nil {
			return nil, err
		}
		to, billed, total, final = r.To, r.Billed, r.Total, r.Final
	}
	st.Seq, st.Head, st.To, st.Billed, st.Total, st.Final = r.Seq, protocol.CIDOf(raw).Bytes(), to, billed, total, final
	st.CPU, st.In, st.Out = cpu, max(u.BytesIn, st.In), max(u.BytesOut, st.Out)
	if st.Waiting == 0 {
		st.Waiting = r.IssuedAt
	}
	return raw, nil
}

// runSend sends a lease's unanswered receipts, then, once the lease
// ended and every receipt is answered, its settlement; when the buyer
// stays silent past ClaimAfter, the seller claims. Failures retry after
// Resend.
func (s *Service) runSend(ctx context.Context, j store.Job) error {
	id, err := cid.Decode(j.ID)
	if err != nil {
		s.log.Error("send job with a bad ID", "id", j.ID)
		return nil
	}
	again, st, err := s.send(ctx, id)
	if err != nil && !isClosed(err) {
		s.log.Info("settle: not delivered yet", "lease", id, "err", err)
	}
	if ctx.Err() != nil || isClosed(err) {
		return err
	}
	if again == 0 && err == nil {
		return nil
	}
	var due time.Time // the zero time: now, more to send
	if again != sendNow {
		delay, giveUp := s.retryDelay(st)
		if giveUp {
			s.log.Warn("settle: giving up on a buyer that has not answered since the lease ended", "lease", id, "after", s.cfg.GiveUpAfter)
			return nil
		}
		due = s.clk.Now().Add(delay)
	}
	return s.db.Update(func(t *store.Txn) error {
		// The meter schedules a send at once for each receipt it issues;
		// one issued while this round ran would lose that to the retry
		// below, which replaces the job. (Reading the state here makes a
		// meter commit meanwhile conflict with this one, so it is seen.)
		if st != nil && !due.IsZero() {
			cur, _, err := getState(t, true, id)
			if err != nil {
				return err
			}
			if cur != nil && cur.Seq > st.Seq {
				due = time.Time{}
			}
		}
		return t.Schedule(store.Job{Kind: JobSend, ID: id.String(), Due: due})
	})
}

// retryDelay is when to try a silent buyer again: every Resend while the
// lease runs, then less and less often as the lease's end recedes (an
// eighth of the time since, at most an hour); after GiveUpAfter, never
// (the claim, if any, stays in the ledger). st is the lease's state as
// send last read it.
func (s *Service) retryDelay(st *state) (time.Duration, bool) {
	if st == nil || st.Ended == 0 {
		return s.cfg.Resend, false
	}
	since := s.clk.Now().Sub(st.Ended.Std())
	if s.cfg.GiveUpAfter > 0 && since > s.cfg.GiveUpAfter {
		return 0, true
	}
	return min(max(since/8, s.cfg.Resend), time.Hour), false
}

// sendNow asks runSend to run again at once.
const sendNow = time.Duration(-1)

// send does one round of runSend. It returns when to run again (0: not
// needed) or the error that stopped it (run again after Resend), and the
// lease's state as it last read it (nil when there is none).
func (s *Service) send(ctx context.Context, id cid.Cid) (time.Duration, *state, error) {
	st, raws, err := s.unanswered(id)
	if err != nil || st == nil {
		return 0, st, err
	}
	buyer, err := peerOf(st.Counterparty)
	if err != nil {
		return 0, st, err
	}
	if len(raws) > 0 {
		if err := s.deliver(ctx, id, buyer, raws); err != nil {
			s.noteUnacked(ctx, id)
			return 0, st, s.maybeClaim(ctx, id, err)
		}
		before := st.Answered
		st, raws, err = s.unanswered(id)
		if err != nil {
			return 0, st, err
		}
		if len(raws) > 0 {
			if st.Answered > before {
				return sendNow, st, nil // more to send
			}
			s.noteUnacked(ctx, id)
			return 0, st, s.maybeClaim(ctx, id, fmt.Errorf("%w: the buyer answered none of %d receipts", ErrRefused, len(raws)))
		}
	}
	if !st.Final || st.Status == StatusSettled || st.Status == StatusDisputed {
		return 0, st, nil
	}
	if err := s.proposeSettlement(ctx, id, st); err != nil {
		return 0, st, s.maybeClaim(ctx, id, err)
	}
	return 0, st, nil
}

// unanswered reads a seller's state and the receipts the buyer has not
// answered yet (at most MaxBatch).
func (s *Service) unanswered(id cid.Cid) (*state, [][]byte, error) {
	var st *state
	var raws [][]byte
	err := s.db.View(func(t *store.Txn) error {
		var err error
		st, _, err = getState(t, true, id)
		if err != nil || st == nil {
			return err
		}
		for seq := st.Answered + 1; seq <= st.Seq && len(raws) < s.cfg.MaxBatch; seq++ {
			raw, err := t.Get(rcptKey(id, seq))
			if errors.Is(err, store.ErrNotFound) {
				continue // a number this (dishonest) seller skipped
			}
			if err != nil {
				return fmt.Errorf("receipt %d of lease %s: %w", seq, id, err)
			}
			raws = append(raws, raw)
		}
		return nil
	})
	return st, raws, err
}

// deliver sends receipts to the buyer and records its answers.
func (s *Service) deliver(ctx context.Context, id cid.Cid, buyer peerID, raws [][]byte) error {
	body, err := encodeMsg(raws)
	if err != nil {
		return err
	}
	_, resp, err := s.roundTrip(ctx, buyer, string(ReceiptProtocol), appendFrame(nil, tagReceipts, body), tagAnswers)
	if err != nil {
		return err
	}
	var answers []answer
	if err := storedDec.Unmarshal(resp, &answers); err != nil || len(answers) > len(raws) {
		return fmt.Errorf("%w: answers from %s unreadable", ErrUnreachable, buyer)
	}
	return s.recordAnswers(id, buyer, raws, answers)
}

// recordAnswers checks and stores the buyer's answers to raws, in order,
// up to the first refusal.
func (s *Service) recordAnswers(id cid.Cid, buyer peerID, raws [][]byte, answers []answer) error {
	defer s.lock(id)()
	now := s.clk.Now()
	var refused string
	var disputed bool
	return s.db.Update(func(t *store.Txn) error {
		st, ok, err := getState(t, true, id)
		if err != nil || !ok {
			return err
		}
		for i, a := range answers {
			r, err := protocol.DecodeUsageReceipt(raws[i])
			if err != nil {
				return err
			}
			rc := protocol.CIDOf(raws[i])
			switch {
			case a.Refused != "":
				refused = a.Refused
			case a.Ack != nil:
				ack, err := protocol.DecodeReceiptAck(a.Ack)
				if err == nil {
					err = ack.Validate(now, s.lim)
				}
				if err == nil && (ack.Buyer != buyer || !ack.Acks(rc, r)) {
					err = fmt.Errorf("not the buyer's ack of receipt %d", r.Seq)
				}
				if err != nil {
					s.log.Warn("ack refused", "lease", id, "seq", r.Seq, "err", err)
					refused = "bad ack"
					break
				}
				if err := putAnswer(t, id, r.Seq, ansAck, a.Ack); err != nil {
					return err
				}
				if r.Seq > st.AckedSeq {
					st.AckedSeq, st.Acked, st.AckedTotal = r.Seq, rc.Bytes(), r.Total
				}
			case a.Dispute != nil:
				d, err := protocol.DecodeDispute(a.Dispute)
				if err == nil {
					err = d.Validate(now, s.lim)
				}
				if err == nil && (d.Buyer != buyer || !d.Lease.Equals(id)) {
					err = fmt.Errorf("not the buyer's dispute of this lease")
				}
				if err != nil {
					s.log.Warn("dispute refused", "lease", id, "seq", r.Seq, "err", err)
					refused = "bad dispute"
					break
				}
				disputed = true
				if d.Receipt.Equals(rc) {
					if err := putAnswer(t, id, r.Seq, ansDispute, a.Dispute); err != nil {
						return err
					}
				}
				if !containsRaw(st.Disputes, a.Dispute) && len(st.Disputes) < protocol.MaxSettlementDisputes {
					st.Disputes = append(st.Disputes, a.Dispute)
					s.log.Info("receipt disputed", "lease", id, "seq", d.Seq, "reason", d.Reason, "detail", d.Detail)
				}
			default:
				refused = "empty answer"
			}
			if refused != "" {
				break
			}
			st.Answered = max(st.Answered, r.Seq)
		}
		if refused != "" {
			s.log.Info("receipts refused by the buyer", "lease", id, "why", refused)
		}
		// The grace runs from the oldest receipt without an ack; the
		// buyer failed it now if it refused or disputed one it was given.
		st.Waiting = 0
		if refused != "" || disputed {
			st.Unacked = protocol.TimeOf(now)
		}
		if st.AckedSeq < st.Seq {
			for seq := st.AckedSeq + 1; seq <= st.Seq; seq++ {
				r, _, err := getReceipt(t, id, seq)
				if err != nil {
					return err
				}
				if r != nil {
					st.Waiting = r.IssuedAt
					break
				}
			}
		}
		st.Updated = now.UnixNano()
		return putState(t, id, st)
	})
}

// noteUnacked records that a delivery failed with receipts unacknowledged,
// and ends the lease when that has lasted longer than the grace.
func (s *Service) noteUnacked(ctx context.Context, id cid.Cid) {
	unlock := s.lock(id)
	now := s.clk.Now()
	var unpaid *state
	err := s.db.Update(func(t *store.Txn) error {
		st, ok, err := getState(t, true, id)
		if err != nil || !ok || st.AckedSeq == st.Seq {
			return err
		}
		st.Unacked, st.Updated = protocol.TimeOf(now), now.UnixNano()
		if st.unpaid() {
			unpaid = st
		}
		return putState(t, id, st)
	})
	unlock()
	if err == nil && unpaid != nil {
		err = s.endUnpaid(ctx, id, unpaid)
	}
	if err != nil && !isClosed(err) {
		s.log.Warn("record failed delivery", "lease", id, "err", err)
	}
}

func containsRaw(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

// settlementOf builds the settlement a state stands for, unsigned.
func (s *Service) settlementOf(id cid.Cid, st *state, seller, buyer peerID) *protocol.Settlement {
	set := &protocol.Settlement{
		Version: protocol.SettlementVersion, Lease: protocol.Link{Cid: id},
		Seller: seller, Buyer: buyer,
		HeadSeq: st.Seq, HeadTotal: st.Total,
		AckedSeq: st.AckedSeq, Total: st.AckedTotal,
		Currency: st.Currency,
		Disputes: disputeLinks(st.Disputes),
		At:       protocol.TimeOf(s.clk.Now()),
	}
	if st.Seq > 0 {
		set.Head = &protocol.Link{Cid: st.headCID()}
	}
	if st.AckedSeq > 0 {
		set.Acked = &protocol.Link{Cid: st.ackedCID()}
	}
	set.State = protocol.SettlementSettled
	if st.AckedSeq != st.Seq || len(set.Disputes) > 0 {
		set.State = protocol.SettlementDisputed
	}
	return set
}

// disputeLinks names disputes by CID, sorted.
func disputeLinks(raws [][]byte) []protocol.Link {
	out := make([]protocol.Link, 0, len(raws))
	for _, r := range raws {
		out = append(out, protocol.Link{Cid: protocol.CIDOf(r)})
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Bytes(), out[j].Bytes()) < 0 })
	return out
}

// proposeSettlement signs the settlement of a lease whose receipts are
// all answered and asks the buyer to countersign it.
func (s *Service) proposeSettlement(ctx context.Context, id cid.Cid, st *state) error {
	buyer, err := peerOf(st.Counterparty)
	if err != nil {
		return err
	}
	set := s.settlementOf(id, st, s.self, buyer)
	raw, err := protocol.SignSettlement(set, s.key)
	if err != nil {
		return err
	}
	tag, body, err := s.roundTrip(ctx, buyer, string(SettleProtocol), appendFrame(nil, tagSettlement, raw), tagSettled, tagRefused)
	if err != nil {
		return err
	}
	if tag == tagRefused {
		var r refusal
		_ = storedDec.Unmarshal(body, &r)
		return fmt.Errorf("%w: settlement of lease %s: %s (the buyer holds receipts to %d, acknowledged to %d)", ErrRefused, id, r.Reason, r.Seq, r.AckedSeq)
	}
	got, err := protocol.DecodeSettlement(body)
	if err == nil {
		err = got.Validate(s.clk.Now(), s.lim)
	}
	if err == nil && !sameTerms(set, got) {
		// The buyer may answer with the settlement it countersigned
		// before, of another proposal's time: the terms must match.
		err = errors.New("the countersigned settlement differs from the one proposed")
	}
	if err != nil {
		return fmt.Errorf("%w: settlement of lease %s: %v", ErrUnreachable, id, err)
	}
	defer s.lock(id)()
	return s.db.Update(func(t *store.Txn) error {
		cur, ok, err := getState(t, true, id)
		if err != nil || !ok {
			return err
		}
		if cur.Seq != st.Seq || cur.Answered != st.Answered {
			return fmt.Errorf("lease %s: billing changed while settling; settling again", id)
		}
		cur.Settlement, cur.Status = body, Status(got.State)
		s.met.settled.WithLabelValues(string(got.State)).Inc()
		cur.Updated = s.clk.Now().UnixNano()
		s.log.Info("lease settled", "lease", id, "state", got.State, "total", got.Total, "currency", got.Currency)
		return putState(t, id, cur)
	})
}

// maybeClaim makes the seller's claim once a lease ended ClaimAfter ago
// without a settlement, and tries to deliver it. It returns cause (the
// reason the settlement did not happen) so that the job runs again.
func (s *Service) maybeClaim(ctx context.Context, id cid.Cid, cause error) error {
	if isClosed(cause) {
		return cause
	}
	now := s.clk.Now()
	var st *state
	var c *protocol.Claim
	err := func() error {
		defer s.lock(id)()
		return s.db.Update(func(t *store.Txn) error {
			var err error
			var ok bool
			st, ok, err = getState(t, true, id)
			if err != nil || !ok {
				return err
			}
			if st.Ended == 0 || st.Status == StatusSettled || st.Status == StatusDisputed ||
				now.Sub(st.Ended.Std()) < s.cfg.ClaimAfter {
				st = nil
				return nil
			}
			if st.Claim != nil {
				c, err = protocol.DecodeClaim(st.Claim, s.lim)
				return err
			}
			c, err = s.makeClaim(t, id, st, now)
			if err != nil {
				return err
			}
			raw, err := protocol.Sign(c, s.key)
			if err != nil {
				return err
			}
			st.Claim, st.Status, st.Updated = raw, StatusClaimed, now.UnixNano()
			s.met.claims.Inc()
			s.log.Info("buyer silent: claiming", "lease", id, "amount", c.Amount, "currency", c.Currency, "acknowledged", st.AckedTotal)
			return putState(t, id, st)
		})
	}()
	if err != nil || st == nil {
		return errors.Join(cause, err)
	}
	buyer, err := peerOf(st.Counterparty)
	if err != nil {
		return err
	}
	tag, body, err := s.roundTrip(ctx, buyer, string(SettleProtocol), appendFrame(nil, tagClaim, st.Claim), tagClaimed, tagRefused)
	if err != nil {
		return errors.Join(cause, err)
	}
	if tag == tagRefused {
		var r refusal
		_ = storedDec.Unmarshal(body, &r)
		return errors.Join(cause, fmt.Errorf("%w: claim of lease %s: %s", ErrRefused, id, r.Reason))
	}
	s.log.Info("claim delivered", "lease", id, "amount", c.Amount)
	return nil
}

// makeClaim builds the seller's claim from its stored chain: the last
// acknowledged receipt and its ack as evidence, and the most the rules
// allow (never more than the chain's total).
func (s *Service) makeClaim(t *store.Txn, id cid.Cid, st *state, now time.Time) (*protocol.Claim, error) {
	l, err := s.leases.Lease(id, true)
	if err != nil {
		return nil, err
	}
	c := &protocol.Claim{
		Version: protocol.ClaimVersion, Seller: s.self, Lease: *l.Lease,
		HeadTotal: st.Total, Currency: st.Currency, At: protocol.TimeOf(now),
	}
	if st.Seq > 0 {
		c.Head = &protocol.Link{Cid: st.headCID()}
	}
	var acked *protocol.UsageReceipt
	if st.AckedSeq > 0 {
		r, _, err := getReceipt(t, id, st.AckedSeq)
		if err != nil {
			return nil, err
		}
		tag, raw, err := getAnswer(t, id, st.AckedSeq)
		if err != nil {
			return nil, err
		}
		if r == nil || tag != ansAck {
			return nil, fmt.Errorf("lease %s: the ack of receipt %d is missing", id, st.AckedSeq)
		}
		ack, err := protocol.DecodeReceiptAck(raw)
		if err != nil {
			return nil, err
		}
		c.Receipt, c.Ack, acked = r, ack, r
	}
	bound, err := protocol.ClaimBound(l.Lease, acked)
	if err != nil {
		return nil, err
	}
	c.Amount = max(min(st.Total, bound), st.AckedTotal)
	return c, nil
}
