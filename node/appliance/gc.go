package appliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// gcDeleteBatch is how many blocks one delete batch removes.
const gcDeleteBatch = 1024

// GC removes every block that no pinned appliance reaches, and the records
// of appliances no longer pinned, and returns the bytes of blocks freed. It
// waits for imports, fetches and pins under way, and they wait for it.
func (s *Service) GC(ctx context.Context) (uint64, error) {
	ctx, end, err := s.begin(ctx, "gc")
	if err != nil {
		return 0, err
	}
	defer end()
	if err := s.gcSem.Acquire(ctx, gcWeight); err != nil {
		return 0, fmt.Errorf("gc: %w", err)
	}
	defer s.gcSem.Release(gcWeight)

	// Mark: every block under a pinned root.
	pins, err := s.allPins(ctx)
	if err != nil {
		return 0, fmt.Errorf("gc: %w", err)
	}
	keep := map[string]struct{}{}
	for root := range pins {
		c, err := cid.Decode(root)
		if err != nil {
			return 0, fmt.Errorf("gc: pin of %q: %v: %w", root, err, ErrMalformed)
		}
		w := s.newLocalWalk(0, func(c cid.Cid, _ int) { keep[string(c.Hash())] = struct{}{} })
		w.skipMissing = true
		if _, err := w.size(ctx, c); err != nil {
			// A pinned DAG this node cannot read whole: keep everything
			// rather than guess what it reaches.
			return 0, fmt.Errorf("gc: walk pinned %s: %w", c, err)
		}
		if w.missed > 0 {
			s.log.Warn("a pinned appliance misses blocks; fetch it again", "cid", c, "missing", w.missed)
		}
	}

	// Sweep: blocks outside the mark.
	res, err := s.ds.Query(ctx, dsq.Query{Prefix: blockstore.BlockPrefix.String(), KeysOnly: true, ReturnsSizes: true})
	if err != nil {
		return 0, fmt.Errorf("gc: list blocks: %w", err)
	}
	type victim struct {
		key  datastore.Key
		size int
	}
	var victims []victim
	for e, ok := res.NextSync(); ok; e, ok = res.NextSync() {
		if e.Error != nil {
			res.Close()
			return 0, fmt.Errorf("gc: list blocks: %w", e.Error)
		}
		k := datastore.RawKey(e.Key)
		h, err := dshelp.BinaryFromDsKey(datastore.NewKey(k.BaseNamespace()))
		if err != nil {
			continue // not a block key: leave it
		}
		if _, ok := keep[string(h)]; !ok {
			victims = append(victims, victim{k, e.Size})
		}
	}
	res.Close()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("gc: %w", err)
	}

	var freed uint64
	for i := 0; i < len(victims); i += gcDeleteBatch {
		chunk := victims[i:min(i+gcDeleteBatch, len(victims))]
		b, err := s.ds.Batch(ctx)
		if err != nil {
			return freed, fmt.Errorf("gc: %w", err)
		}
		var sum uint64
		for _, v := range chunk {
			size := v.size
			if size <= 0 { // unknown (-1), or an adapter that ignores ReturnsSizes
				if size, err = s.ds.GetSize(ctx, v.key); err != nil {
					if errors.Is(err, datastore.ErrNotFound) {
						continue
					}
					return freed, fmt.Errorf("gc: %w", err)
				}
			}
			sum += uint64(size)
			if err := b.Delete(ctx, v.key); err != nil {
				return freed, fmt.Errorf("gc: %w", err)
			}
		}
		if err := b.Commit(ctx); err != nil {
			return freed, fmt.Errorf("gc: delete blocks: %w", err)
		}
		freed += sum
	}

	// Records of appliances no longer pinned.
	recs, err := s.ds.Query(ctx, dsq.Query{Prefix: infoPrefix.String(), KeysOnly: true})
	if err != nil {
		return freed, fmt.Errorf("gc: list records: %w", err)
	}
	entries, err := recs.Rest()
	if err != nil {
		return freed, fmt.Errorf("gc: list records: %w", err)
	}
	for _, e := range entries {
		k := datastore.RawKey(e.Key)
		if _, ok := pins[k.BaseNamespace()]; !ok {
			if err := s.ds.Delete(ctx, k); err != nil {
				return freed, fmt.Errorf("gc: delete record: %w", err)
			}
		}
	}
	s.log.Info("appliance gc", "freed_bytes", freed, "blocks", len(victims), "pinned", len(pins))
	return freed, nil
}
