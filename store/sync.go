package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// syncer is the group commit. Badger runs with SyncWrites=false; a durable
// Update commits (the commit is in badger's logs, in the page cache) and
// then waits for a sync round that started after its commit. One goroutine
// runs the rounds back to back, so while one fsync is in flight every
// commit that finishes joins the next round: with many writers a round
// covers many commits, and UpdateSoft never waits for a round at all.
//
// A round is db.Sync() (the active memtable WAL and value-log file) plus an
// fsync of every WAL or value-log file that badger rotated out since the
// previous round: badger does not sync a log file when it stops writing to
// it with SyncWrites off, and db.Sync() only covers the active ones, so a
// commit that landed in a file just before it was rotated out would
// otherwise be acknowledged unsynced.
type syncer struct {
	bdb *badger.DB
	dir string
	log *slog.Logger

	mu   sync.Mutex // guards next and failed
	next *syncRound // the round that has not started yet; nil when nobody waits
	// failed is set by the first failed round and returned ever after: after
	// a failed fsync the kernel may have dropped the dirty pages, so later
	// rounds succeeding would prove nothing (see PostgreSQL's "fsyncgate").
	failed error

	kick chan struct{} // buffered 1: a round is wanted
	stop chan struct{} // closed by close
	done chan struct{} // closed when the loop has returned

	// Owned by the loop goroutine: the highest log file ids seen by the
	// previous round, by extension.
	seen map[string]int64
	// drop frees the value-log pages each round made durable; nil keeps
	// them cached (Options.KeepValueLogCached).
	drop *dropBehind

	rounds atomic.Int64 // completed rounds, for benchmarks and tests
}

type syncRound struct {
	done chan struct{} // closed when the round is over
	err  error         // set before done is closed
}

// logExts are the extensions of badger's log files: memtable WALs and the
// value log.
var logExts = []string{".mem", ".vlog"}

func newSyncer(bdb *badger.DB, dir string, drop *dropBehind, log *slog.Logger) *syncer {
	s := &syncer{
		bdb:  bdb,
		dir:  dir,
		drop: drop,
		log:  log,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	// Files that exist at open were written by an earlier process; what of
	// them reached the disk is settled.
	s.seen, _, _ = logIDs(dir)
	go s.loop()
	return s
}

// wait returns once a sync round that started after the call has finished.
func (s *syncer) wait() error {
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return s.failed
	}
	r := s.next
	if r == nil {
		r = &syncRound{done: make(chan struct{})}
		s.next = r
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // a kick is already pending
	}
	select {
	case <-r.done:
		return r.err
	case <-s.done:
		// close waits for every waiter's Update to return before it stops
		// the loop, so this is only reached on misuse.
		return ErrClosed
	}
}

func (s *syncer) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		s.mu.Lock()
		r := s.next
		s.next = nil
		s.mu.Unlock()
		if r == nil {
			continue
		}
		err := s.round()
		if err != nil {
			err = fmt.Errorf("store: sync to disk failed, recent writes may be lost; restart the node and check the disk: %w", err)
			s.log.Error("store: fsync failed", "err", err)
			s.mu.Lock()
			if s.failed == nil {
				s.failed = err
			}
			s.mu.Unlock()
		}
		s.rounds.Add(1)
		r.err = err
		close(r.done)
	}
}

// round syncs everything committed before it started.
func (s *syncer) round() error {
	// The value log written so far is synced by this round: its pages
	// can go afterwards (drop-behind).
	marks := s.drop.mark(s.seen[".vlog"])
	s.drop.unmap(marks)
	if err := s.bdb.Sync(); err != nil {
		return err
	}
	ids, _, err := logIDs(s.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, ext := range logExts {
		prev, cur := s.seen[ext], ids[ext]
		if prev == 0 {
			prev = cur // no file of this kind before: nothing was rotated out
		}
		// Files [prev, cur) were written to after the previous round and
		// are no longer active, so db.Sync() did not cover them. A file
		// that is gone was flushed into an SST, which badger syncs.
		for id := prev; id < cur; id++ {
			errs = append(errs, fsyncIfExists(filepath.Join(s.dir, logFileName(id, ext))))
		}
		s.seen[ext] = cur
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.drop.release(marks)
	return nil
}

func (s *syncer) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// logIDs returns the highest and the lowest id of each kind of log file
// in dir.
func logIDs(dir string) (hi, lo map[string]int64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	hi, lo = make(map[string]int64, len(logExts)), make(map[string]int64, len(logExts))
	for _, e := range entries {
		name := e.Name()
		for _, ext := range logExts {
			if !strings.HasSuffix(name, ext) {
				continue
			}
			id, err := strconv.ParseInt(strings.TrimSuffix(name, ext), 10, 64)
			if err != nil {
				continue
			}
			hi[ext] = max(hi[ext], id)
			if l, ok := lo[ext]; !ok || id < l {
				lo[ext] = id
			}
		}
	}
	return hi, lo, nil
}

// logFileName is badger's name for log file id: 00001.mem, 000001.vlog.
func logFileName(id int64, ext string) string {
	if ext == ".vlog" {
		return fmt.Sprintf("%06d%s", id, ext)
	}
	return fmt.Sprintf("%05d%s", id, ext)
}

func fsyncIfExists(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// fsync through another descriptor writes the file's dirty pages,
	// including those written through badger's shared mmap.
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
