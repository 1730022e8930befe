package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/dgraph-io/badger/v4"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// Datastore returns a go-datastore over the keys under v1/ds/<prefix>/, for
// boxo's blockstore and anything else built on go-datastore. prefix names
// the datastore: not empty, no "/" (it panics otherwise: a programming
// error). Datastores with different prefixes never see each other's keys.
//
// Put, Delete and Batch commits are not synced (like UpdateSoft): call Sync
// to make them durable, or rely on the next durable Update, which syncs
// every commit before it. Close is a no-op; the DB owns the database.
// Close or drain every query's results: an open query holds the database
// open, and DB.Close waits for it.
func (db *DB) Datastore(prefix string) ds.Batching {
	if prefix == "" || strings.Contains(prefix, "/") {
		panic(fmt.Sprintf("store: Datastore(%q): want a non-empty name without '/'", prefix))
	}
	return &datastore{db: db, base: string(Key("ds", prefix))}
}

// datastore maps the go-datastore key /a/b to the badger key
// v1/ds/<prefix>/a/b: ds keys always start with "/".
type datastore struct {
	db   *DB
	base string // "v1/ds/<prefix>"
}

var (
	_ ds.Batching = (*datastore)(nil)
	_ ds.Batch    = (*dsBatch)(nil)
)

func (d *datastore) key(k ds.Key) []byte { return []byte(d.base + k.String()) }

func (d *datastore) Put(_ context.Context, k ds.Key, v []byte) error {
	err := d.db.UpdateSoft(func(t *Txn) error { return t.set(d.key(k), v) })
	if err != nil {
		return fmt.Errorf("store: datastore put %s: %w", k, err)
	}
	return nil
}

func (d *datastore) Delete(_ context.Context, k ds.Key) error {
	err := d.db.UpdateSoft(func(t *Txn) error { return t.delete(d.key(k)) })
	if err != nil {
		return fmt.Errorf("store: datastore delete %s: %w", k, err)
	}
	return nil
}

func (d *datastore) Get(_ context.Context, k ds.Key) ([]byte, error) {
	var v []byte
	err := d.db.View(func(t *Txn) error {
		var err error
		v, err = t.Get(d.key(k))
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, ds.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: datastore get %s: %w", k, err)
	}
	return v, nil
}

// View calls fn with the value of k read in place, without a copy: from
// the mapped value log for a large value. The slice is valid only until fn
// returns and must not be changed; while fn runs, the value's log file
// cannot be garbage collected, so fn should not block for long. It returns
// ds.ErrNotFound when k is absent, and fn's error as is.
//
// The appliance service serves blocks with it: it copies each block into
// one buffer it reuses per stream instead of a new slice per block (the
// allocation and its zeroing cost a seller 7% of its CPU per fetch served).
func (d *datastore) View(_ context.Context, k ds.Key, fn func(v []byte) error) error {
	var ferr error
	err := d.db.View(func(t *Txn) error {
		item, err := t.btx.Get(d.key(k))
		if err != nil {
			return mapErr(err)
		}
		return item.Value(func(v []byte) error {
			ferr = fn(v)
			return ferr
		})
	})
	switch {
	case ferr != nil:
		return ferr
	case errors.Is(err, ErrNotFound):
		return ds.ErrNotFound
	case err != nil:
		return fmt.Errorf("store: datastore view %s: %w", k, err)
	}
	return nil
}

func (d *datastore) Has(_ context.Context, k ds.Key) (bool, error) {
	found := false
	err := d.db.View(func(t *Txn) error {
		_, err := t.btx.Get(d.key(k))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		found = err == nil
		return mapErr(err)
	})
	if err != nil {
		return false, fmt.Errorf("store: datastore has %s: %w", k, err)
	}
	return found, nil
}

func (d *datastore) GetSize(_ context.Context, k ds.Key) (int, error) {
	size := -1
	err := d.db.View(func(t *Txn) error {
		item, err := t.btx.Get(d.key(k))
		if err != nil {
			return mapErr(err)
		}
		size, err = itemSize(item)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return -1, ds.ErrNotFound
	}
	if err != nil {
		return -1, fmt.Errorf("store: datastore get size %s: %w", k, err)
	}
	return size, nil
}

// itemSize is the exact size of an item's value. For a value in the value
// log, badger's ValueSize is only an estimate; reading it maps the value
// without copying it.
func itemSize(item *badger.Item) (int, error) {
	size := 0
	err := item.Value(func(v []byte) error { size = len(v); return nil })
	return size, err
}

// Sync makes every write so far durable.
func (d *datastore) Sync(context.Context, ds.Key) error {
	if err := d.db.Sync(); err != nil {
		return fmt.Errorf("store: datastore sync: %w", err)
	}
	return nil
}

// Close does nothing: the DB owns the database.
func (d *datastore) Close() error { return nil }

// Query runs q over the datastore's keys. The prefix and key order are
// done by the badger iterator; filters, other orders, offset and limit by
// go-datastore's naive helpers, in the order that package specifies.
func (d *datastore) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	if err := d.db.enter(); err != nil {
		return nil, fmt.Errorf("store: datastore query: %w", err)
	}
	// Like NaiveQueryApply: "/foo" selects "/foo/bar", not "/foobar".
	prefix := d.base + "/"
	if q.Prefix != "" {
		p := path.Clean("/" + q.Prefix)
		if p != "/" {
			prefix = d.base + p + "/"
		}
	}
	// Keys are unique, so a first order by key decides everything.
	rest := q
	rest.Prefix = ""
	reverse := false
	if len(q.Orders) > 0 {
		switch q.Orders[0].(type) {
		case dsq.OrderByKey, *dsq.OrderByKey:
			rest.Orders = nil
		case dsq.OrderByKeyDescending, *dsq.OrderByKeyDescending:
			rest.Orders = nil
			reverse = true
		}
	}
	withValues := !q.KeysOnly
	withSizes := withValues || q.ReturnsSizes
	btx := d.db.bdb.NewTransaction(false)
	pfx := []byte(prefix)
	iopts := badger.IteratorOptions{
		Reverse: reverse,
		// Only a few values at a time: they may be 1 MiB blocks.
		PrefetchValues: withValues,
		PrefetchSize:   4,
	}
	if !reverse {
		iopts.Prefix = pfx
	}
	it := btx.NewIterator(iopts)
	if reverse {
		// A reverse Seek finds the last key <= the one given. prefix ends
		// in '/', so every key in [prefix, succ) has the prefix; succ itself
		// may exist and is skipped.
		succ := append(bytes.Clone(pfx[:len(pfx)-1]), pfx[len(pfx)-1]+1)
		it.Seek(succ)
		if it.Valid() && bytes.Equal(it.Item().Key(), succ) {
			it.Next()
		}
	} else {
		it.Seek(pfx)
	}
	closed := false
	closeIter := func() error {
		if !closed {
			closed = true
			it.Close()
			btx.Discard()
			d.db.leave()
		}
		return nil
	}
	strip := len(d.base)
	next := func() (dsq.Result, bool) {
		if closed || !it.ValidForPrefix(pfx) {
			return dsq.Result{}, false
		}
		if err := ctx.Err(); err != nil {
			return dsq.Result{Error: err}, true
		}
		item := it.Item()
		e := dsq.Entry{Key: string(item.Key()[strip:]), Size: -1}
		var err error
		switch {
		case withValues:
			e.Value, err = item.ValueCopy(nil)
			e.Size = len(e.Value)
		case withSizes:
			e.Size, err = itemSize(item)
		}
		it.Next()
		if err != nil {
			return dsq.Result{Error: fmt.Errorf("store: datastore query: %w", err)}, true
		}
		return dsq.Result{Entry: e}, true
	}
	res := dsq.ResultsFromIterator(q, dsq.Iterator{Next: next, Close: closeIter})
	return dsq.NaiveQueryApply(rest, res), nil
}

// Batch collects writes and applies them on Commit, in as few badger
// transactions as fit.
func (d *datastore) Batch(context.Context) (ds.Batch, error) {
	return &dsBatch{d: d}, nil
}

type dsOp struct {
	key []byte
	val []byte
	del bool
}

type dsBatch struct {
	d   *datastore
	ops []dsOp
}

func (b *dsBatch) Put(_ context.Context, k ds.Key, v []byte) error {
	b.ops = append(b.ops, dsOp{key: b.d.key(k), val: v})
	return nil
}

func (b *dsBatch) Delete(_ context.Context, k ds.Key) error {
	b.ops = append(b.ops, dsOp{key: b.d.key(k), del: true})
	return nil
}

// Commit applies the batch. It is not atomic when the batch is bigger than
// one transaction (go-datastore does not ask for that), and not synced.
func (b *dsBatch) Commit(context.Context) error {
	ops := b.ops
	for len(ops) > 0 {
		n := 0
		err := b.d.db.UpdateSoft(func(t *Txn) error {
			n = 0
			for _, op := range ops {
				var err error
				if op.del {
					err = t.delete(op.key)
				} else {
					err = t.set(op.key, op.val)
				}
				if errors.Is(err, ErrTxnTooBig) && n > 0 {
					return nil // commit what fits, then go on
				}
				if err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: datastore batch commit: %w", err)
		}
		ops = ops[n:]
	}
	b.ops = nil
	return nil
}
