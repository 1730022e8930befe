package appliance

import (
	"fmt"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultChunkSize is the size of the leaves Import cuts a file into:
// 256 KiB, kubo's default chunk, so that a file imported here and by
// `ipfs add --cid-version=1` (raw leaves, balanced, 174 links: the same
// layout) gets the same CID.
//
// Measured with BenchmarkImport and BenchmarkTransfer at 1 GiB on the 2
// cores, 2026-11-26 (docs/BENCHMARKS.md), against 1 MiB chunks: a DAG
// stream fetch at 46 % of the hashed TCP copy against 39-40 % (212 against
// 174-185 MB per CPU-second), bitswap at 28-30 % against 32-33 %, import
// at 88 % of badger's synced write rate against 93 %. The fetch by DAG
// stream is what a seller does, so it decides. 1 MiB chunks would keep a
// quarter of the blocks: of the keys in badger's LSM tree, of the wantlist
// entries of bitswap and of the links (one inner node per 43.5 MiB of file
// instead of per 174 MiB); a node that prefers that sets ChunkSize.
const DefaultChunkSize = 256 << 10

// MinChunkSize is the smallest chunk size Validate accepts.
const MinChunkSize = 16 << 10

// MaxBlockSize is the largest block this package stores, serves or
// accepts: the bitswap limit that every IPFS implementation honours.
const MaxBlockSize = chunker.BlockSizeLimit

// Config tunes a Service. The zero value of a field is not its default:
// start from DefaultConfig.
type Config struct {
	// ChunkSize is the leaf size of imported files, in bytes, from
	// MinChunkSize up to 1 MiB (the largest block every IPFS node takes).
	ChunkSize int64
	// MaxSize is the limit of a Fetch whose options do not set one: the
	// largest appliance, in bytes, that this node accepts from the network.
	MaxSize uint64
	// IdleTimeout bounds the wait for the next block of a fetch: when no
	// block arrives for this long (peers silent, a block that no peer has),
	// the fetch ends with ErrStalled. What arrived stays for a later fetch.
	IdleTimeout time.Duration
	// ConnectTimeout bounds a dial of a peer named in FetchOptions.Peers.
	ConnectTimeout time.Duration
	// FindProvidersTimeout bounds a DHT lookup of the holders of a root.
	FindProvidersTimeout time.Duration
	// MaxProviders is how many holders a DHT lookup collects.
	MaxProviders int
	// WindowBytes is how many bytes of blocks a fetch asks for ahead of
	// those that have arrived (counted with the largest block seen so far,
	// 1 MiB until one arrives; bitswap takes at most 8 MiB and 64 blocks,
	// a DAG stream with helpers 8 MiB): enough to keep a link busy, and
	// the bulk of the memory a fetch takes. 32 MiB carries 320 MB/s over a
	// 100 ms round trip; on loopback (2 cores, 1 GiB, 2026-11-26) a DAG
	// stream ran ~5-15% faster than with 8 MiB, for ~30 MiB more heap.
	WindowBytes int
	// WriteBatchBytes is how many bytes of blocks a write batch gathers
	// before it is committed to the datastore. Every read of the node's
	// database waits for the commits in flight (badger applies them in
	// order), so a batch is also how long a lease or a receipt may wait on
	// an appliance being written: 8 MiB is ~20 ms (store's
	// BenchmarkReadDuringBulkWrite; 32 MiB: ~35 ms at the median).
	WriteBatchBytes int
	// SyncBytes is how many bytes of blocks the writer commits between two
	// syncs of the datastore, which it waits for itself. Badger syncs a
	// whole value-log file inside a commit when the file fills (256 MiB),
	// and every read of the database waited for it: up to 0.3 s. Synced
	// every 64 MiB, that sync finds little left to write: reads waited at
	// most ~90 ms, p99 ~30 ms, beside a writer going flat out (store's
	// BenchmarkReadDuringBulkWrite), and a 1 GiB fetch ran as fast as
	// without (every 16 MiB cost it 15%).
	SyncBytes int
	// Stream enables the DAG stream protocol (/spotmesh/dag/1.0.0): serving
	// it, and trying it before bitswap when a fetch names a peer.
	Stream bool
	// MaxStreams is how many DAG streams this node serves at once; more are
	// refused (the requester falls back to bitswap).
	MaxStreams int
	// Provide announces the root of every pinned appliance to the routing
	// (the DHT) when it is pinned, and again every ReprovideInterval.
	Provide bool
	// ProvideTimeout bounds one announcement.
	ProvideTimeout time.Duration
	// ReprovideInterval is the period of re-announcing pinned roots; DHT
	// provider records expire (48 h in go-libp2p-kad-dht).
	ReprovideInterval time.Duration
	// BitswapMaxOutstandingBytesPerPeer is how many bytes bitswap's server
	// queues for one peer at a time. Boxo's default (1 MiB) is a single
	// block of ours, which leaves the link idle between blocks.
	BitswapMaxOutstandingBytesPerPeer int
	// BitswapMinDontHaveTimeout is the least time bitswap's client waits
	// for a peer's answer to a want before it takes the silence for "don't
	// have" and asks another peer (boxo's MinTimeout, 50 ms by default).
	// Boxo derives the wait from the latency of small messages; a burst of
	// WindowBytes of wants for 1 MiB blocks takes longer to answer, and a wait too
	// short makes the only holder look empty and stalls the session until
	// its next broadcast. It is also how soon a fetch leaves a peer that
	// sends corrupt blocks (bitswap drops them silently).
	BitswapMinDontHaveTimeout time.Duration
	// Registerer receives the gateway's metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the configuration of a node.
func DefaultConfig() Config {
	return Config{
		ChunkSize:                         DefaultChunkSize,
		MaxSize:                           64 << 30,
		IdleTimeout:                       30 * time.Second,
		ConnectTimeout:                    10 * time.Second,
		FindProvidersTimeout:              30 * time.Second,
		MaxProviders:                      10,
		WindowBytes:                       32 << 20,
		WriteBatchBytes:                   8 << 20,
		SyncBytes:                         64 << 20,
		Stream:                            true,
		MaxStreams:                        16,
		Provide:                           true,
		ProvideTimeout:                    time.Minute,
		ReprovideInterval:                 12 * time.Hour,
		BitswapMaxOutstandingBytesPerPeer: 8 << 20,
		BitswapMinDontHaveTimeout:         2 * time.Second,
	}
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("appliance config: %s = %v: %s: %w", field, v, want, ErrInvalid)
	}
	switch {
	case c.ChunkSize < MinChunkSize || c.ChunkSize > 1<<20:
		return bad("ChunkSize", c.ChunkSize, "want 16 KiB to 1 MiB")
	case c.MaxSize == 0:
		return bad("MaxSize", c.MaxSize, "want a positive size in bytes")
	case c.IdleTimeout <= 0:
		return bad("IdleTimeout", c.IdleTimeout, "want a positive duration such as 30s")
	case c.ConnectTimeout <= 0:
		return bad("ConnectTimeout", c.ConnectTimeout, "want a positive duration such as 10s")
	case c.FindProvidersTimeout <= 0:
		return bad("FindProvidersTimeout", c.FindProvidersTimeout, "want a positive duration such as 30s")
	case c.MaxProviders <= 0:
		return bad("MaxProviders", c.MaxProviders, "want at least 1")
	case c.WindowBytes < 64<<10 || c.WindowBytes > 1<<30:
		return bad("WindowBytes", c.WindowBytes, "want 64 KiB to 1 GiB")
	case c.WriteBatchBytes < MaxBlockSize:
		return bad("WriteBatchBytes", c.WriteBatchBytes, fmt.Sprintf("want at least %d (one block)", MaxBlockSize))
	case c.SyncBytes < c.WriteBatchBytes:
		return bad("SyncBytes", c.SyncBytes, fmt.Sprintf("want at least WriteBatchBytes (%d)", c.WriteBatchBytes))
	case c.Stream && c.MaxStreams <= 0:
		return bad("MaxStreams", c.MaxStreams, "want at least 1 when Stream is on")
	case c.Provide && c.ProvideTimeout <= 0:
		return bad("ProvideTimeout", c.ProvideTimeout, "want a positive duration when Provide is on")
	case c.Provide && c.ReprovideInterval <= 0:
		return bad("ReprovideInterval", c.ReprovideInterval, "want a positive duration when Provide is on")
	case c.BitswapMinDontHaveTimeout <= 0:
		return bad("BitswapMinDontHaveTimeout", c.BitswapMinDontHaveTimeout, "want a positive duration such as 2s")
	case c.BitswapMaxOutstandingBytesPerPeer < MaxBlockSize:
		return bad("BitswapMaxOutstandingBytesPerPeer", c.BitswapMaxOutstandingBytesPerPeer, fmt.Sprintf("want at least %d (one block)", MaxBlockSize))
	}
	return nil
}
