package lease

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// call wraps a buyer's operation: it holds the gate, and its context also
// ends when the service closes.
func (s *Service) call(ctx context.Context) (context.Context, host.Host, func(), error) {
	if err := s.enter(); err != nil {
		return nil, nil, nil, err
	}
	h, err := s.hostOrErr()
	if err != nil {
		s.leave()
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, h, func() { stop(); cancel(); s.leave() }, nil
}

// Propose proposes a lease on offer (a copy from the book) and returns the
// lease stored, or the seller's refusal as a *RejectedError (errors.Is
// ErrRejected). When the seller cannot be reached or answers wrongly, the
// proposal is given up: the node tells the seller, until it listens, that
// any lease granted on it ends.
func (s *Service) Propose(ctx context.Context, offer *protocol.Offer, p Params) (*Info, error) {
	if offer == nil {
		return nil, fmt.Errorf("lease: propose: %w: no offer", ErrInvalid)
	}
	ctx, h, done, err := s.call(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease: propose to %s: %w", offer.ID(), err)
	}
	defer done()
	fail := func(err error) (*Info, error) {
		return nil, fmt.Errorf("lease: propose to %s: %w", offer.ID(), err)
	}
	now := s.clk.Now()
	offerRaw, err := protocol.Marshal(offer)
	if err != nil {
		return fail(err)
	}
	prop, err := s.buildProposal(offer, protocol.CIDOf(offerRaw), p, now)
	if err != nil {
		return fail(err)
	}
	raw, err := protocol.Sign(prop, s.key)
	if err != nil {
		return fail(err)
	}
	pc := protocol.CIDOf(raw)
	// The proposal is held in memory while it travels: End can give it
	// up, List shows it. It is written only when given up.
	pd := &pending{Proposal: raw, Offer: offerRaw, Seller: offer.Seller, Addrs: offer.Addrs, Created: now.UnixNano()}
	ctx, cancel := context.WithCancel(ctx)
	s.inflightMu.Lock()
	s.inflight[pc] = &inflightProp{cancel: cancel, pd: pd}
	s.inflightMu.Unlock()
	defer func() {
		s.inflightMu.Lock()
		delete(s.inflight, pc)
		s.inflightMu.Unlock()
		cancel()
	}()

	req := appendFrame(appendFrame(make([]byte, 0, len(raw)+len(offerRaw)+16), tagPropose, raw), tagOffer, offerRaw)
	sent := time.Now()
	tag, body, err := s.roundTrip(ctx, h, offer.Seller, offer.Addrs, req, tagLease, tagRejection)
	if err != nil {
		s.abandon(pc, pd)
		return fail(err)
	}
	if tag == tagRejection {
		rej, err := s.checkRejection(body, offer.Seller, pc)
		if err != nil {
			s.abandon(pc, pd)
			return fail(err)
		}
		if rej.Reason == protocol.ReasonBusy {
			// "Busy" may come from a seller that decided later after
			// all: give the proposal up, so that no lease stands on it.
			s.abandon(pc, pd)
		}
		rej.Offer = offer.ID()
		return nil, rej
	}
	in, err := s.acceptLease(body, prop, pc, offer)
	if err != nil {
		s.abandon(pc, pd)
		return fail(err)
	}
	s.met.roundTrip.Observe(time.Since(sent).Seconds())
	return in, nil
}

// buildProposal fills a proposal from the offer and the buyer's choices.
func (s *Service) buildProposal(o *protocol.Offer, oc cid.Cid, p Params, now time.Time) (*protocol.LeaseProposal, error) {
	if o.Seller == s.self {
		return nil, fmt.Errorf("%w: the offer is this node's own", ErrInvalid)
	}
	if !p.Appliance.Defined() {
		return nil, fmt.Errorf("%w: no appliance: give its CID (--appliance)", ErrInvalid)
	}
	if p.Length <= 0 {
		return nil, fmt.Errorf("%w: lease length %v: give a positive duration such as 2h (--for)", ErrInvalid, p.Length)
	}
	slots := p.Slots
	if slots == 0 {
		slots = 1
	}
	start := p.Start
	if start.IsZero() {
		start = now
	}
	nonce := make([]byte, protocol.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	prop := &protocol.LeaseProposal{
		Version:         protocol.LeaseProposalVersion,
		Buyer:           s.self,
		Seller:          o.Seller,
		Offer:           protocol.Link{Cid: oc},
		OfferKey:        o.Key,
		Slots:           slots,
		Start:           protocol.TimeOf(start),
		Length:          protocol.MillisOf(p.Length),
		Price:           o.Price,
		Appliance:       protocol.Link{Cid: p.Appliance},
		ApplianceSize:   p.ApplianceSize,
		ApplianceFormat: p.ApplianceFormat,
		AccessKey:       strings.TrimSpace(p.AccessKey),
		ReceiptInterval: o.ReceiptInterval,
		PaymentGrace:    o.PaymentGrace,
		Nonce:           nonce,
		IssuedAt:        protocol.TimeOf(now),
		ExpiresAt:       protocol.TimeOf(now.Add(s.cfg.ProposalTTL)),
	}
	if err := prop.ValidateFields(now, s.lim); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return prop, nil
}

// checkRejection decodes and verifies a seller's refusal of subject.
func (s *Service) checkRejection(body []byte, seller peer.ID, subject cid.Cid) (*RejectedError, error) {
	r, err := protocol.DecodeLeaseRejection(body, s.lim)
	if err == nil {
		err = r.Validate(s.clk.Now(), s.lim)
	}
	if err == nil && r.Seller != seller {
		err = fmt.Errorf("signed by %s", r.Seller)
	}
	if err == nil && r.Subject.Cid != subject {
		err = fmt.Errorf("refuses %s, not the request sent", r.Subject.Cid)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: rejection: %v", ErrBadAnswer, err)
	}
	return &RejectedError{Seller: seller, Subject: subject, Reason: r.Reason, Detail: r.Detail, Rejection: r}, nil
}

// acceptLease checks the seller's lease against the proposal sent and
// stores it durably with its expiry job.
func (s *Service) acceptLease(body []byte, prop *protocol.LeaseProposal, pc cid.Cid, offer *protocol.Offer) (*Info, error) {
	now := s.clk.Now()
	l, err := protocol.DecodeLease(body, s.lim)
	if err == nil {
		err = l.ValidateFields(now, s.lim)
	}
	if err == nil {
		if c, _ := l.Proposal.CID(); c != pc {
			err = fmt.Errorf("it embeds proposal %s, not %s", c, pc)
		}
	}
	if err == nil && l.Seller != prop.Seller {
		err = fmt.Errorf("signed by %s", l.Seller)
	}
	if err == nil {
		// The buyer's own signature is in the proposal bytes compared
		// above; only the seller's needs checking.
		err = protocol.VerifySignature(l)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: lease: %v", ErrBadAnswer, err)
	}
	id := protocol.CIDOf(body)
	rec := &record{Raw: body, State: protocol.StateProvisioning, Ends: l.EndsAt(), Addrs: offer.Addrs,
		Renewable: offer.Renewable, MaxLease: offer.MaxLease,
		Updated: now.UnixNano(), lease: l}
	err = s.db.Update(func(t *store.Txn) error {
		rec.State, rec.Cause, rec.End = protocol.StateProvisioning, "", nil
		var pd pending
		err := getRec(t, pendingKey(pc), &pd)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := t.Set(bpropKey(pc), id.Bytes()); err != nil {
			return err
		}
		if err == nil && pd.End != nil {
			// Given up while the answer travelled: the pending record's
			// job tells the seller (by proposal CID).
			rec.State, rec.Cause, rec.End = protocol.StateEnded, protocol.CauseEndedByBuyer, pd.End
			rec.Ended = protocol.TimeOf(now)
			return setRec(t, boughtKey(id), rec)
		}
		if err := setRec(t, boughtKey(id), rec); err != nil {
			return err
		}
		return t.Schedule(store.Job{Kind: JobExpire, ID: "bought/" + id.String(), Due: rec.Ends.Std()})
	})
	if err != nil {
		return nil, fmt.Errorf("store lease %s: %w", id, err)
	}
	s.changed(RoleBuyer, id)
	return rec.info(RoleBuyer, id, s.lim)
}

// abandon gives a proposal up: the seller is told (by a job, until it
// listens) that any lease granted on it ends.
func (s *Service) abandon(pc cid.Cid, pd *pending) {
	if _, err := s.giveUp(pc, pd, 0); err != nil && !isClosed(err) {
		s.log.Error("give up proposal", "proposal", pc, "err", err)
	}
}

// giveUp stores a proposal as given up, with the delivery of its signed
// end to the seller scheduled after delay. If the lease was stored
// meanwhile, it returns the lease's ID instead and changes nothing.
func (s *Service) giveUp(pc cid.Cid, pd *pending, delay time.Duration) (cid.Cid, error) {
	now := s.clk.Now()
	e := &protocol.LeaseEnd{Version: protocol.LeaseEndVersion, By: s.self, Subject: protocol.Link{Cid: pc}, At: protocol.TimeOf(now)}
	raw, err := protocol.Sign(e, s.key)
	if err != nil {
		return cid.Undef, err
	}
	var granted cid.Cid
	err = s.db.Update(func(t *store.Txn) error {
		granted = cid.Undef
		if v, err := t.Get(bpropKey(pc)); err == nil {
			granted, err = cid.Cast(v)
			return err
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := t.Get(pendingKey(pc)); err == nil {
			return nil // given up before
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		rec := *pd
		rec.End = raw
		if err := setRec(t, pendingKey(pc), &rec); err != nil {
			return err
		}
		return t.Schedule(store.Job{Kind: JobSendEnd, ID: "pending/" + pc.String(), Due: now.Add(delay)})
	})
	return granted, err
}

// roundTrip sends one request to seller and reads one answer whose tag is
// one of want.
func (s *Service) roundTrip(ctx context.Context, h host.Host, seller peer.ID, addrs []string, req []byte, want ...byte) (byte, []byte, error) {
	if h.Network().Connectedness(seller) != network.Connected {
		ai := peer.AddrInfo{ID: seller, Addrs: transportAddrs(seller, addrs)}
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		err := h.Connect(dctx, ai)
		cancel()
		if err != nil {
			return 0, nil, fmt.Errorf("%w: connect: %v", ErrUnreachable, err)
		}
	}
	st, err := h.NewStream(ctx, seller, ProtocolID)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: open stream: %v", ErrUnreachable, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	_ = st.SetDeadline(time.Now().Add(s.cfg.RequestTimeout))
	if _, err := st.Write(req); err != nil {
		_ = st.Reset()
		return 0, nil, fmt.Errorf("%w: send: %v", ErrUnreachable, errOr(ctx, err))
	}
	_ = st.CloseWrite()
	tag, body, err := readFrame(bufio.NewReaderSize(st, 2048), s.lim, want...)
	if err != nil {
		_ = st.Reset()
		return 0, nil, fmt.Errorf("%w: no valid answer: %v", ErrUnreachable, errOr(ctx, err))
	}
	_ = st.Close()
	return tag, body, nil
}

// errOr prefers the context's error (cancelled, deadline) to the I/O
// error it caused.
func errOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// transportAddrs parses an offer's addresses, keeping those of seller.
func transportAddrs(seller peer.ID, addrs []string) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			continue
		}
		tr, id := peer.SplitAddr(m)
		if tr == nil || id != "" && id != seller {
			continue
		}
		out = append(out, tr)
	}
	return out
}

// Best proposes to the offers q selects, in the book's order, until one
// grants a lease. Offers whose published terms cannot fit p are skipped
// without asking. It returns the lease and every offer skipped or refused
// on the way, in order (for the CLI to say so); when none granted a
// lease, the error wraps ErrNoOffer.
func (s *Service) Best(ctx context.Context, q market.Query, p Params) (*Info, []Attempt, error) {
	if s.book == nil {
		return nil, nil, fmt.Errorf("lease: best: %w: this node has no order book", ErrInvalid)
	}
	slots := max(p.Slots, 1)
	if q.MinSlots < slots {
		q.MinSlots = slots
	}
	var tried []Attempt
	for _, e := range s.book.Query(q) {
		if err := ctx.Err(); err != nil {
			return nil, tried, err
		}
		if e.Offer.Seller == s.self {
			continue
		}
		if rej := s.wontFit(e.Offer, p, slots); rej != nil {
			tried = append(tried, Attempt{Offer: e.Offer.ID(), CID: e.CID, Err: rej})
			continue
		}
		in, err := s.Propose(ctx, e.Offer, p)
		if err == nil {
			return in, tried, nil
		}
		if ctx.Err() != nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalid) {
			return nil, tried, err
		}
		s.log.Info("offer refused, trying the next", "offer", e.Offer.ID(), "err", err)
		tried = append(tried, Attempt{Offer: e.Offer.ID(), CID: e.CID, Err: err})
	}
	return nil, tried, fmt.Errorf("lease: best: %w: %d offers tried or skipped; widen the query", ErrNoOffer, len(tried))
}

// wontFit is the refusal an offer's published terms imply for p, if any.
func (s *Service) wontFit(o *protocol.Offer, p Params, slots uint32) *RejectedError {
	rej := func(r protocol.Reason, format string, args ...any) *RejectedError {
		return &RejectedError{Seller: o.Seller, Offer: o.ID(), Reason: r, Detail: fmt.Sprintf(format, args...), Local: true}
	}
	l := protocol.MillisOf(p.Length)
	switch {
	case o.Paused:
		return rej(protocol.ReasonOfferPaused, "the offer is paused")
	case o.Slots < slots:
		return rej(protocol.ReasonNoCapacity, "%d slots free, %d wanted", o.Slots, slots)
	case l < o.MinLease || l > o.MaxLease:
		return rej(protocol.ReasonLengthOutOfRange, "the offer takes %v to %v", o.MinLease.Std(), o.MaxLease.Std())
	case p.ApplianceSize > o.MaxApplianceSize:
		return rej(protocol.ReasonApplianceTooLarge, "the offer takes up to %s", protocol.FormatSize(o.MaxApplianceSize))
	case !slices.Contains(o.Formats, p.ApplianceFormat):
		return rej(protocol.ReasonFormatNotAccepted, "the offer takes %s", strings.Join(o.Formats, ", "))
	}
	return nil
}

// Renew asks the seller to extend a lease the node bought by extend. The
// offer must allow renewals and the renewed lease stay within its maximum
// length: checked here against the offer copy leased, and by the seller
// against its current offer. A refusal is a *RejectedError.
func (s *Service) Renew(ctx context.Context, id cid.Cid, extend time.Duration) (*Info, error) {
	ctx, h, done, err := s.call(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease %s: renew: %w", id, err)
	}
	defer done()
	fail := func(err error) (*Info, error) { return nil, fmt.Errorf("lease %s: renew: %w", id, err) }
	if extend <= 0 {
		return fail(fmt.Errorf("%w: extend by %v: give a positive duration such as 1h (--for)", ErrInvalid, extend))
	}
	var rec *record
	if err := s.db.View(func(t *store.Txn) error {
		var err error
		rec, err = getRecord(t, RoleBuyer, id)
		return err
	}); err != nil {
		return fail(err)
	}
	l, err := rec.decode(s.lim)
	if err != nil {
		return fail(err)
	}
	now := s.clk.Now()
	if rec.State == protocol.StateEnded || !rec.Ends.Std().After(now) {
		return fail(fmt.Errorf("%w: it ended; lease anew", ErrEnded))
	}
	local := func(r protocol.Reason, format string, args ...any) (*Info, error) {
		return nil, &RejectedError{Seller: l.Seller, Offer: l.Proposal.OfferID(), Subject: id, Reason: r,
			Detail: fmt.Sprintf(format, args...), Local: true}
	}
	if !rec.Renewable {
		return local(protocol.ReasonNotRenewable, "offer %s does not allow renewals", l.Proposal.OfferID())
	}
	if total := protocol.Millis(rec.Ends-l.Proposal.Start) + protocol.MillisOf(extend); total > rec.MaxLease {
		return local(protocol.ReasonLengthOutOfRange, "renewed, the lease would last %v; the offer allows %v", total.Std(), rec.MaxLease.Std())
	}
	head := headOf(rec)
	r := &protocol.LeaseRenewal{
		Version:   protocol.LeaseRenewalVersion,
		Buyer:     s.self,
		Lease:     protocol.Link{Cid: id},
		Extend:    protocol.MillisOf(extend),
		IssuedAt:  protocol.TimeOf(now),
		ExpiresAt: protocol.TimeOf(now.Add(s.cfg.ProposalTTL)),
	}
	if head.Defined() {
		r.Prev = &protocol.Link{Cid: head}
	}
	raw, err := protocol.Sign(r, s.key)
	if err != nil {
		return fail(err)
	}
	rc := protocol.CIDOf(raw)
	tag, body, err := s.roundTrip(ctx, h, l.Seller, rec.Addrs, appendFrame(nil, tagRenew, raw), tagExtension, tagRejection)
	if err != nil {
		return fail(err)
	}
	if tag == tagRejection {
		rej, err := s.checkRejection(body, l.Seller, rc)
		if err != nil {
			return fail(err)
		}
		rej.Offer = l.Proposal.OfferID()
		return nil, rej
	}
	e, err := protocol.DecodeLeaseExtension(body, s.lim)
	if err == nil {
		err = e.ValidateFields(s.clk.Now(), s.lim)
	}
	if err == nil {
		if c, _ := e.Renewal.CID(); c != rc {
			err = fmt.Errorf("it extends renewal %s, not %s", c, rc)
		}
	}
	if err == nil && (e.Seller != l.Seller || e.Ends != rec.Ends+protocol.Time(r.Extend)) {
		err = fmt.Errorf("seller %s, ends %s: want %s and %s", e.Seller, e.Ends, l.Seller, rec.Ends+protocol.Time(r.Extend))
	}
	if err == nil {
		err = protocol.VerifySignature(e)
	}
	if err != nil {
		return fail(fmt.Errorf("%w: extension: %v", ErrBadAnswer, err))
	}
	err = s.db.Update(func(t *store.Txn) error {
		cur, err := getRecord(t, RoleBuyer, id)
		if err != nil {
			return err
		}
		if headOf(cur) != head {
			return fmt.Errorf("renewed twice at once; refresh the lease")
		}
		cur.Exts = append(cur.Exts, body)
		cur.Ends = e.Ends
		cur.Updated = s.clk.Now().UnixNano()
		rec = cur
		if err := setRec(t, boughtKey(id), cur); err != nil {
			return err
		}
		if cur.State == protocol.StateEnded {
			return nil
		}
		return t.Schedule(store.Job{Kind: JobExpire, ID: "bought/" + id.String(), Due: e.Ends.Std()})
	})
	if err != nil {
		return fail(err)
	}
	s.changed(RoleBuyer, id)
	return rec.info(RoleBuyer, id, s.lim)
}

// End ends a lease now, in any state. For a lease bought (or a proposal
// still unanswered, named by its CID) the seller is told, at once and
// then by a job until it listens; Info.Detail says when it was not
// reached yet. For a lease sold, the seller ends it (ended_by_seller).
// Ending a lease that ended is no error.
func (s *Service) End(ctx context.Context, id cid.Cid) (*Info, error) {
	ctx, h, done, err := s.call(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease %s: end: %w", id, err)
	}
	defer done()
	fail := func(err error) (*Info, error) { return nil, fmt.Errorf("lease %s: end: %w", id, err) }
	s.inflightMu.Lock()
	fl := s.inflight[id]
	s.inflightMu.Unlock()
	if fl != nil {
		// Unanswered: stop waiting, give it up, tell the seller now.
		fl.cancel()
		granted, err := s.giveUp(id, fl.pd, s.cfg.ResendEnd)
		if err != nil {
			return fail(err)
		}
		if granted.Defined() {
			return s.End(ctx, granted)
		}
		in, err := fl.pd.info(id, s.lim)
		if err != nil {
			return fail(err)
		}
		in.State, in.Cause = protocol.StateEnded, protocol.CauseEndedByBuyer
		var pd pending
		if err := s.db.View(func(t *store.Txn) error { return getRec(t, pendingKey(id), &pd) }); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return in, nil // delivered already by the job
			}
			return fail(err)
		}
		if err := s.deliverEnd(ctx, h, "pending/"+id.String(), pd.Seller, pd.Addrs, pd.End); err != nil {
			in.Detail = "the seller was not reached yet; this node keeps telling it"
		}
		return in, nil
	}
	var kind string
	var granted cid.Cid
	if err := s.db.View(func(t *store.Txn) error {
		for _, k := range []struct {
			name string
			key  []byte
		}{{"bought", boughtKey(id)}, {"sold", soldKey(id)}, {"pending", pendingKey(id)}, {"granted", bpropKey(id)}} {
			if v, err := t.Get(k.key); err == nil {
				kind = k.name
				if kind == "granted" {
					granted, err = cid.Cast(v)
					return err
				}
				return nil
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return fmt.Errorf("%w: 'lease ls' lists the leases", ErrNotFound)
	}); err != nil {
		return fail(err)
	}
	switch kind {
	case "sold":
		return s.EndLease(ctx, id, "ended by the seller")
	case "granted":
		return s.End(ctx, granted)
	case "pending":
		// Given up before; its end is on its way.
		return s.Get(id)
	}
	now := s.clk.Now()
	e := &protocol.LeaseEnd{Version: protocol.LeaseEndVersion, By: s.self, Subject: protocol.Link{Cid: id}, At: protocol.TimeOf(now)}
	raw, err := protocol.Sign(e, s.key)
	if err != nil {
		return fail(err)
	}
	var rec *record
	send := false
	err = s.db.Update(func(t *store.Txn) error {
		var err error
		rec, err = getRecord(t, RoleBuyer, id)
		if err != nil {
			return err
		}
		send = false
		if rec.State == protocol.StateEnded {
			return nil
		}
		send = true
		rec.State, rec.Cause, rec.End = protocol.StateEnded, protocol.CauseEndedByBuyer, raw
		rec.Ended = e.At
		rec.Updated = now.UnixNano()
		if err := setRec(t, boughtKey(id), rec); err != nil {
			return err
		}
		if err := t.Cancel(JobExpire, "bought/"+id.String()); err != nil {
			return err
		}
		return t.Schedule(store.Job{Kind: JobSendEnd, ID: "bought/" + id.String(), Due: now.Add(s.cfg.ResendEnd)})
	})
	if err != nil {
		return fail(err)
	}
	if send {
		s.changed(RoleBuyer, id)
	}
	in, err := rec.info(RoleBuyer, id, s.lim)
	if err != nil {
		return fail(err)
	}
	if send {
		if err := s.deliverEnd(ctx, h, "bought/"+id.String(), in.Seller, rec.Addrs, raw); err != nil {
			in.Detail = "the seller was not reached yet; this node keeps telling it"
		}
	}
	return in, nil
}

// deliverEnd sends a buyer's end to the seller; once the seller has it,
// the job that would send it again is cancelled (and a pending proposal
// forgotten).
func (s *Service) deliverEnd(ctx context.Context, h host.Host, job string, seller peer.ID, addrs []string, raw []byte) error {
	if err := s.sendEnd(ctx, h, seller, addrs, raw); err != nil {
		s.log.Info("end not delivered yet", "job", job, "seller", seller, "err", err)
		return err
	}
	err := s.db.UpdateSoft(func(t *store.Txn) error {
		if err := t.Cancel(JobSendEnd, job); err != nil {
			return err
		}
		if pc, ok := strings.CutPrefix(job, "pending/"); ok {
			if c, err := cid.Decode(pc); err == nil {
				return t.Delete(pendingKey(c))
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("end delivered, bookkeeping failed", "job", job, "err", err)
	}
	return nil
}

// sendEnd sends a signed end; any answer but "busy" means the seller has it.
func (s *Service) sendEnd(ctx context.Context, h host.Host, seller peer.ID, addrs []string, raw []byte) error {
	tag, body, err := s.roundTrip(ctx, h, seller, addrs, appendFrame(nil, tagEnd, raw), tagLeaseStat, tagRejection)
	if err != nil {
		return err
	}
	if tag == tagRejection {
		rej, err := s.checkRejection(body, seller, protocol.CIDOf(raw))
		if err != nil {
			return err
		}
		if rej.Reason == protocol.ReasonBusy {
			return rej
		}
		s.log.Warn("seller refused the end", "seller", seller, "reason", rej.Reason, "detail", rej.Detail)
	}
	return nil
}

// runSendEnd delivers a buyer's end the seller did not get yet. It gives
// up once the lease would have ended anyway.
func (s *Service) runSendEnd(ctx context.Context, j store.Job) error {
	h, err := s.hostOrErr()
	if err != nil {
		return err // retried once the host is up
	}
	role, idStr, _ := strings.Cut(j.ID, "/")
	id, err := cid.Decode(idStr)
	if err != nil {
		s.log.Error("send-end job with a bad ID", "id", j.ID)
		return nil
	}
	now := s.clk.Now()
	switch role {
	case "bought":
		var rec *record
		if err := s.db.View(func(t *store.Txn) error {
			var err error
			rec, err = getRecord(t, RoleBuyer, id)
			return err
		}); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		l, err := rec.decode(s.lim)
		if err != nil || rec.End == nil || !now.Before(rec.Ends.Std()) {
			return nil
		}
		return s.sendEnd(ctx, h, l.Seller, rec.Addrs, rec.End)
	case "pending":
		var pd pending
		if err := s.db.View(func(t *store.Txn) error { return getRec(t, pendingKey(id), &pd) }); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		p, err := protocol.DecodeLeaseProposal(pd.Proposal, s.lim)
		if err != nil || pd.End == nil || !now.Before(p.EndsAt().Std()) {
			return s.db.UpdateSoft(func(t *store.Txn) error { return t.Delete(pendingKey(id)) })
		}
		if err := s.sendEnd(ctx, h, pd.Seller, pd.Addrs, pd.End); err != nil {
			return err
		}
		return s.db.UpdateSoft(func(t *store.Txn) error { return t.Delete(pendingKey(id)) })
	}
	s.log.Error("send-end job with a bad ID", "id", j.ID)
	return nil
}

// expireBought marks the buyer's copy of a lease ended at its end.
func (s *Service) expireBought(id cid.Cid) error {
	now := s.clk.Now()
	err := s.db.Update(func(t *store.Txn) error {
		rec, err := getRecord(t, RoleBuyer, id)
		if err != nil {
			return err
		}
		if rec.State == protocol.StateEnded || now.Before(rec.Ends.Std()) {
			return nil
		}
		rec.State, rec.Cause = protocol.StateEnded, protocol.CauseExpired
		rec.Ended = rec.Ends
		rec.Updated = now.UnixNano()
		return setRec(t, boughtKey(id), rec)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err == nil {
		s.changed(RoleBuyer, id)
	}
	return err
}

// Refresh asks the seller where a lease bought stands (state, endpoint)
// and stores the answer. A lease that ended here stays ended.
func (s *Service) Refresh(ctx context.Context, id cid.Cid) (*Info, error) {
	ctx, h, done, err := s.call(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease %s: refresh: %w", id, err)
	}
	defer done()
	fail := func(err error) (*Info, error) { return nil, fmt.Errorf("lease %s: refresh: %w", id, err) }
	var rec *record
	if err := s.db.View(func(t *store.Txn) error {
		var err error
		rec, err = getRecord(t, RoleBuyer, id)
		return err
	}); err != nil {
		if errors.Is(err, ErrNotFound) {
			return s.Get(id) // a lease sold or a pending proposal: nothing to ask
		}
		return fail(err)
	}
	l, err := rec.decode(s.lim)
	if err != nil {
		return fail(err)
	}
	tag, body, err := s.roundTrip(ctx, h, l.Seller, rec.Addrs, appendFrame(nil, tagStatus, id.Bytes()), tagLeaseStat, tagRejection)
	if err != nil {
		return fail(err)
	}
	if tag == tagRejection {
		rej, err := s.checkRejection(body, l.Seller, id)
		if err != nil {
			return fail(err)
		}
		rej.Offer = l.Proposal.OfferID()
		return nil, fmt.Errorf("lease %s: refresh: %w", id, rej)
	}
	st, err := protocol.DecodeLeaseStatus(body, s.lim)
	if err == nil {
		err = st.Validate(s.clk.Now(), s.lim)
	}
	if err == nil && st.Lease.Cid != id {
		err = fmt.Errorf("status of %s", st.Lease.Cid)
	}
	if err != nil {
		return fail(fmt.Errorf("%w: status: %v", ErrBadAnswer, err))
	}
	now := s.clk.Now()
	err = s.db.Update(func(t *store.Txn) error {
		cur, err := getRecord(t, RoleBuyer, id)
		if err != nil {
			return err
		}
		rec = cur
		cur.Endpoint, cur.Detail = st.Endpoint, st.Detail
		switch {
		case cur.State == protocol.StateEnded:
		case st.State == protocol.StateEnded:
			cur.State, cur.Cause = st.State, st.Cause
			cur.Ended = min(protocol.TimeOf(now), cur.Ends)
			if err := t.Cancel(JobExpire, "bought/"+id.String()); err != nil {
				return err
			}
		case st.State == protocol.StateRunning || cur.State == protocol.StateProvisioning:
			cur.State = st.State
		}
		cur.Updated = now.UnixNano()
		return setRec(t, boughtKey(id), cur)
	})
	if err != nil {
		return fail(err)
	}
	s.changed(RoleBuyer, id)
	return rec.info(RoleBuyer, id, s.lim)
}

// Get returns one lease this node holds, bought or sold, or a pending
// proposal by its CID.
func (s *Service) Get(id cid.Cid) (*Info, error) {
	var in *Info
	err := s.db.View(func(t *store.Txn) error {
		for _, role := range []Role{RoleBuyer, RoleSeller} {
			rec, err := getRecord(t, role, id)
			if err == nil {
				in, err = rec.info(role, id, s.lim)
				return err
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		var pd pending
		if err := getRec(t, pendingKey(id), &pd); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		var err error
		in, err = pd.info(id, s.lim)
		return err
	})
	if err != nil || in != nil {
		return in, err
	}
	s.inflightMu.Lock()
	fl := s.inflight[id]
	s.inflightMu.Unlock()
	if fl != nil {
		return fl.pd.info(id, s.lim)
	}
	return nil, fmt.Errorf("lease %s: %w: 'lease ls' lists the leases", id, ErrNotFound)
}

// List returns the leases this node holds in role (both when role is
// empty), with pending proposals for the buyer, newest start first.
func (s *Service) List(role Role) ([]*Info, error) {
	var out []*Info
	err := s.db.View(func(t *store.Txn) error {
		for _, r := range []Role{RoleBuyer, RoleSeller} {
			if role != "" && role != r {
				continue
			}
			prefix := boughtPrefix
			if r == RoleSeller {
				prefix = soldPrefix
			}
			err := t.Iterate(prefix, func(k, v []byte) error {
				id, err := cidFromKey(k)
				if err != nil {
					return nil
				}
				var rec record
				if err := decodeStored(v, &rec); err != nil {
					return err
				}
				in, err := rec.info(r, id, s.lim)
				if err != nil {
					return err
				}
				out = append(out, in)
				return nil
			})
			if err != nil {
				return err
			}
		}
		if role == RoleSeller {
			return nil
		}
		return t.Iterate(pendingPrefix, func(k, v []byte) error {
			pc, err := cidFromKey(k)
			if err != nil {
				return nil
			}
			var pd pending
			if err := decodeStored(v, &pd); err != nil {
				return err
			}
			in, err := pd.info(pc, s.lim)
			if err != nil {
				return err
			}
			out = append(out, in)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if role != RoleSeller {
		listed := make(map[cid.Cid]bool, len(out))
		for _, in := range out {
			listed[in.Proposal] = true
		}
		s.inflightMu.Lock()
		for pc, fl := range s.inflight {
			if listed[pc] {
				continue // given up meanwhile, or just answered
			}
			if in, err := fl.pd.info(pc, s.lim); err == nil {
				out = append(out, in)
			}
		}
		s.inflightMu.Unlock()
	}
	slices.SortFunc(out, func(a, b *Info) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return strings.Compare(a.Proposal.KeyString(), b.Proposal.KeyString())
	})
	return out, nil
}
