package market

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/protocol"
)

// Errors of the book, besides protocol's ErrStale, ErrDuplicate and
// ErrExpired. Check them with errors.Is.
var (
	// ErrBookFull: the book holds Config.MaxOffers offers and withdrawals
	// and refuses new ones until some expire. Copies of offers it holds are
	// still taken.
	ErrBookFull = errors.New("order book full")
	// ErrClosed: the book was closed.
	ErrClosed = errors.New("order book closed")
)

// Config tunes a Book. Zero fields take their defaults from DefaultConfig.
type Config struct {
	// MaxOffers caps the offers and remembered withdrawals the book holds.
	// Add refuses offers of new (seller, key)s with ErrBookFull beyond it.
	MaxOffers int
	// PersistInterval is how often pending changes are written to the
	// Persister.
	PersistInterval time.Duration
	// PersistBatch is how many pending changes make the book write them
	// before the interval is up, and the largest batch in one write.
	PersistBatch int
	// EventBuffer is the channel capacity of each subscriber. A subscriber
	// that falls this far behind misses events (counted in Stats).
	EventBuffer int
	// LoadWorkers is how many goroutines decode and verify persisted offers
	// at Start; 0 means GOMAXPROCS.
	LoadWorkers int
}

// DefaultConfig returns the configuration of a public-market node.
func DefaultConfig() Config {
	return Config{
		MaxOffers:       1_000_000,
		PersistInterval: 500 * time.Millisecond,
		PersistBatch:    4096,
		EventBuffer:     1024,
	}
}

// Validate names the first bad field of c.
func (c Config) Validate() error {
	switch {
	case c.MaxOffers < 0:
		return fmt.Errorf("market config: MaxOffers %d: want a positive cap such as 1000000", c.MaxOffers)
	case c.PersistInterval < 0:
		return fmt.Errorf("market config: PersistInterval %v: want a positive duration such as 500ms", c.PersistInterval)
	case c.PersistBatch < 0:
		return fmt.Errorf("market config: PersistBatch %d: want a positive count such as 4096", c.PersistBatch)
	case c.EventBuffer < 0:
		return fmt.Errorf("market config: EventBuffer %d: want a positive count such as 1024", c.EventBuffer)
	case c.LoadWorkers < 0:
		return fmt.Errorf("market config: LoadWorkers %d: want 0 (one per CPU) or more", c.LoadWorkers)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxOffers == 0 {
		c.MaxOffers = d.MaxOffers
	}
	if c.PersistInterval == 0 {
		c.PersistInterval = d.PersistInterval
	}
	if c.PersistBatch == 0 {
		c.PersistBatch = d.PersistBatch
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = d.EventBuffer
	}
	if c.LoadWorkers == 0 {
		c.LoadWorkers = runtime.GOMAXPROCS(0)
	}
	return c
}

// Book is the order book. Its methods are safe for concurrent use.
type Book struct {
	cfg Config
	p   Persister
	clk clock.Clock
	lim protocol.Limits
	log *slog.Logger

	// mu guards ix and the fields from pending to stats.
	mu sync.RWMutex
	ix indexes
	// copies names the offer of every unexpired copy this book held, the
	// current ones and those they replaced, so that a buyer may name the
	// copy it saw (a proposal may name any unexpired version).
	copies map[cid.Cid]copyRef
	// copiesSweepAt: noteCopy sweeps expired copies once copies is larger.
	copiesSweepAt int
	pending       map[protocol.OfferID]pendingOp // changes not yet persisted
	spare         map[protocol.OfferID]pendingOp // the next pending map, empty
	subs          map[*subscriber]struct{}
	timerAt       int64 // when the expiry timer fires, unix nanoseconds
	started       bool
	closed        bool
	cancel        context.CancelFunc
	stats         Stats

	wake     chan struct{} // an earlier expiry arrived
	flushNow chan struct{} // PersistBatch changes are pending
	flushMu  sync.Mutex    // serialises writes to the persister
	wg       sync.WaitGroup
	closeMu  sync.Mutex // serialises Close
	closeErr error
	closeRan bool
}

// NewBook returns an empty book. p may be nil: the book then keeps nothing
// across restarts. A nil clk means the real clock and a nil log discards.
// The book works (Add, Query) before Start, which loads persisted offers and
// starts expiry and persistence.
func NewBook(cfg Config, p Persister, clk clock.Clock, lim protocol.Limits, log *slog.Logger) *Book {
	if clk == nil {
		clk = clock.New()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Book{
		cfg:      cfg.withDefaults(),
		p:        p,
		clk:      clk,
		lim:      lim,
		log:      log,
		ix:       newIndexes(),
		copies:   make(map[cid.Cid]copyRef),
		pending:  make(map[protocol.OfferID]pendingOp),
		subs:     make(map[*subscriber]struct{}),
		timerAt:  maxTime,
		wake:     make(chan struct{}, 1),
		flushNow: make(chan struct{}, 1),
	}
}

const maxTime = int64(^uint64(0) >> 1)

// Start loads the persisted offers, each decoded and validated at the
// current time (expired ones are dropped and deleted), then starts the
// expiry timer and the persistence writer. A persister that fails to load
// is logged and the book starts with what it read: offers are soft state.
// Start fails for a bad Config, a cancelled ctx, or a second call.
func (b *Book) Start(ctx context.Context) error {
	if err := b.cfg.Validate(); err != nil {
		return fmt.Errorf("market: start: %w", err)
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return fmt.Errorf("market: start: %w", ErrClosed)
	case b.started:
		b.mu.Unlock()
		return errors.New("market: start: already started")
	}
	b.started = true
	b.mu.Unlock()

	if err := b.load(ctx); err != nil {
		return err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("market: start: %w", ErrClosed)
	}
	run, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	// The ticker starts now, not when its goroutine first runs, so that a
	// clock moved right after Start moves it too.
	tick := b.clk.Ticker(b.cfg.PersistInterval)
	b.wg.Add(2)
	go b.expiryLoop(run)
	go b.persistLoop(run, tick)
	return nil
}

// Close stops the book's goroutines, waits for them and writes the pending
// changes. It is idempotent and returns the error of that last write. After
// Close, Add fails with ErrClosed; queries still answer.
func (b *Book) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closeRan {
		return b.closeErr
	}
	b.closeRan = true

	b.mu.Lock()
	b.closed = true
	cancel := b.cancel
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	b.wg.Wait()
	b.closeErr = b.flush()

	b.mu.Lock()
	for s := range b.subs {
		s.close()
	}
	clear(b.subs)
	b.mu.Unlock()
	return b.closeErr
}

// Check reports whether Add would take o, without changing anything: nil,
// or an error wrapping protocol.ErrDuplicate (the book holds this very
// copy), protocol.ErrStale (it holds a copy o is not Newer than, such as a
// withdrawal), protocol.ErrExpired (o has expired on the book's clock) or
// ErrBookFull. Pubsub validators ignore the message on any of them.
func (b *Book) Check(o *protocol.Offer, c cid.Cid) error {
	now := b.clk.Now()
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, err := b.check(o, c, now.UnixNano())
	return err
}

// check finds the item held for o's id and says whether o may replace it.
// prev is the held item, expired or not, that o replaces. b.mu is held.
func (b *Book) check(o *protocol.Offer, c cid.Cid, now int64) (prev *item, err error) {
	prev = b.ix.get(o.ID())
	if prev != nil && prev.expires() > now {
		if prev.cid == c {
			return nil, fmt.Errorf("offer %s: %w: copy %s already held", o.ID(), protocol.ErrDuplicate, c)
		}
		if !o.Newer(&prev.offer) {
			return nil, fmt.Errorf("offer %s: %w: issued %s, the book holds a copy issued %s (withdrawn: %t)",
				o.ID(), protocol.ErrStale, o.IssuedAt, prev.offer.IssuedAt, prev.offer.Withdrawn)
		}
	}
	if o.ExpiresAt.Std().UnixNano() <= now {
		return nil, fmt.Errorf("offer %s: %w: at %s, now %s", o.ID(), protocol.ErrExpired, o.ExpiresAt, protocol.TimeOf(time.Unix(0, now)))
	}
	if prev == nil && b.ix.held >= b.cfg.MaxOffers {
		return nil, fmt.Errorf("offer %s: %w: it holds %d offers and withdrawals; raise MaxOffers or wait for some to expire",
			o.ID(), ErrBookFull, b.ix.held)
	}
	return prev, nil
}

// Add inserts o, which the caller has validated, with its CID and encoded
// bytes (kept only until persisted; nil makes the book encode o again).
// It replaces an older copy of the same (seller, key). A withdrawn copy
// removes the offer from every index and is remembered until it expires,
// so that an older live copy replayed later is stale. Add returns the
// errors of Check, and ErrClosed after Close.
//
// The book keeps o's slices (not o itself): the caller must not modify o
// after Add. Add never writes to the persister itself; a goroutine writes
// batches of changes in the background.
func (b *Book) Add(o *protocol.Offer, c cid.Cid, raw []byte) error {
	now := b.clk.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("offer %s: add: %w", o.ID(), ErrClosed)
	}
	return b.add(o, c, raw, now, b.p != nil)
}

// add is Add with b.mu held; persist says whether the change is written.
func (b *Book) add(o *protocol.Offer, c cid.Cid, raw []byte, now time.Time, persist bool) error {
	nowNs := now.UnixNano()
	if b.ix.held >= b.cfg.MaxOffers {
		b.evictDue(nowNs)
	}
	prev, err := b.check(o, c, nowNs)
	if err != nil {
		return err
	}
	it := b.ix.newItem(o, c, now)
	b.noteCopy(it, nowNs)
	prevLive := prev != nil && prev.live() && prev.expires() > nowNs
	if prev != nil {
		b.ix.supersede(prev, it)
		if prev.live() && !prevLive {
			b.stats.Expired++
			b.emit(EventExpired, prev)
		}
	} else {
		b.ix.insert(it)
	}
	if it.expires() < b.timerAt {
		b.timerAt = it.expires()
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	switch {
	case !it.live() && prevLive:
		b.emit(EventWithdrawn, it)
	case it.live() && prevLive:
		b.emit(EventUpdated, it)
	case it.live():
		b.emit(EventAdded, it)
	}
	if persist {
		b.pending[o.ID()] = pendingOp{raw: raw, it: it}
		if len(b.pending) >= b.cfg.PersistBatch {
			select {
			case b.flushNow <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// Get returns the live offer with id.
func (b *Book) Get(id protocol.OfferID) (Entry, bool) {
	now := b.clk.Now().UnixNano()
	b.mu.RLock()
	defer b.mu.RUnlock()
	it := b.ix.get(id)
	if it == nil || !it.live() || it.expires() <= now {
		return Entry{}, false
	}
	return it.entry(), true
}

// Len returns the number of live offers: neither withdrawn nor expired.
func (b *Book) Len() int {
	now := b.clk.Now().UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.evictDue(now)
	return b.ix.live
}

// Stats are counters of the book, for metrics.
type Stats struct {
	// Live is the number of live offers, Withdrawals the number of
	// remembered withdrawals; both may include some that expired since
	// the last eviction.
	Live, Withdrawals int
	// Pending is the number of changes not yet persisted.
	Pending int
	// Expired counts offers evicted on expiry.
	Expired uint64
	// DroppedEvents counts events lost to subscribers that fell behind.
	DroppedEvents uint64
	// PersistErrors counts failed writes to the persister.
	PersistErrors uint64
}

// Stats returns the book's counters.
func (b *Book) Stats() Stats {
	b.mu.RLock()
	defer b.mu.RUnlock()
	s := b.stats
	s.Live = b.ix.live
	s.Withdrawals = b.ix.held - b.ix.live
	s.Pending = len(b.pending)
	return s
}

// evictDue removes every item that expired at or before now. b.mu is held.
func (b *Book) evictDue(now int64) {
	for {
		it := b.ix.expiry.peek()
		if it == nil || it.expires() > now {
			return
		}
		b.ix.remove(it)
		delete(b.copies, it.cid)
		if it.live() {
			b.stats.Expired++
			b.emit(EventExpired, it)
		}
		if b.p != nil {
			b.pending[it.offer.ID()] = pendingOp{}
		}
	}
}

// expiryLoop evicts offers as they expire: one timer on the earliest
// expiry, reset when it fires or an earlier expiry arrives.
func (b *Book) expiryLoop(ctx context.Context) {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		b.evictDue(b.clk.Now().UnixNano())
		b.timerAt = maxTime
		if next := b.ix.expiry.peek(); next != nil {
			b.timerAt = next.expires()
		}
		at := b.timerAt
		b.mu.Unlock()

		// The timer is made outside the lock: a mock clock may run other
		// timers in Timer. An Add in between with an earlier expiry sees
		// timerAt and wakes the loop.
		var c <-chan time.Time
		var t *clock.Timer
		if at != maxTime {
			t = b.clk.Timer(time.Unix(0, at).Sub(b.clk.Now()))
			c = t.C
		}
		select {
		case <-c:
		case <-b.wake:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// copyRef is one copy of an offer: which offer, and when the copy expires.
type copyRef struct {
	id      protocol.OfferID
	expires int64 // unix nanoseconds
}

// noteCopy records the copy it; now and then it forgets the copies that
// expired. Call it with b.mu held.
func (b *Book) noteCopy(it *item, now int64) {
	b.copies[it.cid] = copyRef{id: it.offer.ID(), expires: it.expires()}
	if len(b.copies) > max(b.copiesSweepAt, 2*b.ix.held+1024) {
		for c, r := range b.copies {
			if r.expires <= now {
				delete(b.copies, c)
			}
		}
		// The next sweep waits until the map has doubled, so that copies
		// not expired yet are not scanned again on every add: the sweeps
		// cost O(1) per add.
		b.copiesSweepAt = 2 * len(b.copies)
	}
}

// byCopy returns the live offer one of whose unexpired copies is c. Call
// it with b.mu held.
func (b *Book) byCopy(c cid.Cid, now int64) *item {
	r, ok := b.copies[c]
	if !ok || r.expires <= now {
		return nil
	}
	it := b.ix.get(r.id)
	if it == nil || !it.live() || it.expires() <= now {
		return nil
	}
	return it
}
