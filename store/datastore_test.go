package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dstest "github.com/ipfs/go-datastore/test"
)

// TestDatastoreConformance runs go-datastore's own suite.
func TestDatastoreConformance(t *testing.T) {
	opts := testOptions(t)
	// The suite rewrites the same keys thousands of times; small memtables
	// let compaction drop the old versions that queries would skip over.
	opts.MemTableSize = 1 << 20
	db := openTest(t, opts)
	// Keys of a neighbouring datastore and of the rest of the database must
	// stay invisible to the one under test.
	other := db.Datastore("blocksx")
	if err := other.Put(t.Context(), ds.NewKey("/prefix/x"), []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Txn) error { return tx.Set(Key("dt"), []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	d := db.Datastore("blocks")
	if !testing.Short() {
		// Without -race this includes SubtestCombinations, ~40 s here.
		dstest.SubtestAll(t, d)
		return
	}
	// -short: the same subtests without the slow SubtestCombinations.
	for _, f := range dstest.BasicSubtests {
		name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
		if strings.HasSuffix(name, ".SubtestCombinations") {
			continue
		}
		t.Run(name, func(t *testing.T) { f(t, d); clearDatastore(t, d) })
	}
	for _, f := range dstest.BatchSubtests {
		name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
		t.Run(name, func(t *testing.T) { f(t, d); clearDatastore(t, d) })
	}
}

func clearDatastore(t *testing.T, d ds.Datastore) {
	res, err := d.Query(t.Context(), dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if err := d.Delete(t.Context(), ds.RawKey(e.Key)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDatastoreIsolationAndBlocks(t *testing.T) {
	db := openTest(t, testOptions(t))
	ctx := t.Context()
	a, b := db.Datastore("a"), db.Datastore("b")
	block := bytes.Repeat([]byte{7}, 1<<20) // value log
	if err := a.Put(ctx, ds.NewKey("/k"), block); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, ds.NewKey("/k"), []byte("small")); err != nil {
		t.Fatal(err)
	}
	if size, err := a.GetSize(ctx, ds.NewKey("/k")); err != nil || size != len(block) {
		t.Errorf("GetSize of a block = %d, %v; want %d exactly", size, err, len(block))
	}
	if v, err := b.Get(ctx, ds.NewKey("/k")); err != nil || string(v) != "small" {
		t.Errorf("b.Get = %q, %v", v, err)
	}
	if err := a.Sync(ctx, ds.NewKey("/")); err != nil {
		t.Fatal(err)
	}
	// Sizes in a keys-only query are exact too.
	res, err := a.Query(ctx, dsq.Query{KeysOnly: true, ReturnsSizes: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil || len(all) != 1 || all[0].Key != "/k" || all[0].Size != len(block) || all[0].Value != nil {
		t.Fatalf("query = %+v, %v", all, err)
	}
	// The datastore's keys are under v1/ds/<name>/.
	err = db.View(func(tx *Txn) error {
		_, err := tx.Get([]byte("v1/ds/a/k"))
		return err
	})
	if err != nil {
		t.Errorf("block not under v1/ds/a/: %v", err)
	}
}

func TestDatastoreBigBatch(t *testing.T) {
	opts := testOptions(t)
	opts.MemTableSize = 1 << 20 // one transaction holds ~150 KiB of small values
	db := openTest(t, opts)
	d := db.Datastore("b")
	ctx := t.Context()
	batch, err := d.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	val := bytes.Repeat([]byte("v"), 100)
	for i := range n {
		if err := batch.Put(ctx, ds.NewKey(fmt.Sprintf("/k/%05d", i)), val); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Delete(ctx, ds.NewKey("/gone")); err != nil {
		t.Fatal(err)
	}
	if err := batch.Commit(ctx); err != nil {
		t.Fatalf("commit of a batch bigger than a transaction: %v", err)
	}
	res, err := d.Query(ctx, dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil || len(all) != n {
		t.Fatalf("%d keys, %v; want %d", len(all), err, n)
	}
}

func TestDatastoreReverseSkipsNeighbour(t *testing.T) {
	db := openTest(t, testOptions(t))
	ctx := t.Context()
	d := db.Datastore("x")
	for _, k := range []string{"/p/a", "/p/b", "/p0", "/q"} {
		if err := d.Put(ctx, ds.NewKey(k), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := d.Query(ctx, dsq.Query{Prefix: "/p", Orders: []dsq.Order{dsq.OrderByKeyDescending{}}})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range all {
		keys = append(keys, e.Key)
	}
	if len(keys) != 2 || keys[0] != "/p/b" || keys[1] != "/p/a" {
		t.Fatalf("descending /p = %q, want [/p/b /p/a]", keys)
	}
}

// TestDatastoreView reads values in place, small (in the LSM tree) and
// large (in the value log), and reports a missing key and fn's own error.
func TestDatastoreView(t *testing.T) {
	db := openTest(t, testOptions(t))
	d := db.Datastore("blocks").(interface {
		ds.Datastore
		View(context.Context, ds.Key, func([]byte) error) error
	})
	small, large := []byte("small"), bytes.Repeat([]byte{7, 1, 3}, 300<<10)
	for k, v := range map[string][]byte{"/s": small, "/l": large} {
		if err := d.Put(t.Context(), ds.NewKey(k), v); err != nil {
			t.Fatal(err)
		}
	}
	for k, want := range map[string][]byte{"/s": small, "/l": large} {
		var got []byte
		if err := d.View(t.Context(), ds.NewKey(k), func(v []byte) error { got = bytes.Clone(v); return nil }); err != nil {
			t.Fatalf("View %s: %v", k, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("View %s: %d bytes, want %d", k, len(got), len(want))
		}
	}
	called := false
	err := d.View(t.Context(), ds.NewKey("/missing"), func([]byte) error { called = true; return nil })
	if !errors.Is(err, ds.ErrNotFound) || called {
		t.Errorf("View of a missing key: err %v, fn called %v; want ds.ErrNotFound, not called", err, called)
	}
	errStop := errors.New("stop")
	if err := d.View(t.Context(), ds.NewKey("/l"), func([]byte) error { return errStop }); err != errStop {
		t.Errorf("View returned %v, want fn's own error", err)
	}
}
