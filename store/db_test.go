package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestKey(t *testing.T) {
	tests := []struct {
		parts []string
		key   string
		pfx   string
	}{
		{nil, "v1", "v1/"},
		{[]string{"offer", "own", "k1"}, "v1/offer/own/k1", "v1/offer/own/k1/"},
		{[]string{"book", "seller"}, "v1/book/seller", "v1/book/seller/"},
		{[]string{"rec", ""}, "v1/rec/", "v1/rec//"},
	}
	for _, tt := range tests {
		if got := string(Key(tt.parts...)); got != tt.key {
			t.Errorf("Key(%q) = %q, want %q", tt.parts, got, tt.key)
		}
		if got := string(Prefix(tt.parts...)); got != tt.pfx {
			t.Errorf("Prefix(%q) = %q, want %q", tt.parts, got, tt.pfx)
		}
	}
}

// op is one step of a CRUD script.
type op struct {
	kind    string // set, del, get, iter
	key     string
	val     string // set: value; get: want (empty with missing)
	missing bool   // get: want ErrNotFound
	want    []string
}

func TestTxnCRUD(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
	}{
		{"get missing", []op{{kind: "get", key: "a", missing: true}}},
		{"set get", []op{{kind: "set", key: "a", val: "1"}, {kind: "get", key: "a", val: "1"}}},
		{"overwrite", []op{
			{kind: "set", key: "a", val: "1"}, {kind: "set", key: "a", val: "2"},
			{kind: "get", key: "a", val: "2"},
		}},
		{"delete", []op{
			{kind: "set", key: "a", val: "1"}, {kind: "del", key: "a"},
			{kind: "get", key: "a", missing: true},
		}},
		{"delete missing", []op{{kind: "del", key: "nope"}, {kind: "get", key: "nope", missing: true}}},
		{"empty value", []op{{kind: "set", key: "a", val: ""}, {kind: "get", key: "a", val: ""}}},
		{"iterate in order within prefix", []op{
			{kind: "set", key: "p/c", val: "3"}, {kind: "set", key: "p/a", val: "1"},
			{kind: "set", key: "p/b", val: "2"}, {kind: "set", key: "q/a", val: "x"},
			{kind: "set", key: "p", val: "self"},
			{kind: "iter", key: "p/", want: []string{"p/a=1", "p/b=2", "p/c=3"}},
		}},
		{"iterate sees deletes", []op{
			{kind: "set", key: "p/a", val: "1"}, {kind: "set", key: "p/b", val: "2"},
			{kind: "del", key: "p/a"},
			{kind: "iter", key: "p/", want: []string{"p/b=2"}},
		}},
		{"iterate empty", []op{{kind: "iter", key: "zz/", want: nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each script runs twice: all in one Update (the transaction
			// sees its own writes), and one committed step per transaction.
			for _, oneTxn := range []bool{true, false} {
				db := openTest(t, testOptions(t))
				run := func(tx *Txn, o op) error {
					k := []byte(o.key)
					switch o.kind {
					case "set":
						return tx.Set(k, []byte(o.val))
					case "del":
						return tx.Delete(k)
					case "get":
						v, err := tx.Get(k)
						if o.missing {
							if !errors.Is(err, ErrNotFound) {
								return fmt.Errorf("get %s: err %v, want ErrNotFound", o.key, err)
							}
							return nil
						}
						if err != nil || string(v) != o.val {
							return fmt.Errorf("get %s = %q, %v; want %q", o.key, v, err, o.val)
						}
						return nil
					case "iter":
						var got []string
						err := tx.Iterate(k, func(key, val []byte) error {
							got = append(got, string(key)+"="+string(val))
							return nil
						})
						if err != nil {
							return err
						}
						if strings.Join(got, ",") != strings.Join(o.want, ",") {
							return fmt.Errorf("iterate %s = %q, want %q", o.key, got, o.want)
						}
					}
					return nil
				}
				if oneTxn {
					err := db.Update(func(tx *Txn) error {
						for _, o := range tt.ops {
							if err := run(tx, o); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						t.Errorf("one txn: %v", err)
					}
					continue
				}
				for _, o := range tt.ops {
					var err error
					if o.kind == "get" || o.kind == "iter" {
						err = db.View(func(tx *Txn) error { return run(tx, o) })
					} else {
						err = db.Update(func(tx *Txn) error { return run(tx, o) })
					}
					if err != nil {
						t.Errorf("txn per step: %v", err)
					}
				}
			}
		})
	}
}

func TestTxnCopies(t *testing.T) {
	db := openTest(t, testOptions(t))
	key, val := []byte("k"), []byte("value")
	if err := db.Update(func(tx *Txn) error {
		if err := tx.Set(key, val); err != nil {
			return err
		}
		// The caller reuses its buffers before the commit.
		copy(key, "x")
		copy(val, "XXXXX")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := db.View(func(tx *Txn) error {
		var err error
		got, err = tx.Get([]byte("k"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != "value" {
		t.Fatalf("Get = %q, want %q: Set must copy key and value", got, "value")
	}
	got[0] = 'Z' // the returned slice is ours
	if err := db.View(func(tx *Txn) error {
		v, err := tx.Get([]byte("k"))
		if string(v) != "value" {
			return fmt.Errorf("after changing a returned slice, Get = %q", v)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestIterateErrorsAndNesting(t *testing.T) {
	db := openTest(t, testOptions(t))
	if err := db.Update(func(tx *Txn) error {
		for _, k := range []string{"a/1", "a/2", "a/3"} {
			if err := tx.Set([]byte(k), []byte(k)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	n := 0
	err := db.View(func(tx *Txn) error {
		return tx.Iterate([]byte("a/"), func(k, v []byte) error {
			n++
			if n == 2 {
				return stop
			}
			return nil
		})
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("Iterate with fn error: err %v after %d keys, want stop after 2", err, n)
	}
	// Nested iteration is fine in a View...
	err = db.View(func(tx *Txn) error {
		return tx.Iterate([]byte("a/"), func(k, v []byte) error {
			return tx.Iterate([]byte("a/"), func(k, v []byte) error { return nil })
		})
	})
	if err != nil {
		t.Errorf("nested Iterate in View: %v", err)
	}
	// ...and refused, not a panic, in an Update.
	err = db.Update(func(tx *Txn) error {
		return tx.Iterate([]byte("a/"), func(k, v []byte) error {
			return tx.Iterate([]byte("a/"), func(k, v []byte) error { return nil })
		})
	})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("nested Iterate in Update: err %v, want ErrInvalid", err)
	}
	// Deleting while iterating in an Update, with the key from fn.
	err = db.Update(func(tx *Txn) error {
		return tx.Iterate([]byte("a/"), func(k, v []byte) error { return tx.Delete(k) })
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *Txn) error {
		return tx.Iterate([]byte("a/"), func(k, v []byte) error { return fmt.Errorf("left: %s", k) })
	})
	if err != nil {
		t.Errorf("after deleting all while iterating: %v", err)
	}
}

func TestUpdateErrorDiscards(t *testing.T) {
	db := openTest(t, testOptions(t))
	boom := errors.New("boom")
	err := db.Update(func(tx *Txn) error {
		if err := tx.Set([]byte("k"), []byte("v")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	err = db.View(func(tx *Txn) error { _, err := tx.Get([]byte("k")); return err })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("write of a failed Update is visible: %v", err)
	}
	if err := db.View(func(tx *Txn) error { return tx.Set([]byte("k"), nil) }); !errors.Is(err, ErrInvalid) {
		t.Errorf("Set in View: %v, want ErrInvalid", err)
	}
}

// TestConflictRetry: concurrent read-modify-write Updates of one counter
// lose no increment.
func TestConflictRetry(t *testing.T) {
	opts := testOptions(t)
	opts.MaxConflictRetries = 1000
	db := openTest(t, opts)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				err := db.UpdateSoft(func(tx *Txn) error {
					v, err := tx.Get([]byte("n"))
					if err != nil && !errors.Is(err, ErrNotFound) {
						return err
					}
					n := 0
					if len(v) > 0 {
						fmt.Sscan(string(v), &n)
					}
					return tx.Set([]byte("n"), fmt.Append(nil, n+1))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var got []byte
	_ = db.View(func(tx *Txn) error { got, _ = tx.Get([]byte("n")); return nil })
	if string(got) != fmt.Sprint(workers*each) {
		t.Fatalf("counter = %s, want %d", got, workers*each)
	}
}

func TestDurableUpdateSyncs(t *testing.T) {
	db := openTest(t, testOptions(t))
	r0 := db.syncRounds()
	if err := db.UpdateSoft(func(tx *Txn) error { return tx.Set([]byte("s"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	if r := db.syncRounds(); r != r0 {
		t.Fatalf("UpdateSoft ran %d sync rounds, want none", r-r0)
	}
	if err := db.Update(func(tx *Txn) error { return tx.Set([]byte("d"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	if r := db.syncRounds(); r != r0+1 {
		t.Fatalf("Update ran %d sync rounds, want 1", r-r0)
	}
	// A read-only Update has nothing to sync.
	if err := db.Update(func(tx *Txn) error { _, err := tx.Get([]byte("d")); return err }); err != nil {
		t.Fatal(err)
	}
	if r := db.syncRounds(); r != r0+1 {
		t.Fatalf("read-only Update synced")
	}
}

// TestGroupCommit: many concurrent durable Updates share sync rounds.
func TestGroupCommit(t *testing.T) {
	db := openTest(t, testOptions(t))
	r0 := db.syncRounds()
	const writers, each = 32, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := fmt.Appendf(nil, "w%d/%d", w, i)
				if err := db.Update(func(tx *Txn) error { return tx.Set(k, k) }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rounds := db.syncRounds() - r0
	t.Logf("%d durable updates, %d sync rounds", writers*each, rounds)
	if rounds >= writers*each/2 {
		t.Errorf("%d sync rounds for %d concurrent updates: commits do not share fsyncs", rounds, writers*each)
	}
}

func TestOpenLocked(t *testing.T) {
	opts := testOptions(t)
	db := openTest(t, opts)
	_, err := Open(opts)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{"another spotmesh daemon running on this home", opts.Dir, fmt.Sprint(os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Once the first is closed, the directory opens again.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(opts)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db2.Close()
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"empty dir", DefaultOptions(""), "Dir is empty"},
		{"bad option", func() Options { o := DefaultOptions(t.TempDir()); o.NumCompactors = 1; return o }(), "NumCompactors"},
		{"a file", DefaultOptions(file), "must be a directory"},
		{"not writable", DefaultOptions(filepath.Join(ro, "db")), "writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "not writable" && os.Geteuid() == 0 {
				t.Skip("root writes anywhere")
			}
			db, err := Open(tt.opts)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: %v; want it to say %q", err, tt.want)
			}
		})
	}
}

func TestClose(t *testing.T) {
	db, err := Open(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, f := range map[string]func() error{
		"Update": func() error { return db.Update(func(*Txn) error { return nil }) },
		"View":   func() error { return db.View(func(*Txn) error { return nil }) },
		"Sync":   db.Sync,
		"Backup": func() error { return db.Backup(&bytes.Buffer{}) },
	} {
		if err := f(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	opts := testOptions(t)
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("b"), 1<<20) // a block: goes to the value log
	if err := db.Update(func(tx *Txn) error {
		if err := tx.Set([]byte("small"), []byte("s")); err != nil {
			return err
		}
		return tx.Set([]byte("big"), big)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, opts)
	err = db.View(func(tx *Txn) error {
		s, err := tx.Get([]byte("small"))
		if err != nil || string(s) != "s" {
			return fmt.Errorf("small = %q, %v", s, err)
		}
		b, err := tx.Get([]byte("big"))
		if err != nil || !bytes.Equal(b, big) {
			return fmt.Errorf("big: %d bytes, %v", len(b), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBackupRestore(t *testing.T) {
	db := openTest(t, testOptions(t))
	want := map[string]string{}
	err := db.Update(func(tx *Txn) error {
		for i := range 200 {
			k, v := fmt.Sprintf("v1/rec/%03d", i), strings.Repeat("x", i)
			want[k] = v
			if err := tx.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		big := strings.Repeat("B", 100<<10)
		want["v1/ds/blocks/big"] = big
		if err := tx.Set([]byte("v1/ds/blocks/big"), []byte(big)); err != nil {
			return err
		}
		return tx.Schedule(Job{Kind: "expire", ID: "l1", Data: []byte("d")})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deleted keys do not come back.
	if err := db.Update(func(tx *Txn) error { delete(want, "v1/rec/007"); return tx.Delete([]byte("v1/rec/007")) }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := db.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	// Writes after the backup are not in it.
	if err := db.Update(func(tx *Txn) error { return tx.Set([]byte("v1/rec/after"), []byte("x")) }); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(dir, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := Restore(dir, bytes.NewReader(buf.Bytes())); !errors.Is(err, ErrInvalid) {
		t.Errorf("Restore over a database = %v, want ErrInvalid", err)
	}
	opts := testOptions(t)
	opts.Dir = dir
	rdb := openTest(t, opts)
	got := map[string]string{}
	err = rdb.View(func(tx *Txn) error {
		return tx.Iterate([]byte("v1/"), func(k, v []byte) error {
			if !bytes.HasPrefix(k, []byte("v1/job")) {
				got[string(k)] = string(v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("restored %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("restored %s: %d bytes, want %d", k, len(got[k]), len(v))
		}
	}
	err = rdb.View(func(tx *Txn) error {
		j, err := tx.Job("expire", "l1")
		if err != nil || string(j.Data) != "d" {
			return fmt.Errorf("restored job = %+v, %v", j, err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
