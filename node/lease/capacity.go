package lease

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// proposalReq is a verified proposal waiting for the capacity owner.
type proposalReq struct {
	prop  *protocol.LeaseProposal
	raw   []byte
	pc    cid.Cid
	reply chan outcome // buffered 1
}

// outcome is the answer to a proposal: the signed lease, or a refusal.
type outcome struct {
	lease  []byte
	reason protocol.Reason
	detail string
}

// hold is the slots one lease holds on one offer.
type hold struct {
	key   string
	buyer peer.ID
	slots uint32
}

// ownerState is the seller's capacity accounting. Only ownerLoop touches
// it (loadHeld builds it before the loop starts).
type ownerState struct {
	held   map[cid.Cid]hold              // by proposal CID, from the decision until termination
	used   map[string]uint32             // slots held per offer
	leases map[string]map[peer.ID]uint32 // leases held per offer and buyer
	caps   map[string]uint32             // the latest capacity seen per offer
	dirty  map[string]bool               // offers whose free count changed
	// inflight counts commits started and not yet reported.
	inflight int
}

func newOwnerState() *ownerState {
	return &ownerState{
		held:   make(map[cid.Cid]hold),
		used:   make(map[string]uint32),
		leases: make(map[string]map[peer.ID]uint32),
		caps:   make(map[string]uint32),
		dirty:  make(map[string]bool),
	}
}

func (st *ownerState) take(pc cid.Cid, h hold) {
	st.held[pc] = h
	st.used[h.key] += h.slots
	m := st.leases[h.key]
	if m == nil {
		m = make(map[peer.ID]uint32)
		st.leases[h.key] = m
	}
	m[h.buyer]++
	st.dirty[h.key] = true
}

func (st *ownerState) release(pc cid.Cid) {
	h, ok := st.held[pc]
	if !ok {
		return
	}
	delete(st.held, pc)
	st.used[h.key] -= h.slots
	if st.used[h.key] == 0 {
		delete(st.used, h.key)
	}
	if m := st.leases[h.key]; m != nil {
		if m[h.buyer]--; m[h.buyer] == 0 {
			delete(m, h.buyer)
		}
		if len(m) == 0 {
			delete(st.leases, h.key)
		}
	}
	st.dirty[h.key] = true
}

// loadHeld rebuilds the accounting from the slots held in the store.
func (s *Service) loadHeld() (*ownerState, error) {
	st := newOwnerState()
	err := s.db.View(func(t *store.Txn) error {
		return t.Iterate(activePrefix, func(k, v []byte) error {
			var a active
			if err := decodeStored(v, &a); err != nil {
				return fmt.Errorf("stored %s: %w", k, err)
			}
			pc, err := cid.Decode(a.Proposal)
			if err != nil {
				return fmt.Errorf("stored %s: %w", k, err)
			}
			st.take(pc, hold{key: a.Key, buyer: a.Buyer, slots: a.Slots})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for key := range st.dirty {
		if own, err := s.offers.Offer(key); err == nil {
			st.caps[key] = own.Capacity
		}
	}
	return st, nil
}

// commitResult reports a commit's end to the owner.
type commitResult struct {
	// release are the holds that did not become leases.
	release []cid.Cid
}

// ownerLoop is the one goroutine that owns the capacity accounting: it
// decides proposals in batches and applies releases.
func (s *Service) ownerLoop(st *ownerState) {
	defer s.wg.Done()
	batch := make([]*proposalReq, 0, s.cfg.MaxBatch)
	s.publishFree(st)
	for {
		in := s.proposals
		if st.inflight >= s.cfg.MaxCommits {
			in = nil // let proposals gather into the next batch
		}
		select {
		case <-s.ctx.Done():
			return
		case r := <-in:
			batch = append(batch[:0], r)
		fill:
			for len(batch) < s.cfg.MaxBatch {
				select {
				case r := <-s.proposals:
					batch = append(batch, r)
				default:
					break fill
				}
			}
			s.decide(st, batch)
			clear(batch)
		case res := <-s.commitDone:
			st.inflight--
			for _, pc := range res.release {
				st.release(pc)
			}
		case <-s.releases.kick:
			for _, pc := range s.releases.take() {
				st.release(pc)
			}
		}
		s.publishFree(st)
	}
}

// grant is a proposal the owner admitted: with slots taken (hold), or a
// duplicate of one admitted before, answered with that one's lease.
type grant struct {
	req  *proposalReq
	hold bool
}

// decide checks a batch against the offers as they stand and the slots
// free, takes the slots of those admitted and starts their commit.
func (s *Service) decide(st *ownerState, batch []*proposalReq) {
	now := s.clk.Now()
	offers := make(map[string]*OwnOffer)
	var grants []grant
	for _, r := range batch {
		p := r.prop
		if _, dup := st.held[r.pc]; dup {
			grants = append(grants, grant{req: r})
			continue
		}
		own, seen := offers[p.OfferKey]
		if !seen {
			if o, err := s.offers.Offer(p.OfferKey); err == nil {
				own = &o
				st.caps[p.OfferKey] = o.Capacity
			}
			offers[p.OfferKey] = own
		}
		if own == nil {
			r.reply <- outcome{reason: protocol.ReasonOfferExpired, detail: fmt.Sprintf("this seller has no offer %q", p.OfferKey)}
			continue
		}
		if reason, detail := checkTerms(p, own, now); reason != "" {
			r.reply <- outcome{reason: reason, detail: detail}
			continue
		}
		if limit := own.Current.PerBuyerCap; limit > 0 && st.leases[p.OfferKey][p.Buyer] >= limit {
			r.reply <- outcome{reason: protocol.ReasonBuyerRefused,
				detail: fmt.Sprintf("you hold %d leases on offer %q, its cap per buyer", st.leases[p.OfferKey][p.Buyer], p.OfferKey)}
			continue
		}
		used := st.used[p.OfferKey]
		if uint64(used)+uint64(p.Slots) > uint64(own.Capacity) {
			free := uint32(0)
			if own.Capacity > used {
				free = own.Capacity - used
			}
			r.reply <- outcome{reason: protocol.ReasonNoCapacity,
				detail: fmt.Sprintf("offer %q has %d of %d slots free, the proposal asks for %d", p.OfferKey, free, own.Capacity, p.Slots)}
			continue
		}
		st.take(r.pc, hold{key: p.OfferKey, buyer: p.Buyer, slots: p.Slots})
		grants = append(grants, grant{req: r, hold: true})
	}
	if len(grants) > 0 {
		st.inflight++
		s.wg.Add(1)
		go s.commit(grants)
	}
}

// publishFree puts the free counts of the offers that changed on the board.
func (s *Service) publishFree(st *ownerState) {
	for key := range st.dirty {
		capacity, ok := st.caps[key]
		if !ok {
			continue
		}
		free := uint32(0)
		if used := st.used[key]; capacity > used {
			free = capacity - used
		}
		s.board.set(key, free)
	}
	clear(st.dirty)
}

// signedLease is a lease the commit signed and is about to store.
type signedLease struct {
	g      grant
	id     cid.Cid
	l      *protocol.Lease
	raw    []byte
	rec    []byte
	act    []byte
	dup    bool // the proposal was granted (or given up) before
	stored bool // the lease is stored durably
}

// commit signs the leases of a batch, stores them with their expiry jobs
// and held slots in one durable transaction, then answers and provisions.
func (s *Service) commit(grants []grant) {
	defer s.wg.Done()
	now := s.clk.Now()
	var items []*signedLease
	var lookups []*proposalReq
	var release []cid.Cid
	for _, g := range grants {
		if !g.hold {
			lookups = append(lookups, g.req)
			continue
		}
		it, err := s.signLease(g, now)
		if err != nil {
			s.log.Error("sign lease", "err", err)
			g.req.reply <- outcome{reason: protocol.ReasonBusy, detail: "the seller could not sign the lease; try again"}
			release = append(release, g.req.pc)
			continue
		}
		items = append(items, it)
	}
	if err := s.writeLeases(items); err != nil {
		s.log.Error("store leases", "err", err)
	}
	for _, it := range items {
		if !it.stored {
			release = append(release, it.g.req.pc)
		}
	}
	s.commitDone <- commitResult{release: release}
	for _, it := range items {
		switch {
		case it.stored:
			it.g.req.reply <- outcome{lease: it.raw}
		case it.dup:
			lookups = append(lookups, it.g.req)
		default:
			it.g.req.reply <- outcome{reason: protocol.ReasonBusy, detail: "the seller could not store the lease; try again"}
		}
	}
	for _, r := range lookups {
		r.reply <- s.lookup(r)
	}
	for _, it := range items {
		if it.stored {
			s.log.Debug("lease granted", "lease", it.id, "buyer", it.l.Buyer(), "offer", it.l.Proposal.OfferKey)
			s.goProvision(it.id, it.l)
		}
	}
}

func (s *Service) signLease(g grant, now time.Time) (*signedLease, error) {
	p := g.req.prop
	l := &protocol.Lease{
		Version:    protocol.LeaseVersion,
		Seller:     s.self,
		Proposal:   *p,
		AcceptedAt: protocol.TimeOf(now),
	}
	raw, err := protocol.Sign(l, s.key)
	if err != nil {
		return nil, err
	}
	rec, err := encodeStored(&record{Raw: raw, State: protocol.StateProvisioning, Ends: p.EndsAt(), Updated: now.UnixNano()})
	if err != nil {
		return nil, err
	}
	act, err := encodeStored(&active{Proposal: g.req.pc.String(), Key: p.OfferKey, Buyer: p.Buyer, Slots: p.Slots})
	if err != nil {
		return nil, err
	}
	return &signedLease{g: g, id: protocol.CIDOf(raw), l: l, raw: raw, rec: rec, act: act}, nil
}

// writeLeases stores leases in one durable transaction, or in halves when
// they do not fit in one, and marks those stored. A lease whose proposal
// was granted before (or given up by its buyer) is marked dup instead.
func (s *Service) writeLeases(items []*signedLease) error {
	if len(items) == 0 {
		return nil
	}
	err := s.db.Update(func(t *store.Txn) error {
		for _, it := range items {
			it.dup = false
			v, err := t.Get(propKey(it.g.req.pc))
			if err == nil {
				id, tomb, perr := parseProp(v)
				if perr != nil || id.Defined() || tomb == it.g.req.prop.Buyer {
					it.dup = true
					continue
				}
				// A tombstone by another peer than the buyer counts for nothing.
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err := t.Set(propKey(it.g.req.pc), it.id.Bytes()); err != nil {
				return err
			}
			if err := t.Set(soldKey(it.id), it.rec); err != nil {
				return err
			}
			if err := t.Set(activeKey(it.id), it.act); err != nil {
				return err
			}
			due := it.l.EndsAt().Std()
			if err := t.Schedule(store.Job{Kind: JobExpire, ID: "sold/" + it.id.String(), Due: due}); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrTxnTooBig) && len(items) > 1 {
		half := len(items) / 2
		if err := s.writeLeases(items[:half]); err != nil {
			return err
		}
		return s.writeLeases(items[half:])
	}
	if err != nil {
		return err
	}
	for _, it := range items {
		it.stored = !it.dup
		if it.stored {
			s.met.answers.WithLabelValues("granted", "").Inc()
		}
	}
	return nil
}

// lookup answers a proposal granted before with its lease.
func (s *Service) lookup(r *proposalReq) outcome {
	var out outcome
	err := s.db.View(func(t *store.Txn) error {
		v, err := t.Get(propKey(r.pc))
		if errors.Is(err, store.ErrNotFound) {
			out = outcome{reason: protocol.ReasonBusy, detail: "the same proposal is being decided; send it again"}
			return nil
		}
		if err != nil {
			return err
		}
		id, _, err := parseProp(v)
		if err != nil {
			return err
		}
		if !id.Defined() {
			out = outcome{reason: protocol.ReasonInvalid, detail: "you ended this proposal before it was granted"}
			return nil
		}
		rec, err := getRecord(t, RoleSeller, id)
		if err != nil {
			return err
		}
		out = outcome{lease: rec.Raw}
		return nil
	})
	if err != nil {
		return outcome{reason: protocol.ReasonBusy, detail: "the seller could not read the lease; try again"}
	}
	return out
}

// releaseQueue carries slot releases to the owner without blocking the
// job handlers, even before the owner runs.
type releaseQueue struct {
	mu   sync.Mutex
	pcs  []cid.Cid // guarded by mu
	kick chan struct{}
}

func (q *releaseQueue) push(pc cid.Cid) {
	q.mu.Lock()
	q.pcs = append(q.pcs, pc)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *releaseQueue) take() []cid.Cid {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.pcs
	q.pcs = nil
	return out
}

// freeBoard is the latest free count of each offer, as the owner last
// computed it: a copy for readers (Free) and for the publisher, not the
// accounting itself.
type freeBoard struct {
	mu    sync.Mutex
	free  map[string]uint32 // guarded by mu
	dirty map[string]bool   // guarded by mu: changed since published
	kick  chan struct{}
}

func (b *freeBoard) init() {
	b.free = make(map[string]uint32)
	b.dirty = make(map[string]bool)
	b.kick = make(chan struct{}, 1)
}

func (b *freeBoard) set(key string, free uint32) {
	b.mu.Lock()
	if old, ok := b.free[key]; ok && old == free {
		b.mu.Unlock()
		return
	}
	b.free[key] = free
	b.dirty[key] = true
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *freeBoard) take() map[string]uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]uint32, len(b.dirty))
	for k := range b.dirty {
		out[k] = b.free[k]
	}
	clear(b.dirty)
	return out
}

// Free returns an offer's free slots as the seller's accounting has them,
// and whether it has them (an offer nobody leased yet may be unknown). An
// OfferSource states it in every copy it publishes.
func (s *Service) Free(key string) (uint32, bool) {
	s.board.mu.Lock()
	defer s.board.mu.Unlock()
	n, ok := s.board.free[key]
	return n, ok
}

// publishLoop tells the OfferSource of free counts that changed, the
// latest count only, one offer at a time, at most once per
// Config.PublishInterval.
func (s *Service) publishLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.board.kick:
		}
		for key, free := range s.board.take() {
			if err := s.offers.SetFree(s.ctx, key, free); err != nil && s.ctx.Err() == nil {
				s.log.Warn("publish free slots", "offer", key, "free", free, "err", err)
			}
		}
		if s.cfg.PublishInterval > 0 {
			// Real time on purpose: this paces gossip, it is no deadline
			// of the market, and a mock clock would stall it.
			t := time.NewTimer(s.cfg.PublishInterval)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}
