package settle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

func (s *Service) handleReceipts(st network.Stream) {
	s.serve(st, []byte{tagReceipts}, s.serveReceipts)
}

func (s *Service) handleSettle(st network.Stream) {
	s.serve(st, []byte{tagSettlement, tagClaim}, func(ctx context.Context, remote peer.ID, tag byte, body []byte) (byte, []byte) {
		if tag == tagClaim {
			return s.serveClaim(remote, body)
		}
		return s.serveSettlement(remote, body)
	})
}

// serveReceipts checks, answers and stores a batch of receipts from a
// seller. Runs of receipts of one lease are stored in one transaction.
func (s *Service) serveReceipts(ctx context.Context, remote peer.ID, _ byte, body []byte) (byte, []byte) {
	raws, err := decodeReceipts(body)
	if err != nil {
		s.log.Debug("receipts unreadable", "peer", remote, "err", err)
		return 0, nil
	}
	answers := make([]answer, len(raws))
	decoded := make([]*protocol.UsageReceipt, len(raws))
	type run struct {
		lease cid.Cid
		from  int
		to    int
	}
	var runs []run
	for i, raw := range raws {
		r, err := protocol.DecodeUsageReceipt(raw)
		if err != nil {
			answers[i].Refused = "malformed receipt: " + err.Error()
			continue
		}
		decoded[i] = r
		if n := len(runs); n > 0 && runs[n-1].lease.Equals(r.Lease.Cid) && runs[n-1].to == i {
			runs[n-1].to = i + 1
		} else {
			runs = append(runs, run{r.Lease.Cid, i, i + 1})
		}
	}
	accept := func(rn run) {
		if err := s.acceptReceipts(remote, rn.lease, raws[rn.from:rn.to], decoded[rn.from:rn.to], answers[rn.from:rn.to]); err != nil {
			if !isClosed(err) {
				s.log.Warn("receipts not stored", "lease", rn.lease, "peer", remote, "err", err)
			}
			for i := rn.from; i < rn.to; i++ {
				if answers[i].Refused == "" {
					answers[i] = answer{Refused: "the buyer could not store the receipt; send it again"}
				}
			}
		}
	}
	// Runs of different leases are checked at once, so that their writes
	// share a commit; a lease with several runs keeps them in order.
	seen := make(map[cid.Cid]bool, len(runs))
	apart := true
	for _, rn := range runs {
		apart = apart && !seen[rn.lease]
		seen[rn.lease] = true
	}
	if !apart || len(runs) < 2 {
		for _, rn := range runs {
			accept(rn)
		}
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, rn := range runs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				accept(rn)
			}()
		}
		wg.Wait()
	}
	for _, a := range answers {
		switch {
		case a.Ack != nil:
			s.met.answered.WithLabelValues("ack").Inc()
		case a.Dispute != nil:
			s.met.answered.WithLabelValues("dispute").Inc()
		default:
			s.met.answered.WithLabelValues("refused").Inc()
		}
	}
	b, err := encodeMsg(answers)
	if err != nil {
		return 0, nil
	}
	return tagAnswers, b
}

// acceptReceipts checks receipts of one lease in chain order, signs an
// ack or a dispute for each, and stores receipts, answers and state in
// one synced transaction before the answers go out.
func (s *Service) acceptReceipts(remote peer.ID, id cid.Cid, raws [][]byte, decoded []*protocol.UsageReceipt, out []answer) error {
	defer s.lock(id)()
	l, err := s.boughtLease(id)
	if err != nil {
		for i := range out {
			if out[i].Refused == "" {
				out[i].Refused = fmt.Sprintf("this node bought no lease %s", id)
			}
		}
		return nil
	}
	if l.Lease.Seller != remote {
		for i := range out {
			if out[i].Refused == "" {
				out[i].Refused = fmt.Sprintf("peer %s is not the seller of lease %s", remote, id)
			}
		}
		s.log.Warn("receipts from a peer that is not the lease's seller", "lease", id, "peer", remote)
		return nil
	}
	now := s.clk.Now()
	st, prev, err := s.boughtState(id, l)
	if err != nil {
		return err
	}
	type write struct {
		seq uint64
		raw []byte
		tag byte
		ans []byte
	}
	var writes []write
	// stored finds an earlier receipt's bytes and answer, in this batch
	// or in the store.
	stored := func(seq uint64) (raw []byte, tag byte, ans []byte, err error) {
		for _, w := range writes {
			if w.seq == seq {
				return w.raw, w.tag, w.ans, nil
			}
		}
		err = s.db.View(func(t *store.Txn) error {
			var err error
			raw, err = t.Get(rcptKey(id, seq))
			if errors.Is(err, store.ErrNotFound) {
				raw = nil
				return nil
			}
			if err != nil {
				return err
			}
			tag, ans, err = getAnswer(t, id, seq)
			return err
		})
		return
	}
	ends := protocol.TimeOf(l.Ends)
	if l.Cause == protocol.CauseEndedByBuyer && !l.Ended.IsZero() {
		ends = min(ends, protocol.TimeOf(l.Ended))
	}
	changed := false
	for i, raw := range raws {
		if out[i].Refused != "" {
			continue
		}
		r := decoded[i]
		rc := protocol.CIDOf(raw)
		if r.Seller != remote || r.Buyer != s.self {
			out[i].Refused = fmt.Sprintf("receipt %d names seller %s and buyer %s", r.Seq, r.Seller, r.Buyer)
			continue
		}
		if r.Seq <= st.Seq && r.Seq > 0 {
			old, tag, ans, err := stored(r.Seq)
			if err != nil {
				return err
			}
			if bytes.Equal(old, raw) {
				// Received before: the same answer again.
				out[i] = s.answerOf(st, tag, ans)
				continue
			}
			if old != nil && protocol.VerifySignature(r) != nil {
				out[i].Refused = fmt.Sprintf("receipt %d: bad signature", r.Seq)
				continue
			}
			// A second, different receipt with a number already used.
			d, err := s.dispute(r, rc, protocol.DisputeBadChain, fmt.Sprintf("receipt %d differs from the receipt %d received before", r.Seq, r.Seq), now)
			if err != nil {
				return err
			}
			s.addDispute(st, d)
			out[i] = answer{Dispute: d}
			changed = true
			continue
		}
		links := r.Seq == st.Seq+1 && (st.Seq == 0 && r.Prev == nil || r.Prev != nil && r.Prev.Equals(st.headCID()))
		skips := r.Seq > st.Seq+1 && st.Seq > 0 && r.Prev != nil && r.Prev.Equals(st.headCID())
		if !links && !skips && !st.disputed() && r.Seq != st.Seq+1 {
			out[i].Refused = fmt.Sprintf("receipt %d does not follow receipt %d held here; send the receipts from %d", r.Seq, st.Seq, st.Seq+1)
			continue
		}
		var tag byte
		var ans []byte
		sigErr := protocol.VerifySignature(r)
		switch {
		case st.disputed():
			// Past a dispute nothing is acknowledged; the seller's later
			// receipts are still kept (below), so that the settlement names
			// its head: well-formed ones that go forward, a bounded number.
			if sigErr == nil {
				sigErr = r.ValidateFields(now, s.lim)
			}
			if sigErr == nil && (r.Seq <= st.Seq || st.Past >= maxPastDispute) {
				sigErr = fmt.Errorf("not kept past the dispute")
			}
			out[i] = answer{Dispute: st.Disputes[0]}
			if sigErr == nil {
				st.Past++
			}
		default:
			var err error = &protocol.DisputeError{Reason: protocol.DisputeBadChain, Detail: fmt.Sprintf("receipt %d: %v", r.Seq, sigErr)}
			if sigErr == nil {
				err = protocol.CheckReceipt(protocol.ChainCheck{Lease: l.Lease, LeaseID: id, Prev: prev, PrevID: st.headCID(), Ends: ends, Verified: true}, r, now, s.lim)
			}
			if err == nil && s.cfg.Probe {
				if why, bad := s.probes.unreachable(id, r.From, r.To); bad {
					err = &protocol.DisputeError{Reason: protocol.DisputeUnreachable, Detail: fmt.Sprintf("receipt %d: %s", r.Seq, why)}
				}
			}
			var de *protocol.DisputeError
			if errors.As(err, &de) {
				d, err := s.dispute(r, rc, de.Reason, de.Detail, now)
				if err != nil {
					return err
				}
				s.addDispute(st, d)
				s.met.disputes.WithLabelValues(string(de.Reason)).Inc()
				s.log.Info("receipt disputed", "lease", id, "seq", r.Seq, "reason", de.Reason, "detail", de.Detail)
				tag, ans = ansDispute, d
				out[i] = answer{Dispute: d}
			} else if err != nil {
				return err
			} else {
				a := &protocol.ReceiptAck{Version: protocol.ReceiptAckVersion, Buyer: s.self, Seller: r.Seller,
					Lease: r.Lease, Receipt: protocol.Link{Cid: rc}, Seq: r.Seq, Total: r.Total, At: protocol.TimeOf(now)}
				b, err := protocol.Sign(a, s.key)
				if err != nil {
					return err
				}
				tag, ans = ansAck, b
				out[i] = answer{Ack: b}
				st.AckedSeq, st.Acked, st.AckedTotal = r.Seq, rc.Bytes(), r.Total
			}
		}
		changed = true
		if sigErr != nil {
			// A forgery (or, past a dispute, a receipt that does not go
			// forward) is answered but not kept.
			continue
		}
		// The head is the seller's latest receipt: past a dispute it may
		// not link to the one before; the acknowledged chain always does.
		writes = append(writes, write{seq: r.Seq, raw: raw, tag: tag, ans: ans})
		st.Seq, st.Head, st.To, st.Billed, st.Total, st.Final = r.Seq, rc.Bytes(), r.To, r.Billed, r.Total, r.Final
		prev = r
		if r.Final {
			s.probes.remove(id)
		} else if r.Endpoint != "" && s.cfg.Probe {
			s.probes.add(id, r.Endpoint, l.Lease.Proposal.ReceiptInterval.Std())
		}
	}
	if !changed {
		// Answers from the store, durable: whoever wrote them held the
		// lease's lock until their commit was.
		return nil
	}
	st.Updated = now.UnixNano()
	// Answers go out only once durable. The committer writes them with
	// other leases' in one synced transaction.
	err = s.commit(func(t *store.Txn) error {
		for _, w := range writes {
			if err := t.Set(rcptKey(id, w.seq), w.raw); err != nil {
				return err
			}
			if w.ans != nil {
				if err := putAnswer(t, id, w.seq, w.tag, w.ans); err != nil {
					return err
				}
			}
		}
		return putState(t, id, st)
	})
	if err != nil {
		s.dropBought(id)
		for i := range out {
			out[i] = answer{Refused: "the buyer could not store the receipt; send it again"}
		}
		return err
	}
	s.keepBought(id, l, st, prev)
	return nil
}

// maxPastDispute bounds the receipts a buyer keeps after a lease's first
// dispute (it acknowledges none of them).
const maxPastDispute = 4096

// boughtEntry is the buyer's cached billing of a lease: the lease, its
// state and the head receipt.
type boughtEntry struct {
	l    *Lease
	st   state
	prev *protocol.UsageReceipt
}

// boughtLease returns a lease bought, from the cache (which LeaseChanged
// clears) or the lease service. Call it under the lease's lock.
func (s *Service) boughtLease(id cid.Cid) (*Lease, error) {
	s.cacheMu.Lock()
	e := s.bought[id]
	s.cacheMu.Unlock()
	if e != nil && e.l != nil {
		return e.l, nil
	}
	return s.leases.Lease(id, false)
}

// boughtState returns a copy of the buyer's billing of a lease and its
// head receipt, from the cache or the store. Call it under the lease's
// lock.
func (s *Service) boughtState(id cid.Cid, l *Lease) (*state, *protocol.UsageReceipt, error) {
	s.cacheMu.Lock()
	e := s.bought[id]
	s.cacheMu.Unlock()
	if e != nil {
		st := e.st
		st.Disputes = append([][]byte(nil), e.st.Disputes...)
		return &st, e.prev, nil
	}
	var st *state
	var prev *protocol.UsageReceipt
	err := s.db.View(func(t *store.Txn) error {
		var ok bool
		var err error
		st, ok, err = getState(t, false, id)
		if err != nil {
			return err
		}
		if !ok {
			st = newState(false, l)
			return nil
		}
		if st.Seq > 0 {
			prev, _, err = getReceipt(t, id, st.Seq)
		}
		return err
	})
	return st, prev, err
}

// keepBought caches the buyer's billing of a lease just stored.
func (s *Service) keepBought(id cid.Cid, l *Lease, st *state, prev *protocol.UsageReceipt) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if st.Status != StatusOpen && st.Status != "" {
		delete(s.bought, id)
		return
	}
	s.bought[id] = &boughtEntry{l: l, st: *st, prev: prev}
}

// dropBought forgets the cached billing of a lease (after another write).
func (s *Service) dropBought(id cid.Cid) {
	s.cacheMu.Lock()
	delete(s.bought, id)
	s.cacheMu.Unlock()
}

// answerOf is the answer to a receipt received before: its stored ack
// or dispute, or (past a dispute) the first dispute.
func (s *Service) answerOf(st *state, tag byte, ans []byte) answer {
	switch {
	case tag == ansAck:
		return answer{Ack: ans}
	case tag == ansDispute:
		return answer{Dispute: ans}
	case st.disputed():
		return answer{Dispute: st.Disputes[0]}
	}
	return answer{Refused: "no answer stored"}
}

// sameTerms reports whether two settlements say the same but for their
// time and signatures.
func sameTerms(a, b *protocol.Settlement) bool {
	x, y := *a, *b
	x.At = y.At
	pa, err1 := protocol.SettlementPayload(&x)
	pb, err2 := protocol.SettlementPayload(&y)
	return err1 == nil && err2 == nil && bytes.Equal(pa, pb)
}

// dispute signs a dispute of receipt r.
func (s *Service) dispute(r *protocol.UsageReceipt, rc cid.Cid, reason protocol.DisputeReason, detail string, now time.Time) ([]byte, error) {
	detail = protocol.CleanText(detail, protocol.MaxDetailLen)
	d := &protocol.Dispute{Version: protocol.DisputeVersion, Buyer: s.self, Seller: r.Seller,
		Lease: r.Lease, Receipt: protocol.Link{Cid: rc}, Seq: r.Seq,
		Reason: reason, Detail: detail, At: protocol.TimeOf(now)}
	return protocol.Sign(d, s.key)
}

func (s *Service) addDispute(st *state, d []byte) {
	if len(st.Disputes) < protocol.MaxSettlementDisputes && !containsRaw(st.Disputes, d) {
		st.Disputes = append(st.Disputes, d)
	}
}

// serveSettlement countersigns a seller's settlement when it matches the
// buyer's own chain, after reconciling that chain receipt by receipt.
func (s *Service) serveSettlement(remote peer.ID, body []byte) (byte, []byte) {
	now := s.clk.Now()
	set, err := protocol.DecodeSettlement(body)
	if err == nil {
		err = set.ValidateFields(now, s.lim)
	}
	if err == nil && (set.Seller != remote || set.Buyer != s.self) {
		err = fmt.Errorf("settlement between %s and %s, asked by %s", set.Seller, set.Buyer, remote)
	}
	if err == nil && !set.SignedBy(set.Seller) {
		err = fmt.Errorf("%w: not signed by the seller", protocol.ErrBadSignature)
	}
	if err != nil {
		return s.refuse(err.Error(), nil)
	}
	id := set.Lease.Cid
	l, err := s.leases.Lease(id, false)
	if err != nil || l.Lease.Seller != remote {
		return s.refuse(fmt.Sprintf("this node bought no lease %s from %s", id, remote), nil)
	}
	defer s.lock(id)()
	var st *state
	if err := s.db.View(func(t *store.Txn) error {
		var ok bool
		st, ok, err = getState(t, false, id)
		if err == nil && !ok {
			st = newState(false, l)
		}
		return err
	}); err != nil {
		return s.refuse("the buyer could not read its ledger", nil)
	}
	if st.Settlement != nil {
		// Settled before (the seller did not get the answer): the same
		// terms, proposed again at another time, get the stored settlement.
		if old, err := protocol.DecodeSettlement(st.Settlement); err == nil && sameTerms(old, set) {
			return tagSettled, st.Settlement
		}
		return s.refuse("settled already, differently", st)
	}
	mine := s.settlementOf(id, st, remote, s.self)
	mine.At = set.At
	a, _ := protocol.SettlementPayload(mine)
	b, _ := protocol.SettlementPayload(set)
	switch {
	case st.Seq > 0 && !st.Final:
		return s.refuse(fmt.Sprintf("the buyer holds no final receipt yet (receipts to %d)", st.Seq), st)
	case !bytes.Equal(a, b):
		return s.refuse(fmt.Sprintf("the settlement does not match the buyer's chain: head %d (total %d), acknowledged %d (total %d), %d disputes",
			st.Seq, st.Total, st.AckedSeq, st.AckedTotal, len(st.Disputes)), st)
	}
	if err := s.reconcile(id, st); err != nil {
		s.log.Error("own receipt chain does not reconcile", "lease", id, "err", err)
		return s.refuse("the buyer's chain does not reconcile: "+err.Error(), st)
	}
	raw, err := protocol.SignSettlement(set, s.key)
	if err != nil {
		return 0, nil
	}
	st.Settlement, st.Status, st.Updated = raw, Status(set.State), now.UnixNano()
	s.dropBought(id)
	if err := s.db.Update(func(t *store.Txn) error { return putState(t, id, st) }); err != nil {
		return 0, nil
	}
	s.probes.remove(id)
	s.met.settled.WithLabelValues(string(set.State)).Inc()
	s.log.Info("lease settled", "lease", id, "state", set.State, "total", set.Total, "currency", set.Currency)
	return tagSettled, raw
}

// reconcile walks a lease's stored chain from the first receipt: each
// names the one before, periods follow each other, and the amounts add
// up to the acknowledged total and, for a chain without disputes, to the
// head's total.
func (s *Service) reconcile(id cid.Cid, st *state) error {
	last := st.Seq
	if st.disputed() {
		last = st.AckedSeq
	}
	var prev cid.Cid
	var seq uint64
	var sum, acked int64
	var to protocol.Time
	err := s.db.View(func(t *store.Txn) error {
		return t.Iterate(rcptPrefix(id), func(_, raw []byte) error {
			r, err := protocol.DecodeUsageReceipt(raw)
			if err != nil {
				return err
			}
			if r.Seq > last {
				return errStop
			}
			switch {
			case r.Seq != seq+1:
				return fmt.Errorf("receipt %d follows %d", r.Seq, seq)
			case seq > 0 && (r.Prev == nil || !r.Prev.Equals(prev)):
				return fmt.Errorf("receipt %d does not name receipt %d", r.Seq, seq)
			case seq > 0 && r.From != to:
				return fmt.Errorf("receipt %d does not start where %d ended", r.Seq, seq)
			}
			sum += r.Amount
			if sum != r.Total {
				return fmt.Errorf("receipt %d: amounts add up to %d, its total is %d", r.Seq, sum, r.Total)
			}
			if r.Seq == st.AckedSeq {
				acked = sum
			}
			seq, prev, to = r.Seq, protocol.CIDOf(raw), r.To
			return nil
		})
	})
	switch {
	case err != nil && err != errStop:
		return err
	case seq != last:
		return fmt.Errorf("the stored chain ends at %d, the ledger at %d", seq, last)
	case !st.disputed() && (sum != st.Total || seq > 0 && !prev.Equals(st.headCID())):
		return fmt.Errorf("the stored chain ends at %s (total %d), the ledger at %s (total %d)", prev, sum, st.headCID(), st.Total)
	case acked != st.AckedTotal:
		return fmt.Errorf("totals %d and %d acknowledged, the ledger says %d and %d", sum, acked, st.Total, st.AckedTotal)
	}
	return nil
}

// serveClaim checks and stores a seller's claim on a lease bought: a
// claim for more than the acknowledged total plus one interval, or whose
// evidence does not hold, is refused.
func (s *Service) serveClaim(remote peer.ID, body []byte) (byte, []byte) {
	now := s.clk.Now()
	c, err := protocol.DecodeClaim(body, s.lim)
	if err == nil {
		err = c.Validate(now, s.lim)
	}
	if err != nil {
		s.log.Warn("claim refused", "peer", remote, "err", err)
		return s.refuse(err.Error(), nil)
	}
	id, _ := c.Lease.CID()
	l, err := s.leases.Lease(id, false)
	if err != nil || c.Seller != remote || l.Lease.Seller != remote {
		return s.refuse(fmt.Sprintf("this node bought no lease %s from %s", id, remote), nil)
	}
	defer s.lock(id)()
	s.dropBought(id)
	var st *state
	err = s.db.Update(func(t *store.Txn) error {
		var ok bool
		var err error
		st, ok, err = getState(t, false, id)
		if err != nil {
			return err
		}
		if !ok {
			st = newState(false, l)
		}
		if st.Status == StatusSettled || st.Status == StatusDisputed {
			return errSettled
		}
		st.Claim, st.Status, st.Updated = body, StatusClaimed, now.UnixNano()
		return putState(t, id, st)
	})
	if errors.Is(err, errSettled) {
		return s.refuse("settled already", st)
	}
	if err != nil {
		return 0, nil
	}
	s.log.Info("seller claims", "lease", id, "amount", c.Amount, "currency", c.Currency, "acknowledged", st.AckedTotal)
	return tagClaimed, nil
}

var errSettled = errors.New("settled already")
