package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// Pin pins the appliance c for reason, such as LeaseReason(id). Every
// block of c must be here (Fetch first): a pin is a promise that GC keeps
// the whole appliance.
func (s *Service) Pin(ctx context.Context, c cid.Cid, reason string) (Info, error) {
	op := fmt.Sprintf("pin %s", c)
	if err := ValidateReason(reason); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	ctx, end, err := s.begin(ctx, op)
	if err != nil {
		return Info{}, err
	}
	defer end()
	if err := s.gcSem.Acquire(ctx, 1); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	defer s.gcSem.Release(1)
	size, err := s.newLocalWalk(0, nil).size(ctx, c)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Info{}, fmt.Errorf("%s: the appliance is not complete on this node; fetch it first: %w", op, err)
		}
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	rec, err := s.putRecordAndPin(ctx, c, record{Size: size, Added: s.now()}, reason)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	s.announce(c)
	pins, err := s.pinsOf(ctx, c)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	return rec.info(c, pins), nil
}

// Unpin removes the pin of c for reason; ErrNotPinned when there is none.
// The appliance stays until GC, and stays through GC while other pins
// hold it.
func (s *Service) Unpin(ctx context.Context, c cid.Cid, reason string) (Info, error) {
	op := fmt.Sprintf("unpin %s", c)
	if err := ValidateReason(reason); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	ok, err := s.ds.Has(ctx, pinKey(c, reason))
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return Info{}, fmt.Errorf("%s: no pin for %q: %w", op, reason, ErrNotPinned)
	}
	if err := s.ds.Delete(ctx, pinKey(c, reason)); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	return s.Get(ctx, c)
}

// Remove removes the user's pins of c ("add" and "get"), as `appliance rm`
// does. Pins of other reasons (a lease) stay: the returned Info lists them,
// and GC keeps the appliance until they go. ErrNotFound when the node has
// no record of c.
func (s *Service) Remove(ctx context.Context, c cid.Cid) (Info, error) {
	op := fmt.Sprintf("remove %s", c)
	if _, ok, err := s.getRecord(ctx, c); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	} else if !ok {
		return Info{}, fmt.Errorf("%s: no such appliance: %w", op, ErrNotFound)
	}
	b, err := s.ds.Batch(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	for _, r := range []string{ReasonAdd, ReasonGet} {
		if err := b.Delete(ctx, pinKey(c, r)); err != nil {
			return Info{}, fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	return s.Get(ctx, c)
}

// Get returns what the node knows of c; ErrNotFound when it has no record
// of it.
func (s *Service) Get(ctx context.Context, c cid.Cid) (Info, error) {
	rec, ok, err := s.getRecord(ctx, c)
	if err != nil {
		return Info{}, err
	}
	if !ok {
		return Info{}, fmt.Errorf("appliance %s: %w", c, ErrNotFound)
	}
	pins, err := s.pinsOf(ctx, c)
	if err != nil {
		return Info{}, err
	}
	return rec.info(c, pins), nil
}

// List returns every appliance the node has a record of, oldest first.
func (s *Service) List(ctx context.Context) ([]Info, error) {
	pins, err := s.allPins(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.ds.Query(ctx, dsq.Query{Prefix: infoPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("list appliances: %w", err)
	}
	defer res.Close()
	var out []Info
	for e, ok := res.NextSync(); ok; e, ok = res.NextSync() {
		if e.Error != nil {
			return nil, fmt.Errorf("list appliances: %w", e.Error)
		}
		k := datastore.RawKey(e.Key)
		c, err := cid.Decode(k.BaseNamespace())
		if err != nil {
			s.log.Warn("skipping a record with a bad key", "key", e.Key)
			continue
		}
		var rec record
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			s.log.Warn("skipping a malformed record", "key", e.Key, "err", err)
			continue
		}
		out = append(out, rec.info(c, pins[rootKey(c)]))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Added.Equal(out[j].Added) {
			return out[i].Added.Before(out[j].Added)
		}
		return out[i].CID.String() < out[j].CID.String()
	})
	return out, nil
}
