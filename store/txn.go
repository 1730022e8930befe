package store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Txn is a transaction, valid only inside the function given to Update,
// UpdateSoft or View. A Txn is not safe for concurrent use.
type Txn struct {
	db     *DB
	btx    *badger.Txn
	update bool

	wrote     bool // a Set, Delete, Schedule or Cancel happened
	scheduled bool // a job was scheduled: wake the queues after the commit
	iterating int  // Iterate calls in progress
}

// Get returns a copy of the value under key, or ErrNotFound.
func (t *Txn) Get(key []byte) ([]byte, error) {
	item, err := t.btx.Get(key)
	if err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("store: get %q: %w", key, mapErr(err))
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, mapErr(err))
	}
	return v, nil
}

// Set writes val under key. It copies both, so the caller may reuse them.
func (t *Txn) Set(key, val []byte) error {
	return t.set(append([]byte(nil), key...), append([]byte(nil), val...))
}

// set is Set without the copies: the transaction keeps key and val until
// it ends.
func (t *Txn) set(key, val []byte) error {
	if err := t.btx.Set(key, val); err != nil {
		return fmt.Errorf("store: set %q: %w", key, mapErr(err))
	}
	t.wrote = true
	return nil
}

// Delete removes key; deleting a missing key is not an error.
func (t *Txn) Delete(key []byte) error {
	return t.delete(append([]byte(nil), key...))
}

func (t *Txn) delete(key []byte) error {
	if err := t.btx.Delete(key); err != nil {
		return fmt.Errorf("store: delete %q: %w", key, mapErr(err))
	}
	t.wrote = true
	return nil
}

// Iterate calls fn for every key that starts with prefix, in key order,
// including the transaction's own uncommitted writes. key and val are only
// valid during fn; copy what you keep. fn may Set and Delete (the iteration
// does not see those changes). An error from fn stops the iteration and is
// returned. In an Update, Iterate calls cannot be nested.
//
// Note that Key("book", "ab") is also a prefix of Key("book", "abc", ...):
// use Prefix to iterate the children of one path.
func (t *Txn) Iterate(prefix []byte, fn func(key, val []byte) error) error {
	if t.update && t.iterating > 0 {
		return fmt.Errorf("store: iterate %q: nested Iterate in an Update: collect the keys first: %w", prefix, ErrInvalid)
	}
	t.iterating++
	defer func() { t.iterating-- }()
	it := t.btx.NewIterator(badger.IteratorOptions{
		Prefix: prefix,
		// Values are read one by one when fn gets them: prefetching would
		// pull whole appliance blocks from the value log into memory.
		PrefetchValues: false,
	})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		key := item.Key()
		err := item.Value(func(val []byte) error { return fn(key, val) })
		if err != nil {
			return err
		}
	}
	return nil
}

// iterateKeys is Iterate without reading values.
func (t *Txn) iterateKeys(prefix []byte, fn func(key []byte) error) error {
	if t.update && t.iterating > 0 {
		return fmt.Errorf("store: iterate %q: nested Iterate in an Update: %w", prefix, ErrInvalid)
	}
	t.iterating++
	defer func() { t.iterating-- }()
	it := t.btx.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if err := fn(it.Item().Key()); err != nil {
			return err
		}
	}
	return nil
}

// keyVersion is the first segment of every key: the layout's version, so
// that a later layout can live beside this one while data migrates.
const keyVersion = "v1"

// Key builds a key of the versioned key space: "v1/" and the parts joined
// by "/". Parts should not contain "/" unless the layout says so (see the
// package documentation).
func Key(parts ...string) []byte {
	n := len(keyVersion)
	for _, p := range parts {
		n += 1 + len(p)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(keyVersion)
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(p)
	}
	return []byte(b.String())
}

// Prefix is Key with a trailing "/": the prefix that matches the children
// of a path and nothing else, for Iterate. Prefix("book", seller) matches
// Key("book", seller, offer) but not Key("book", seller+"x", offer).
func Prefix(parts ...string) []byte {
	return append(Key(parts...), '/')
}
