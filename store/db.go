package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/filecoin-project/go-clock"
)

// Error kinds, checked with errors.Is.
var (
	// ErrNotFound: no value under the key, or no such job.
	ErrNotFound = errors.New("not found")
	// ErrClosed: the DB (or Queue) was closed.
	ErrClosed = errors.New("store closed")
	// ErrLocked: another process has the database open.
	ErrLocked = errors.New("database locked")
	// ErrConflict: Update kept conflicting with concurrent transactions
	// after Options.MaxConflictRetries retries.
	ErrConflict = errors.New("transaction conflict")
	// ErrTxnTooBig: the transaction holds more than badger accepts in one
	// commit (15% of Options.MemTableSize of small values); split it.
	ErrTxnTooBig = errors.New("transaction too big")
	// ErrInvalid: a bad argument or option.
	ErrInvalid = errors.New("invalid argument")
)

// DB is one node's database. It is safe for concurrent use.
type DB struct {
	bdb   *badger.DB
	opts  Options
	log   *slog.Logger
	clock clock.Clock
	lock  *dirLock
	sync  *syncer

	// gate lets Close wait for every operation in progress and refuse new
	// ones. It is a counter rather than an RWMutex so that an operation
	// started while Close waits (for instance a Get inside an open
	// datastore query) fails with ErrClosed instead of deadlocking.
	gateMu   sync.Mutex
	gateCond *sync.Cond
	active   int  // operations in progress; guarded by gateMu
	closed   bool // guarded by gateMu
	closeErr error

	closeOnce sync.Once
	stopGC    chan struct{}
	wg        sync.WaitGroup // background goroutines (value-log GC)

	listenMu  sync.Mutex
	listeners map[chan struct{}]struct{} // woken after a commit that scheduled a job; guarded by listenMu
}

// Open opens (or creates) the database in opts.Dir. It fails with ErrLocked
// when another process has it open.
func Open(opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.New()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, openError(opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, openError(opts.Dir, err)
	}
	bdb, err := badger.Open(opts.badgerOptions(log))
	if err != nil {
		_ = lock.release()
		return nil, openError(opts.Dir, err)
	}
	db := &DB{
		bdb:       bdb,
		opts:      opts,
		log:       log,
		clock:     clk,
		lock:      lock,
		stopGC:    make(chan struct{}),
		listeners: make(map[chan struct{}]struct{}),
	}
	db.gateCond = sync.NewCond(&db.gateMu)
	var drop *dropBehind
	if !opts.KeepValueLogCached {
		drop = newDropBehind(opts.Dir, opts.ValueLogFileSize, log)
	}
	db.sync = newSyncer(bdb, opts.Dir, drop, log)
	if opts.GCInterval > 0 {
		db.wg.Add(1)
		go db.gcLoop(opts.GCInterval)
	}
	return db, nil
}

// openError explains a failed Open to a person.
func openError(dir string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, ErrLocked):
	case errors.Is(err, fs.ErrPermission):
		hint = ": make the directory readable and writable by this user"
	case errors.Is(err, syscall.ENOSPC):
		hint = ": the disk is full, free some space"
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, fs.ErrExist):
		hint = ": the path must be a directory"
	case errors.Is(err, syscall.EROFS):
		hint = ": the file system is read-only"
	default:
		hint = ": check the disk and the directory; if the database is damaged, restore it from a backup"
	}
	return fmt.Errorf("store: open %s: %w%s", dir, err, hint)
}

// Close closes the database after the operations in progress. It is
// idempotent. Close queues first: their handlers use the DB.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.gateMu.Lock()
		db.closed = true
		for db.active > 0 {
			db.gateCond.Wait()
		}
		db.gateMu.Unlock()

		close(db.stopGC)
		db.wg.Wait()
		db.sync.close()
		// Badger's Close flushes the memtables into synced SSTs.
		err := db.bdb.Close()
		if err != nil {
			err = fmt.Errorf("store: close %s: %w", db.opts.Dir, err)
		}
		if lerr := db.lock.release(); lerr != nil && err == nil {
			err = fmt.Errorf("store: close %s: release lock: %w", db.opts.Dir, lerr)
		}
		db.closeErr = err
	})
	return db.closeErr
}

// enter registers an operation; every successful enter is paired with leave.
func (db *DB) enter() error {
	db.gateMu.Lock()
	defer db.gateMu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.active++
	return nil
}

func (db *DB) leave() {
	db.gateMu.Lock()
	db.active--
	if db.active == 0 {
		db.gateCond.Broadcast()
	}
	db.gateMu.Unlock()
}

// Update runs fn in a read-write transaction and commits it durably: it
// returns only after the commit is on disk (fsynced), so it survives a
// crash or power loss. Concurrent Updates share their fsyncs. A durable
// Update also makes every commit before it durable, UpdateSoft ones
// included: they share badger's logs.
//
// When the transaction conflicts with a concurrent one (both read and
// wrote overlapping keys), fn runs again on fresh data, so fn must not have
// effects outside the transaction. An error from fn discards the
// transaction and is returned as is.
func (db *DB) Update(fn func(*Txn) error) error {
	return db.update(fn, true)
}

// UpdateSoft is Update without the fsync: for soft state that can be
// rebuilt (the order book cache). The commit survives a crash of the
// process (it is in the page cache) but not necessarily of the machine.
func (db *DB) UpdateSoft(fn func(*Txn) error) error {
	return db.update(fn, false)
}

func (db *DB) update(fn func(*Txn) error, durable bool) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	for attempt := 0; ; attempt++ {
		t, err := db.runTxn(fn)
		if err == nil {
			if t.scheduled {
				db.notifyJobs()
			}
			if durable && t.wrote {
				return db.sync.wait()
			}
			return nil
		}
		if errors.Is(err, badger.ErrConflict) {
			if attempt < db.opts.MaxConflictRetries {
				continue
			}
			return fmt.Errorf("store: update: gave up after %d retries: %w", attempt, ErrConflict)
		}
		return err
	}
}

// runTxn runs fn in a new read-write transaction and commits it.
func (db *DB) runTxn(fn func(*Txn) error) (*Txn, error) {
	btx := db.bdb.NewTransaction(true)
	defer btx.Discard()
	t := &Txn{db: db, btx: btx, update: true}
	if err := fn(t); err != nil {
		return nil, err
	}
	if !t.wrote {
		return t, nil
	}
	if err := btx.Commit(); err != nil {
		if errors.Is(err, badger.ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("store: commit: %w", mapErr(err))
	}
	return t, nil
}

// View runs fn in a read-only transaction: a consistent snapshot.
func (db *DB) View(fn func(*Txn) error) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	btx := db.bdb.NewTransaction(false)
	defer btx.Discard()
	return fn(&Txn{db: db, btx: btx})
}

// Sync makes every commit so far durable, waiting for a group-commit fsync
// round. Update does this itself; Sync is for UpdateSoft and datastore
// writes that became precious.
func (db *DB) Sync() error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	return db.sync.wait()
}

// syncRounds is the number of fsync rounds so far (for tests and benchmarks).
func (db *DB) syncRounds() int64 { return db.sync.rounds.Load() }

// Backup writes a consistent copy of the whole database to w while the
// database stays in use (badger's backup format: a stream of the latest
// version of every key). Restore reads it back.
func (db *DB) Backup(w io.Writer) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	if _, err := db.bdb.Backup(w, 0); err != nil {
		return fmt.Errorf("store: backup %s: %w", db.opts.Dir, err)
	}
	return nil
}

// Restore creates a database in dir from a Backup. dir must not exist or be
// empty: restoring over a database would mix two histories.
func Restore(dir string, r io.Reader) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: restore into %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("store: restore into %s: the directory is not empty; restore into a new directory: %w", dir, ErrInvalid)
	}
	opts := DefaultOptions(dir)
	opts.GCInterval = 0
	db, err := Open(opts)
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	// 256 pending batches of up to 15% of a memtable each bound the memory.
	if err := db.bdb.Load(r, 256); err != nil {
		_ = db.Close()
		return fmt.Errorf("store: restore into %s: read backup: %w", dir, err)
	}
	// Close flushes the memtables into synced tables.
	if err := db.Close(); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	return nil
}

// gcLoop runs badger's value-log GC, which gives back the space of deleted
// values (appliance blocks). It uses the real clock on purpose: it is
// housekeeping, and a ticker on a test's mock clock would never stop
// firing.
func (db *DB) gcLoop(every time.Duration) {
	defer db.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-db.stopGC:
			return
		case <-t.C:
		}
		// Rewrite files that are at least half garbage, until none is.
		for range 16 {
			err := db.bdb.RunValueLogGC(0.5)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					db.log.Warn("store: value log GC", "err", err)
				}
				break
			}
		}
	}
}

// addListener registers a channel that is signalled (without blocking)
// after every commit that scheduled a job.
func (db *DB) addListener(ch chan struct{}) {
	db.listenMu.Lock()
	db.listeners[ch] = struct{}{}
	db.listenMu.Unlock()
}

func (db *DB) removeListener(ch chan struct{}) {
	db.listenMu.Lock()
	delete(db.listeners, ch)
	db.listenMu.Unlock()
}

func (db *DB) notifyJobs() {
	db.listenMu.Lock()
	defer db.listenMu.Unlock()
	for ch := range db.listeners {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// mapErr turns badger's error kinds into ours.
func mapErr(err error) error {
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %w", ErrTxnTooBig, err)
	case errors.Is(err, badger.ErrDBClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, badger.ErrEmptyKey), errors.Is(err, badger.ErrInvalidKey),
		errors.Is(err, badger.ErrReadOnlyTxn):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
