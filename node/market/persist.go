package market

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/filecoin-project/go-clock"

	"github.com/spotmesh/spotmesh/protocol"
)

// Persister keeps the book across restarts. Offers are soft state: writes
// need not be synced, and a lost write costs only a colder start. The node
// wires an adapter over its store. The book calls one method at a time.
type Persister interface {
	// PutOffers stores each offer's encoded copy, replacing the one stored
	// for the same (seller, key).
	PutOffers(batch []PersistedOffer) error
	// DeleteOffers removes the offers with these ids; absent ones are no
	// error.
	DeleteOffers(ids []protocol.OfferID) error
	// LoadOffers calls fn with every stored copy, stopping at fn's first
	// error, which it returns. raw is valid only during the call.
	LoadOffers(fn func(raw []byte) error) error
}

// PersistedOffer is one offer copy to store: its identity and encoding.
type PersistedOffer struct {
	ID  protocol.OfferID
	Raw []byte
}

// pendingOp is a change waiting to be persisted, the latest per offer id:
// store it (raw, or it's offer encoded anew when raw is nil), or delete the
// id when it is nil.
type pendingOp struct {
	raw []byte
	it  *item
}

// persistLoop writes pending changes every PersistInterval, or sooner when
// PersistBatch of them wait.
func (b *Book) persistLoop(ctx context.Context, tick *clock.Ticker) {
	defer b.wg.Done()
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-b.flushNow:
		case <-ctx.Done():
			return
		}
		_ = b.flush() // logged and counted by flush
	}
}

// flush writes the pending changes, coalesced to the latest per offer, in
// batches of at most PersistBatch. A failed write is logged and counted, and
// its changes dropped: gossip brings the offers again.
func (b *Book) flush() error {
	if b.p == nil {
		return nil
	}
	b.flushMu.Lock()
	defer b.flushMu.Unlock()

	// Swap in the spare map, which keeps its capacity from flush to flush.
	b.mu.Lock()
	batch := b.pending
	if len(batch) == 0 {
		b.mu.Unlock()
		return nil
	}
	b.pending, b.spare = b.spare, nil
	if b.pending == nil {
		b.pending = make(map[protocol.OfferID]pendingOp)
	}
	b.mu.Unlock()
	defer func() {
		clear(batch)
		b.mu.Lock()
		b.spare = batch
		b.mu.Unlock()
	}()

	var puts []PersistedOffer
	var dels []protocol.OfferID
	var errs []error
	for id, op := range batch {
		if op.it == nil {
			dels = append(dels, id)
			continue
		}
		raw := op.raw
		if raw == nil {
			var err error
			if raw, err = protocol.Marshal(&op.it.offer); err != nil {
				errs = append(errs, fmt.Errorf("encode offer %s: %w", id, err))
				continue
			}
		}
		puts = append(puts, PersistedOffer{ID: id, Raw: raw})
	}
	n := b.cfg.PersistBatch
	for i := 0; i < len(puts); i += n {
		if err := b.p.PutOffers(puts[i:min(i+n, len(puts))]); err != nil {
			errs = append(errs, fmt.Errorf("put %d offers: %w", min(n, len(puts)-i), err))
		}
	}
	for i := 0; i < len(dels); i += n {
		if err := b.p.DeleteOffers(dels[i:min(i+n, len(dels))]); err != nil {
			errs = append(errs, fmt.Errorf("delete %d offers: %w", min(n, len(dels)-i), err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	err := fmt.Errorf("market: persist: %w", errors.Join(errs...))
	b.mu.Lock()
	b.stats.PersistErrors += uint64(len(errs))
	b.mu.Unlock()
	b.log.Warn("order book: persisting offers failed; they live on in memory and gossip", "err", err)
	return err
}

// load reads the persisted offers into the book, decoding and validating
// them on LoadWorkers goroutines, and deletes those that no longer
// validate, expired ones included.
func (b *Book) load(ctx context.Context) error {
	if b.p == nil {
		return nil
	}
	b.flushMu.Lock() // one persister call at a time, even with a Close
	defer b.flushMu.Unlock()
	now := b.clk.Now()
	in := make(chan []byte, 256)
	var (
		wg                      sync.WaitGroup
		dropMu                  sync.Mutex
		drop                    []protocol.OfferID
		loaded, expired, broken atomic.Int64
	)
	for range b.cfg.LoadWorkers {
		wg.Go(func() {
			for raw := range in {
				o, err := protocol.DecodeOffer(raw, b.lim)
				if err != nil {
					broken.Add(1)
					b.log.Debug("order book: skipping an undecodable persisted offer", "err", err)
					continue
				}
				if err := o.Validate(now, b.lim); err != nil || o.Expired(now) {
					if err == nil || errors.Is(err, protocol.ErrExpired) {
						expired.Add(1)
					} else {
						broken.Add(1)
						b.log.Debug("order book: dropping a persisted offer that no longer validates", "offer", o.ID(), "err", err)
					}
					dropMu.Lock()
					drop = append(drop, o.ID())
					dropMu.Unlock()
					continue
				}
				b.mu.Lock()
				err = b.add(o, protocol.CIDOf(raw), nil, now, false)
				b.mu.Unlock()
				if err == nil {
					loaded.Add(1)
				}
			}
		})
	}
	lerr := b.p.LoadOffers(func(raw []byte) error {
		select {
		case in <- bytes.Clone(raw):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(in)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("market: start: load offers: %w", err)
	}
	if lerr != nil {
		b.log.Warn("order book: loading persisted offers failed; starting with those read", "loaded", loaded.Load(), "err", lerr)
	}
	if len(drop) > 0 {
		if err := b.p.DeleteOffers(drop); err != nil {
			b.log.Warn("order book: deleting expired persisted offers failed", "count", len(drop), "err", err)
		}
	}
	b.log.Info("order book: loaded persisted offers", "loaded", loaded.Load(), "expired", expired.Load(), "broken", broken.Load())
	return nil
}
