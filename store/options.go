package store

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/filecoin-project/go-clock"
)

// Options configures Open. Start from DefaultOptions and change what you
// need; zero tuning fields are not filled in, Validate names the bad one.
//
// The defaults are sized for small machines: a whole node holding an order
// book of 100,000 offers has to stay under 300 MiB of resident memory, so
// every badger buffer and cache is shrunk well below badger's own defaults
// (which assume a dedicated database server).
type Options struct {
	// Dir is the database directory. Open creates it (0700) if needed.
	Dir string
	// Logger receives the store's logs and badger's warnings and errors.
	// nil discards them.
	Logger *slog.Logger
	// Clock is the clock of the job queue (a Queue uses it unless its own
	// QueueOptions.Clock is set). nil means the real clock.
	Clock clock.Clock

	// MemTableSize is the size of one memtable (badger default 64 MiB).
	// Each memtable is an arena allocated up front, so resident memory is
	// roughly (NumMemtables+1) x (1.3 x MemTableSize). It also bounds one
	// transaction: at most 15% of it (values at or above ValueThreshold count
	// only as a pointer, so big blocks do not).
	MemTableSize int64
	// NumMemtables is how many full memtables may wait for their flush to
	// disk before writes stall (badger default 5).
	NumMemtables int
	// NumLevelZeroTables is how many level-0 tables trigger a compaction
	// (badger default 5); NumLevelZeroTablesStall how many stall writes
	// (badger default 15).
	NumLevelZeroTables      int
	NumLevelZeroTablesStall int
	// BaseTableSize is the size of one SST table on level 1 (badger default
	// 2 MiB).
	BaseTableSize int64
	// Compress compresses SST blocks with Snappy (badger's default). Off by
	// default: signed records (signatures, peer IDs, CIDs) hardly compress,
	// while compression costs memory (compressed copies in every table
	// builder, and a block cache of decompressed blocks, since blocks can no
	// longer be read in place from the mmapped tables). Turning it on needs
	// BlockCacheSize > 0.
	Compress bool
	// BlockCacheSize is the cache of decompressed SST blocks (badger default
	// 256 MiB). Only needed with Compress: uncompressed blocks are read in
	// place from the mmapped tables, cached by the OS page cache.
	BlockCacheSize int64
	// IndexCacheSize caches SST indexes and bloom filters. Badger uses it
	// only for encrypted tables, which we do not use: the indexes of
	// unencrypted tables are read in place from the mmapped files.
	IndexCacheSize int64
	// ValueThreshold is the value size from which a value is stored in the
	// value log instead of the LSM tree (badger default 1 MiB, its maximum).
	ValueThreshold int64
	// ValueLogFileSize is the size of one value-log file (badger default
	// 1 GiB).
	ValueLogFileSize int64
	// NumCompactors is the number of compaction goroutines (badger default 4,
	// minimum 2).
	NumCompactors int
	// NumGoroutines is the parallelism of streams, used by Backup (badger
	// default 8).
	NumGoroutines int
	// GCInterval is how often the value log is garbage collected, to give
	// back the space of deleted blocks. 0 disables it.
	GCInterval time.Duration
	// MaxConflictRetries is how many times Update runs its function again
	// when badger reports a conflict with a concurrent transaction.
	MaxConflictRetries int
	// KeepValueLogCached keeps the value log's pages in memory after a sync
	// round has written them to disk. By default (false) they are freed
	// (Linux only, see dropbehind_linux.go): appliance blocks are written
	// in bulk and read back rarely, and caching them cost a bulk writer
	// most of its CPU in fresh memory and TLB shootdowns.
	KeepValueLogCached bool

	// syncEveryWrite makes badger fsync every commit itself (SyncWrites)
	// instead of the group-commit syncer. Only for the benchmark that
	// compares both.
	syncEveryWrite bool
}

// DefaultOptions returns the options for a database in dir, tuned for a
// small machine.
func DefaultOptions(dir string) Options {
	return Options{
		Dir: dir,
		// 4 MiB instead of 64: memtables are allocated in full, so the
		// default would cost ~0.4 GiB before the first write, and the
		// builder that flushes a memtable holds a copy of it (badger pools
		// up to 8 builders' buffers). 4 MiB still holds thousands of offers
		// per flush and allows 600 KiB of small records per transaction.
		MemTableSize: 4 << 20,
		// 2 instead of 5: two immutable memtables waiting for a flush is
		// enough slack for a 2-core machine; each one is resident memory.
		NumMemtables: 2,
		// 3/8 instead of 5/15: smaller memtables make small L0 tables, so
		// compacting them sooner keeps reads (which check every L0 table)
		// fast and the number of mmapped files low.
		NumLevelZeroTables:      3,
		NumLevelZeroTablesStall: 8,
		// 1 MiB instead of 2: every compaction builds its tables in memory
		// and badger keeps up to 8 builders' buffers pooled for seconds
		// afterwards; halving the table size halved the live heap of a
		// 100,000-offer book (BenchmarkBookMemory) from ~100 to ~55 MiB.
		BaseTableSize: 1 << 20,
		// 0 instead of 256 MiB: without compression, blocks are read in
		// place from the mmapped tables and the OS page cache caches them;
		// a block cache would hold a second copy on the Go heap.
		BlockCacheSize: 0,
		// 0 (badger's default): only encrypted tables use it.
		IndexCacheSize: 0,
		// 32 KiB instead of 1 MiB: records (offers, leases, receipts: a few
		// KiB at most) stay in the LSM tree and are read in one go, while
		// appliance blocks (256 KiB to 1 MiB) go to the value log, so
		// compactions do not rewrite them and the LSM tree stays small.
		ValueThreshold: 32 << 10,
		// 256 MiB instead of 1 GiB: value-log GC rewrites whole files, so
		// smaller files give back the space of deleted appliances sooner
		// and with less work; each file is mapped at twice this size. Not
		// smaller: badger syncs a file when it fills, and at 64 MiB writing
		// 1 MiB appliance blocks ran at half the speed (256 MiB in 2.5 s
		// against 1.4 s with 1 GiB files).
		ValueLogFileSize: 256 << 20,
		// 2 instead of 4: the minimum badger accepts; this machine has 2
		// cores that the node needs for its own work.
		NumCompactors: 2,
		// 2 instead of 8: backups stream with this many goroutines; more
		// than the cores only adds memory.
		NumGoroutines:      2,
		GCInterval:         10 * time.Minute,
		MaxConflictRetries: 16,
	}
}

// Validate reports the first field that is wrong, with what to do.
func (o Options) Validate() error {
	switch {
	case o.Dir == "":
		return fmt.Errorf("store options: Dir is empty: set the database directory: %w", ErrInvalid)
	case o.MemTableSize < 1<<20:
		return fmt.Errorf("store options: MemTableSize %d: want at least 1 MiB: %w", o.MemTableSize, ErrInvalid)
	case o.NumMemtables < 1:
		return fmt.Errorf("store options: NumMemtables %d: want at least 1: %w", o.NumMemtables, ErrInvalid)
	case o.NumLevelZeroTables < 1:
		return fmt.Errorf("store options: NumLevelZeroTables %d: want at least 1: %w", o.NumLevelZeroTables, ErrInvalid)
	case o.NumLevelZeroTablesStall <= o.NumLevelZeroTables:
		return fmt.Errorf("store options: NumLevelZeroTablesStall %d: want more than NumLevelZeroTables (%d): %w",
			o.NumLevelZeroTablesStall, o.NumLevelZeroTables, ErrInvalid)
	case o.BaseTableSize < 64<<10:
		return fmt.Errorf("store options: BaseTableSize %d: want at least 64 KiB: %w", o.BaseTableSize, ErrInvalid)
	case o.BlockCacheSize < 0, o.IndexCacheSize < 0:
		return fmt.Errorf("store options: BlockCacheSize/IndexCacheSize: want 0 or more: %w", ErrInvalid)
	case o.Compress && o.BlockCacheSize == 0:
		return fmt.Errorf("store options: Compress needs a BlockCacheSize (try 16 MiB): %w", ErrInvalid)
	case o.ValueThreshold < 1 || o.ValueThreshold > 15*o.MemTableSize/100 || o.ValueThreshold > 1<<20:
		return fmt.Errorf("store options: ValueThreshold %d: want 1 to min(1 MiB, 15%% of MemTableSize): %w",
			o.ValueThreshold, ErrInvalid)
	case o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30:
		return fmt.Errorf("store options: ValueLogFileSize %d: want 1 MiB to 2 GiB: %w", o.ValueLogFileSize, ErrInvalid)
	case o.NumCompactors < 2:
		return fmt.Errorf("store options: NumCompactors %d: want at least 2: %w", o.NumCompactors, ErrInvalid)
	case o.NumGoroutines < 1:
		return fmt.Errorf("store options: NumGoroutines %d: want at least 1: %w", o.NumGoroutines, ErrInvalid)
	case o.GCInterval < 0:
		return fmt.Errorf("store options: GCInterval %v: want 0 (off) or more: %w", o.GCInterval, ErrInvalid)
	case o.MaxConflictRetries < 0:
		return fmt.Errorf("store options: MaxConflictRetries %d: want 0 or more: %w", o.MaxConflictRetries, ErrInvalid)
	}
	return nil
}

// badgerOptions translates Options into badger's.
func (o Options) badgerOptions(log *slog.Logger) badger.Options {
	compression := options.None
	if o.Compress {
		compression = options.Snappy
	}
	bo := badger.DefaultOptions(o.Dir).
		// Durable commits are synced by the group-commit syncer (sync.go),
		// so that UpdateSoft does not pay for an fsync and concurrent
		// Updates share one. Badger's own SyncWrites fsyncs the memtable
		// WAL once per transaction.
		WithSyncWrites(o.syncEveryWrite).
		WithLogger(slogBadger{log}).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithNumLevelZeroTables(o.NumLevelZeroTables).
		WithNumLevelZeroTablesStall(o.NumLevelZeroTablesStall).
		WithBaseTableSize(o.BaseTableSize).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithValueThreshold(o.ValueThreshold).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithNumCompactors(o.NumCompactors).
		WithNumGoroutines(o.NumGoroutines).
		WithCompression(compression).
		// Badger's metrics are expvars we do not export; skip the work.
		WithMetricsEnabled(false)
	return bo
}

// slogBadger routes badger's logger to slog, keeping warnings and errors
// only: badger's info and debug lines (compactions, flushes, replay) are
// noise for an operator.
type slogBadger struct{ log *slog.Logger }

func (l slogBadger) Errorf(f string, v ...any) {
	if l.log != nil {
		l.log.Error(badgerMsg(f, v), "component", "badger")
	}
}

func (l slogBadger) Warningf(f string, v ...any) {
	if l.log != nil {
		l.log.Warn(badgerMsg(f, v), "component", "badger")
	}
}

func (slogBadger) Infof(string, ...any)  {}
func (slogBadger) Debugf(string, ...any) {}

func badgerMsg(f string, v []any) string {
	return strings.TrimSpace(fmt.Sprintf(f, v...))
}
