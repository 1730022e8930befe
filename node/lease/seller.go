package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// offerCopy is a verified copy of one of the seller's own offers.
type offerCopy struct {
	key     string
	expires protocol.Time
}

// serveProposal answers a propose request: the checks that need no
// shared state run here, concurrently; the capacity owner decides the rest.
func (s *Service) serveProposal(ctx context.Context, remote peer.ID, body, offerRaw []byte) (byte, []byte) {
	now := s.clk.Now()
	pc := protocol.CIDOf(body)
	p, err := protocol.DecodeLeaseProposal(body, s.lim)
	if err != nil {
		return s.rejectUnreadable(pc, err)
	}
	if p.Buyer != remote {
		return s.reject(pc, protocol.ReasonNotBuyer, fmt.Sprintf("the proposal's buyer is %s, the peer sending it is %s", p.Buyer, remote))
	}
	if p.Seller != s.self {
		return s.reject(pc, protocol.ReasonInvalid, fmt.Sprintf("the proposal is for seller %s; this is %s", p.Seller, s.self))
	}
	if err := p.ValidateFields(now, s.lim); err != nil {
		return s.rejectUnreadable(pc, err)
	}
	if err := protocol.VerifySignature(p); err != nil {
		return s.reject(pc, protocol.ReasonBadSignature, err.Error())
	}
	if d, ok := s.isDenied(remote); ok {
		detail := "this seller does not lease to you"
		if d.Note != "" {
			detail += ": " + d.Note
		}
		return s.reject(pc, protocol.ReasonBuyerRefused, detail)
	}
	if s.offers == nil {
		return s.reject(pc, protocol.ReasonOfferExpired, "this node offers nothing for lease")
	}
	if detail := s.checkCopy(p, offerRaw, now); detail != "" {
		return s.reject(pc, protocol.ReasonOfferExpired, detail)
	}
	req := &proposalReq{prop: p, raw: body, pc: pc, reply: make(chan outcome, 1)}
	select {
	case s.proposals <- req:
	default:
		return s.reject(pc, protocol.ReasonBusy, "too many proposals waiting; try again in a moment")
	}
	select {
	case out := <-req.reply:
		if out.lease != nil {
			return tagLease, out.lease
		}
		return s.reject(pc, out.reason, out.detail)
	case <-ctx.Done():
		// The decision may still be stored. No answer (a reset stream)
		// tells the buyer so: it gives the proposal up with a signed end,
		// which ends the lease if one was granted.
		return 0, nil
	}
}

// checkCopy checks that the proposal names a copy of one of this seller's
// offers, with the proposal's key, that has not expired: a copy seen
// before, the current copy, or the copy sent along (verified once).
// It returns why not, or "".
func (s *Service) checkCopy(p *protocol.LeaseProposal, raw []byte, now time.Time) string {
	c := p.Offer.Cid
	s.copiesMu.Lock()
	cp, ok := s.copies[c]
	s.copiesMu.Unlock()
	if !ok {
		if len(raw) == 0 {
			own, err := s.offers.Offer(p.OfferKey)
			if err != nil || own.Current == nil || own.CID != c {
				return fmt.Sprintf("offer copy %s is not one this seller knows; send the copy with the proposal", c)
			}
			cp = offerCopy{key: own.Current.Key, expires: own.Current.ExpiresAt}
		} else {
			if protocol.CIDOf(raw) != c {
				return fmt.Sprintf("the offer copy sent is not %s", c)
			}
			o, err := protocol.DecodeOffer(raw, s.lim)
			if err != nil {
				return fmt.Sprintf("offer copy %s: %v", c, err)
			}
			if o.Seller != s.self {
				return fmt.Sprintf("offer copy %s is by %s, not this seller", c, o.Seller)
			}
			if err := o.Validate(now, s.lim); err != nil {
				return fmt.Sprintf("offer copy %s: %v", c, err)
			}
			cp = offerCopy{key: o.Key, expires: o.ExpiresAt}
		}
		s.remember(c, cp, now)
	}
	if cp.key != p.OfferKey {
		return fmt.Sprintf("offer copy %s is of offer %q, the proposal names %q", c, cp.key, p.OfferKey)
	}
	if !cp.expires.Std().After(now.Add(-s.lim.ClockSkew)) {
		return fmt.Sprintf("offer copy %s expired at %s; propose against a current copy", c, cp.expires)
	}
	return ""
}

// remember adds a verified copy, dropping expired ones when full.
func (s *Service) remember(c cid.Cid, cp offerCopy, now time.Time) {
	s.copiesMu.Lock()
	defer s.copiesMu.Unlock()
	if len(s.copies) >= s.cfg.OfferCopies {
		cut := protocol.TimeOf(now.Add(-s.lim.ClockSkew))
		for k, v := range s.copies {
			if v.expires <= cut {
				delete(s.copies, k)
			}
		}
		if len(s.copies) >= s.cfg.OfferCopies {
			clear(s.copies)
		}
	}
	s.copies[c] = cp
}

// checkTerms is the capacity owner's check of a proposal against the
// offer as it stands. It returns a reason and detail, or "".
func checkTerms(p *protocol.LeaseProposal, own *OwnOffer, now time.Time) (protocol.Reason, string) {
	o := own.Current
	switch {
	case o == nil || own.Withdrawn || o.Withdrawn:
		return protocol.ReasonOfferExpired, fmt.Sprintf("offer %q was withdrawn", p.OfferKey)
	case o.Expired(now):
		return protocol.ReasonOfferExpired, fmt.Sprintf("offer %q is no longer published", p.OfferKey)
	case o.Paused:
		return protocol.ReasonOfferPaused, fmt.Sprintf("offer %q takes no new leases for now", p.OfferKey)
	case p.Price != o.Price || p.ReceiptInterval != o.ReceiptInterval || p.PaymentGrace != o.PaymentGrace:
		return protocol.ReasonTermsChanged, fmt.Sprintf("the offer now states price %s, receipt interval %v, grace %v; propose against the current copy",
			o.Price, o.ReceiptInterval.Std(), o.PaymentGrace.Std())
	case p.Length < o.MinLease || p.Length > o.MaxLease:
		return protocol.ReasonLengthOutOfRange, fmt.Sprintf("length %v: the offer takes %v to %v",
			p.Length.Std(), o.MinLease.Std(), o.MaxLease.Std())
	case p.ApplianceSize > o.MaxApplianceSize:
		return protocol.ReasonApplianceTooLarge, fmt.Sprintf("appliance of %s: the offer takes up to %s",
			protocol.FormatSize(p.ApplianceSize), protocol.FormatSize(o.MaxApplianceSize))
	case !slices.Contains(o.Formats, p.ApplianceFormat):
		return protocol.ReasonFormatNotAccepted, fmt.Sprintf("format %q: the offer takes %s",
			p.ApplianceFormat, strings.Join(o.Formats, ", "))
	}
	return "", ""
}

// serveRenewal answers a renew request.
func (s *Service) serveRenewal(ctx context.Context, remote peer.ID, body []byte) (byte, []byte) {
	now := s.clk.Now()
	rc := protocol.CIDOf(body)
	r, err := protocol.DecodeLeaseRenewal(body, s.lim)
	if err != nil {
		return s.rejectUnreadable(rc, err)
	}
	if r.Buyer != remote {
		return s.reject(rc, protocol.ReasonNotBuyer, fmt.Sprintf("the renewal's buyer is %s, the peer sending it is %s", r.Buyer, remote))
	}
	if err := r.ValidateFields(now, s.lim); err != nil {
		return s.reject(rc, protocol.ReasonInvalid, err.Error())
	}
	if err := protocol.VerifySignature(r); err != nil {
		return s.reject(rc, protocol.ReasonBadSignature, err.Error())
	}
	id := r.Lease.Cid
	var rec *record
	if err := s.db.View(func(t *store.Txn) error {
		var err error
		rec, err = getRecord(t, RoleSeller, id)
		return err
	}); err != nil {
		if errors.Is(err, ErrNotFound) {
			return s.reject(rc, protocol.ReasonUnknownLease, fmt.Sprintf("this seller holds no lease %s", id))
		}
		return s.reject(rc, protocol.ReasonBusy, err.Error())
	}
	l, err := rec.decode(s.lim)
	if err != nil {
		return s.reject(rc, protocol.ReasonBusy, err.Error())
	}
	if l.Buyer() != remote {
		return s.reject(rc, protocol.ReasonNotBuyer, fmt.Sprintf("lease %s is not yours", id))
	}
	// A renewal sent again gets the extension already granted.
	for _, eb := range rec.Exts {
		if e, err := protocol.DecodeLeaseExtension(eb, s.lim); err == nil {
			if c, _ := e.Renewal.CID(); c == rc {
				return tagExtension, eb
			}
		}
	}
	if rec.State == protocol.StateEnded || !rec.Ends.Std().After(now) {
		return s.reject(rc, protocol.ReasonNotRenewable, fmt.Sprintf("lease %s has ended", id))
	}
	head := headOf(rec)
	if (r.Prev == nil) != !head.Defined() || r.Prev != nil && r.Prev.Cid != head {
		return s.reject(rc, protocol.ReasonInvalid, "the renewal does not follow the lease's latest extension; refresh the lease and renew again")
	}
	own, err := s.offers.Offer(l.Proposal.OfferKey)
	if err != nil || own.Current == nil || own.Withdrawn || own.Current.Withdrawn {
		return s.reject(rc, protocol.ReasonOfferExpired, fmt.Sprintf("offer %q was withdrawn", l.Proposal.OfferKey))
	}
	o := own.Current
	switch {
	case o.Paused:
		return s.reject(rc, protocol.ReasonOfferPaused, fmt.Sprintf("offer %q takes no renewals for now", o.Key))
	case !o.Renewable:
		return s.reject(rc, protocol.ReasonNotRenewable, fmt.Sprintf("offer %q does not allow renewals", o.Key))
	}
	total := protocol.Millis(rec.Ends-l.Proposal.Start) + r.Extend
	if total > o.MaxLease {
		return s.reject(rc, protocol.ReasonLengthOutOfRange, fmt.Sprintf("renewed, the lease would last %v; the offer allows %v",
			total.Std(), o.MaxLease.Std()))
	}
	ext := &protocol.LeaseExtension{
		Version:    protocol.LeaseExtensionVersion,
		Seller:     s.self,
		Renewal:    *r,
		Ends:       rec.Ends + protocol.Time(r.Extend),
		AcceptedAt: protocol.TimeOf(now),
	}
	eb, err := protocol.Sign(ext, s.key)
	if err != nil {
		return s.reject(rc, protocol.ReasonBusy, err.Error())
	}
	errMoved := errors.New("lease changed")
	err = s.db.Update(func(t *store.Txn) error {
		cur, err := getRecord(t, RoleSeller, id)
		if err != nil {
			return err
		}
		if cur.State == protocol.StateEnded || headOf(cur) != head || cur.Ends != rec.Ends {
			return errMoved
		}
		cur.Exts = append(cur.Exts, eb)
		cur.Ends = ext.Ends
		cur.Updated = now.UnixNano()
		if err := setRec(t, soldKey(id), cur); err != nil {
			return err
		}
		if _, ok := s.prov.(Extender); ok {
			// The instance follows the new end, durably: retried until the
			// runtime has it.
			if err := t.Schedule(store.Job{Kind: JobExtend, ID: id.String()}); err != nil {
				return err
			}
		}
		return t.Schedule(store.Job{Kind: JobExpire, ID: "sold/" + id.String(), Due: ext.Ends.Std()})
	})
	switch {
	case errors.Is(err, errMoved):
		return s.reject(rc, protocol.ReasonInvalid, "the lease changed meanwhile (ended or renewed); refresh it and renew again")
	case err != nil:
		return s.reject(rc, protocol.ReasonBusy, err.Error())
	}
	s.log.Info("lease renewed", "lease", id, "buyer", remote, "ends", ext.Ends)
	s.met.answers.WithLabelValues("extended", "").Inc()
	s.changed(RoleSeller, id)
	return tagExtension, eb
}

// runExtend moves a renewed lease's instance to the lease's end as stored
// now. An error keeps the job, retried with the queue's backoff; a lease
// that ended meanwhile needs nothing.
func (s *Service) runExtend(ctx context.Context, j store.Job) error {
	id, err := cid.Decode(j.ID)
	if err != nil {
		s.log.Error("extend job with a bad ID", "id", j.ID)
		return nil
	}
	x, ok := s.prov.(Extender)
	if !ok {
		return nil
	}
	var rec *record
	err = s.db.View(func(t *store.Txn) error {
		rec, err = getRecord(t, RoleSeller, id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.State == protocol.StateEnded {
		return nil
	}
	if err := x.Extend(ctx, id, rec.Ends.Std()); err != nil {
		s.log.Warn("extend the lease's instance; trying again", "lease", id, "ends", rec.Ends, "err", err)
		return fmt.Errorf("lease %s: extend: %w", id, err)
	}
	return nil
}

// headOf is the CID of a record's latest extension, or undefined.
func headOf(r *record) cid.Cid {
	if len(r.Exts) == 0 {
		return cid.Undef
	}
	return protocol.CIDOf(r.Exts[len(r.Exts)-1])
}

// serveEnd answers an end request from the buyer.
func (s *Service) serveEnd(ctx context.Context, remote peer.ID, body []byte) (byte, []byte) {
	now := s.clk.Now()
	ec := protocol.CIDOf(body)
	e, err := protocol.DecodeLeaseEnd(body, s.lim)
	if err != nil {
		return s.rejectUnreadable(ec, err)
	}
	if e.By != remote {
		return s.reject(ec, protocol.ReasonNotBuyer, fmt.Sprintf("the end is signed for %s, the peer sending it is %s", e.By, remote))
	}
	if err := e.ValidateFields(now, s.lim); err != nil {
		return s.reject(ec, protocol.ReasonInvalid, err.Error())
	}
	if err := protocol.VerifySignature(e); err != nil {
		return s.reject(ec, protocol.ReasonBadSignature, err.Error())
	}
	subject := e.Subject.Cid
	id, tomb, err := s.resolve(subject)
	if err != nil {
		return s.reject(ec, protocol.ReasonBusy, err.Error())
	}
	if !id.Defined() {
		if tomb != "" && tomb != remote {
			return s.reject(ec, protocol.ReasonNotBuyer, "that proposal is not yours")
		}
		// Not granted (yet): remember that the buyer gave it up, so that
		// the proposal, arriving late, is refused.
		granted, err := s.tombstone(subject, remote, now)
		if err != nil {
			return s.reject(ec, protocol.ReasonBusy, err.Error())
		}
		if !granted.Defined() {
			return s.status(&protocol.LeaseStatus{Lease: e.Subject, State: protocol.StateEnded, Cause: protocol.CauseEndedByBuyer, Ends: e.At})
		}
		id = granted
	}
	var rec *record
	if err := s.db.View(func(t *store.Txn) error {
		var err error
		rec, err = getRecord(t, RoleSeller, id)
		return err
	}); err != nil {
		return s.reject(ec, protocol.ReasonUnknownLease, err.Error())
	}
	l, err := rec.decode(s.lim)
	if err != nil {
		return s.reject(ec, protocol.ReasonBusy, err.Error())
	}
	if l.Buyer() != remote {
		return s.reject(ec, protocol.ReasonNotBuyer, fmt.Sprintf("lease %s is not yours", id))
	}
	rec, err = s.endSold(id, protocol.CauseEndedByBuyer, "ended by the buyer", body)
	if err != nil {
		return s.reject(ec, protocol.ReasonBusy, err.Error())
	}
	s.log.Info("lease ended by the buyer", "lease", id, "buyer", remote)
	return s.statusOf(id, rec)
}

// resolve finds the seller's lease for a lease ID or a proposal CID. It
// returns the lease ID (undefined when none) and, for a proposal given up
// before it was granted, the buyer that gave it up.
func (s *Service) resolve(c cid.Cid) (id cid.Cid, tomb peer.ID, err error) {
	err = s.db.View(func(t *store.Txn) error {
		if _, err := t.Get(soldKey(c)); err == nil {
			id = c
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		v, err := t.Get(propKey(c))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		id, tomb, err = parseProp(v)
		return err
	})
	return id, tomb, err
}

// parseProp reads a prop index value: a lease ID, or a tombstone.
func parseProp(v []byte) (cid.Cid, peer.ID, error) {
	if b, ok := strings.CutPrefix(string(v), tombstonePrefix); ok {
		p, err := peer.Decode(b)
		return cid.Undef, p, err
	}
	c, err := cid.Cast(v)
	return c, "", err
}

// tombstone marks a proposal as given up by its buyer, unless it was
// granted meanwhile: then it returns the lease's ID.
func (s *Service) tombstone(pc cid.Cid, buyer peer.ID, now time.Time) (cid.Cid, error) {
	var granted cid.Cid
	err := s.db.Update(func(t *store.Txn) error {
		granted = cid.Undef
		v, err := t.Get(propKey(pc))
		if err == nil {
			// Granted meanwhile (granted is its ID), or already given up.
			granted, _, err = parseProp(v)
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := t.Set(propKey(pc), []byte(tombstonePrefix+buyer.String())); err != nil {
			return err
		}
		// The proposal cannot arrive after it expired: at most
		// MaxProposalTTL after it was issued, issued at most a skew ahead.
		forget := now.Add(protocol.MaxProposalTTL + 2*s.lim.ClockSkew)
		return t.Schedule(store.Job{Kind: JobForget, ID: pc.String(), Due: forget})
	})
	return granted, err
}

// runForget drops a tombstone whose proposal can no longer arrive.
func (s *Service) runForget(ctx context.Context, j store.Job) error {
	pc, err := cid.Decode(j.ID)
	if err != nil {
		s.log.Error("forget job with a bad ID", "id", j.ID)
		return nil
	}
	return s.db.Update(func(t *store.Txn) error {
		v, err := t.Get(propKey(pc))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.HasPrefix(string(v), tombstonePrefix) {
			return t.Delete(propKey(pc))
		}
		return nil
	})
}

// serveStatus answers a status request: the body is the binary CID of a
// lease or of the proposal it was granted on.
func (s *Service) serveStatus(ctx context.Context, remote peer.ID, body []byte) (byte, []byte) {
	c, err := cid.Cast(body)
	if err != nil {
		return s.reject(protocol.CIDOf(body), protocol.ReasonInvalid, "a status request carries the binary CID of a lease")
	}
	id, tomb, err := s.resolve(c)
	if err != nil {
		return s.reject(c, protocol.ReasonBusy, err.Error())
	}
	if !id.Defined() {
		if tomb == remote {
			return s.status(&protocol.LeaseStatus{Lease: protocol.Link{Cid: c}, State: protocol.StateEnded, Cause: protocol.CauseEndedByBuyer})
		}
		return s.reject(c, protocol.ReasonUnknownLease, fmt.Sprintf("this seller holds no lease %s", c))
	}
	var rec *record
	if err := s.db.View(func(t *store.Txn) error {
		var err error
		rec, err = getRecord(t, RoleSeller, id)
		return err
	}); err != nil {
		return s.reject(c, protocol.ReasonUnknownLease, err.Error())
	}
	l, err := rec.decode(s.lim)
	if err != nil {
		return s.reject(c, protocol.ReasonBusy, err.Error())
	}
	if l.Buyer() != remote {
		return s.reject(c, protocol.ReasonNotBuyer, fmt.Sprintf("lease %s is not yours", id))
	}
	return s.statusOf(id, rec)
}

func (s *Service) statusOf(id cid.Cid, rec *record) (byte, []byte) {
	st := &protocol.LeaseStatus{
		Lease:      protocol.Link{Cid: id},
		State:      rec.State,
		Cause:      rec.Cause,
		Endpoint:   rec.Endpoint,
		Detail:     cleanText(rec.Detail),
		Ends:       rec.Ends,
		Extensions: uint32(len(rec.Exts)),
	}
	if h := headOf(rec); h.Defined() {
		st.Head = &protocol.Link{Cid: h}
	}
	return s.status(st)
}

func (s *Service) status(st *protocol.LeaseStatus) (byte, []byte) {
	st.Version = protocol.LeaseStatusVersion
	st.At = protocol.TimeOf(s.clk.Now())
	b, err := protocol.Marshal(st)
	if err != nil {
		s.log.Error("encode lease status", "err", err)
		return 0, nil
	}
	return tagLeaseStat, b
}

// endSold ends a seller's lease (idempotently) and schedules the
// termination of its instance. endRaw is the buyer's signed end, if any.
func (s *Service) endSold(id cid.Cid, cause protocol.EndCause, detail string, endRaw []byte) (*record, error) {
	now := s.clk.Now()
	var out *record
	ended := false
	err := s.db.Update(func(t *store.Txn) error {
		ended = false
		rec, err := getRecord(t, RoleSeller, id)
		if err != nil {
			return err
		}
		out = rec
		if rec.State == protocol.StateEnded {
			return nil
		}
		ended = true
		rec.State, rec.Cause = protocol.StateEnded, cause
		rec.Detail = detail
		rec.End = endRaw
		rec.Ended = endedAt(rec, endRaw, now, s.lim)
		rec.Updated = now.UnixNano()
		if err := setRec(t, soldKey(id), rec); err != nil {
			return err
		}
		if err := t.Cancel(JobExpire, "sold/"+id.String()); err != nil {
			return err
		}
		return t.Schedule(store.Job{Kind: JobTerminate, ID: id.String(), Data: []byte(cause)})
	})
	if err == nil {
		if ended {
			s.met.ended.WithLabelValues(string(cause)).Inc()
		}
		s.changed(RoleSeller, id)
	}
	return out, err
}

// endedAt is when a seller's lease ended: at the time of the buyer's
// signed end when it sent one (not before the lease started, not after
// now), at its end when it expired, else now.
func endedAt(rec *record, endRaw []byte, now time.Time, lim protocol.Limits) protocol.Time {
	at := protocol.TimeOf(now)
	if at > rec.Ends {
		at = rec.Ends
	}
	if endRaw == nil {
		return at
	}
	e, err := protocol.DecodeLeaseEnd(endRaw, lim)
	if err != nil || e.At >= at {
		return at
	}
	if l, err := rec.decode(lim); err == nil && e.At < l.Proposal.Start {
		return l.Proposal.Start
	}
	return e.At
}

// EndLease ends one of the seller's leases early (ended_by_seller): the
// instance is terminated. The buyer learns it from the lease's status.
func (s *Service) EndLease(ctx context.Context, id cid.Cid, detail string) (*Info, error) {
	rec, err := s.endSold(id, protocol.CauseEndedBySeller, detail, nil)
	if err != nil {
		return nil, fmt.Errorf("lease %s: end: %w", id, err)
	}
	return rec.info(RoleSeller, id, s.lim)
}

// SetState records what the runtime reports about a seller's lease:
// provisioning, running (with its endpoint) or ended (failed or
// ended_by_seller; the instance is then terminated). A lease that ended
// does not change any more: the report is refused with ErrEnded.
func (s *Service) SetState(ctx context.Context, id cid.Cid, r Report) error {
	if err := protocol.ValidateEndpoint(r.Endpoint); err != nil {
		return fmt.Errorf("lease %s: set state: %w: %v", id, ErrInvalid, err)
	}
	detail := cleanText(r.Detail)
	switch r.State {
	case protocol.StateEnded:
		if r.Cause != protocol.CauseFailed && r.Cause != protocol.CauseEndedBySeller {
			return fmt.Errorf("lease %s: set state: %w: the runtime ends a lease as failed or ended_by_seller, not %q", id, ErrInvalid, r.Cause)
		}
		_, err := s.endSold(id, r.Cause, detail, nil)
		return err
	case protocol.StateProvisioning, protocol.StateRunning:
	default:
		return fmt.Errorf("lease %s: set state %q: %w: want provisioning, running or ended", id, r.State, ErrInvalid)
	}
	now := s.clk.Now()
	err := s.db.Update(func(t *store.Txn) error {
		rec, err := getRecord(t, RoleSeller, id)
		if err != nil {
			return err
		}
		if rec.State == protocol.StateEnded {
			return fmt.Errorf("lease %s: set state %s: %w (%s)", id, r.State, ErrEnded, rec.Cause)
		}
		if rec.State == protocol.StateRunning && r.State == protocol.StateProvisioning {
			return fmt.Errorf("lease %s: set state: %w: running cannot go back to provisioning", id, ErrInvalid)
		}
		rec.State, rec.Endpoint, rec.Detail = r.State, r.Endpoint, detail
		rec.Updated = now.UnixNano()
		return setRec(t, soldKey(id), rec)
	})
	if err == nil {
		s.changed(RoleSeller, id)
	}
	return err
}

// runExpire ends a lease at its end: the seller's is terminated, the
// buyer's copy is marked ended.
func (s *Service) runExpire(ctx context.Context, j store.Job) error {
	role, idStr, ok := strings.Cut(j.ID, "/")
	id, err := cid.Decode(idStr)
	if !ok || err != nil || role != "sold" && role != "bought" {
		s.log.Error("expire job with a bad ID", "id", j.ID)
		return nil
	}
	if role == "bought" {
		return s.expireBought(id)
	}
	now := s.clk.Now()
	var rec *record
	err = s.db.View(func(t *store.Txn) error {
		rec, err = getRecord(t, RoleSeller, id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.State == protocol.StateEnded {
		return nil
	}
	if now.Before(rec.Ends.Std()) {
		// Renewed meanwhile: the renewal rescheduled this job.
		return nil
	}
	if _, err := s.endSold(id, protocol.CauseExpired, "", nil); err != nil {
		return err
	}
	s.log.Info("lease expired", "lease", id)
	return nil
}

// runTerminate terminates an ended lease's instance, then releases its
// slots.
func (s *Service) runTerminate(ctx context.Context, j store.Job) error {
	id, err := cid.Decode(j.ID)
	if err != nil {
		s.log.Error("terminate job with a bad ID", "id", j.ID)
		return nil
	}
	if s.prov == nil {
		return nil
	}
	if err := s.prov.Terminate(ctx, id, protocol.EndCause(j.Data)); err != nil {
		return fmt.Errorf("lease %s: terminate: %w", id, err)
	}
	var held *active
	now := s.clk.Now()
	err = s.db.Update(func(t *store.Txn) error {
		held = nil
		rec, err := getRecord(t, RoleSeller, id)
		if err != nil {
			return err
		}
		if rec.Terminated {
			return nil
		}
		var a active
		if err := getRec(t, activeKey(id), &a); err == nil {
			held = &a
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		rec.Terminated = true
		rec.Updated = now.UnixNano()
		if err := setRec(t, soldKey(id), rec); err != nil {
			return err
		}
		return t.Delete(activeKey(id))
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if held != nil {
		if pc, err := cid.Decode(held.Proposal); err == nil {
			s.releases.push(pc)
		}
	}
	return nil
}

// reprovision hands the leases still provisioning to the Provisioner
// again after a restart.
func (s *Service) reprovision() error {
	type item struct{ id cid.Cid }
	var items []item
	err := s.db.View(func(t *store.Txn) error {
		return t.Iterate(activePrefix, func(k, _ []byte) error {
			id, err := cidFromKey(k)
			if err != nil {
				return nil
			}
			items = append(items, item{id: id})
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, it := range items {
		var rec *record
		err := s.db.View(func(t *store.Txn) error {
			var err error
			rec, err = getRecord(t, RoleSeller, it.id)
			return err
		})
		if err != nil {
			s.log.Warn("read lease to provision", "lease", it.id, "err", err)
			continue
		}
		if rec.State != protocol.StateProvisioning {
			continue
		}
		l, err := rec.decode(s.lim)
		if err != nil {
			s.log.Warn("read lease to provision", "lease", it.id, "err", err)
			continue
		}
		s.goProvision(it.id, l)
	}
	return nil
}

// goProvision calls the Provisioner in the background; its error ends
// the lease as failed.
func (s *Service) goProvision(id cid.Cid, l *protocol.Lease) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.prov.Provision(s.ctx, id, l)
		if err == nil || s.ctx.Err() != nil {
			return
		}
		s.log.Warn("provision failed", "lease", id, "err", err)
		if _, err := s.endSold(id, protocol.CauseFailed, err.Error(), nil); err != nil && !isClosed(err) {
			s.log.Error("end failed lease", "lease", id, "err", err)
		}
	}()
}

// Deny adds a buyer to the deny list: its proposals are refused
// (buyer_refused). Its running leases go on.
func (s *Service) Deny(ctx context.Context, p peer.ID, note string) error {
	if p == "" || p == s.self {
		return fmt.Errorf("lease: deny %q: %w: want another peer's ID", p, ErrInvalid)
	}
	d := Denied{Peer: p, Note: cleanText(note), At: s.clk.Now().UTC()}
	b, err := encodeStored(d)
	if err != nil {
		return err
	}
	s.denyMu.Lock()
	defer s.denyMu.Unlock()
	if err := s.db.Update(func(t *store.Txn) error { return t.Set(denyKey(p), b) }); err != nil {
		return fmt.Errorf("lease: deny %s: %w", p, err)
	}
	s.denied[p] = d
	return nil
}

// Allow removes a buyer from the deny list.
func (s *Service) Allow(ctx context.Context, p peer.ID) error {
	s.denyMu.Lock()
	defer s.denyMu.Unlock()
	if _, ok := s.denied[p]; !ok {
		return fmt.Errorf("lease: allow %s: %w: not on the deny list ('deny ls' lists it)", p, ErrNotFound)
	}
	if err := s.db.Update(func(t *store.Txn) error { return t.Delete(denyKey(p)) }); err != nil {
		return fmt.Errorf("lease: allow %s: %w", p, err)
	}
	delete(s.denied, p)
	return nil
}

// ListDenied returns the deny list, oldest first.
func (s *Service) ListDenied() []Denied {
	s.denyMu.RLock()
	out := make([]Denied, 0, len(s.denied))
	for _, d := range s.denied {
		out = append(out, d)
	}
	s.denyMu.RUnlock()
	slices.SortFunc(out, func(a, b Denied) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(string(a.Peer), string(b.Peer))
	})
	return out
}

func (s *Service) isDenied(p peer.ID) (Denied, bool) {
	s.denyMu.RLock()
	defer s.denyMu.RUnlock()
	d, ok := s.denied[p]
	return d, ok
}

func (s *Service) loadDenied() error {
	return s.db.View(func(t *store.Txn) error {
		return t.Iterate(denyPrefix, func(_, v []byte) error {
			var d Denied
			if err := decodeStored(v, &d); err != nil {
				return fmt.Errorf("lease: stored deny entry: %w", err)
			}
			s.denied[d.Peer] = d
			return nil
		})
	})
}

// Pause drains one of the seller's offers: new proposals and renewals are
// refused (offer_paused) while running leases go on.
func (s *Service) Pause(ctx context.Context, key string) error {
	if s.offers == nil {
		return fmt.Errorf("lease: pause %s: %w: this node sells nothing", key, ErrInvalid)
	}
	return s.offers.SetPaused(ctx, key, true)
}

// Resume takes new leases on a paused offer again.
func (s *Service) Resume(ctx context.Context, key string) error {
	if s.offers == nil {
		return fmt.Errorf("lease: resume %s: %w: this node sells nothing", key, ErrInvalid)
	}
	return s.offers.SetPaused(ctx, key, false)
}

// rejectUnreadable refuses a request whose record could not be decoded or
// whose fields are out of range: "unknown version" when that is the
// cause, so the sender learns to upgrade, "invalid" otherwise.
func (s *Service) rejectUnreadable(c cid.Cid, err error) (byte, []byte) {
	if errors.Is(err, protocol.ErrUnknownVersion) {
		return s.reject(c, protocol.ReasonUnknownVersion, err.Error())
	}
	return s.reject(c, protocol.ReasonInvalid, err.Error())
}
