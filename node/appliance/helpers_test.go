package appliance

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"go.uber.org/goleak"

	"github.com/spotmesh/spotmesh/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	)
}

// envMiB reads a size in MiB from the environment, or returns def.
func envMiB(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v << 20
	}
	return def
}

// prng is a fast deterministic stream of n pseudo-random bytes: AES-CTR
// keyed by the seed (several GB/s with AES-NI), test data that does not
// compress or deduplicate.
type prng struct {
	ctr  cipher.Stream
	left int64
}

func newPRNG(seed uint64, n int64) *prng {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	blk, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	return &prng{ctr: cipher.NewCTR(blk, make([]byte, aes.BlockSize)), left: n}
}

func (p *prng) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	clear(b)
	p.ctr.XORKeyStream(b, b)
	p.left -= int64(len(b))
	return len(b), nil
}

// sumOf is the SHA-256 of a reader's bytes.
func sumOf(t testing.TB, r io.Reader) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

func prngSum(t testing.TB, seed uint64, n int64) [32]byte { return sumOf(t, newPRNG(seed, n)) }

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.IdleTimeout = 15 * time.Second
	cfg.ConnectTimeout = 5 * time.Second
	cfg.FindProvidersTimeout = 10 * time.Second
	cfg.Provide = false
	return cfg
}

// newHost is a libp2p host on loopback TCP.
func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func mapDS() datastore.Batching { return dssync.MutexWrap(datastore.NewMapDatastore()) }

// badgerDS is the node's real datastore: store's adapter over badger/v4,
// tuned for blocks in the value log. It lives in a t.TempDir.
func badgerDS(t testing.TB) datastore.Batching {
	t.Helper()
	return badgerDSAt(t, t.TempDir())
}

func badgerDSAt(t testing.TB, dir string) datastore.Batching {
	t.Helper()
	return openDB(t, dir).Datastore("appliance")
}

// openDB opens the node's database in dir; Close is idempotent, and the
// test closes it at the end if it did not before.
func openDB(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(store.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

type nodeOpts struct {
	cfg     *Config
	ds      datastore.Batching
	host    host.Host
	routing routing.ContentRouting
	clk     clock.Clock
}

// testNode is a started Service on its own host.
type testNode struct {
	*Service
	h  host.Host
	ds datastore.Batching
}

func newNode(t testing.TB, o nodeOpts) *testNode {
	t.Helper()
	cfg := testConfig()
	if o.cfg != nil {
		cfg = *o.cfg
	}
	if o.host == nil {
		o.host = newHost(t)
	}
	if o.ds == nil {
		o.ds = mapDS()
	}
	if o.clk == nil {
		o.clk = clock.New()
	}
	s, err := New(cfg, o.host, o.ds, o.routing, o.clk, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &testNode{Service: s, h: o.host, ds: o.ds}
}

func (n *testNode) addr() peer.AddrInfo { return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()} }

// importPRNG imports n pseudo-random bytes and returns the Info and the
// bytes' SHA-256.
func importPRNG(t testing.TB, s *Service, seed uint64, n int64) (Info, [32]byte) {
	t.Helper()
	info, err := s.Import(context.Background(), newPRNG(seed, n), Meta{Name: "disk.qcow2", Format: "qcow2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info, prngSum(t, seed, n)
}

// openSum is the SHA-256 of an appliance read back from local blocks.
func openSum(t testing.TB, s *Service, c cid.Cid) [32]byte {
	t.Helper()
	f, err := s.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return sumOf(t, f)
}

// barePeer is a "bare IPFS node": a libp2p host running only boxo's
// bitswap over its own blockstore, as any IPFS implementation does.
type barePeer struct {
	h     host.Host
	bs    blockstore.Blockstore
	bswap *bitswap.Bitswap
}

func newBarePeer(t testing.TB, ds datastore.Batching) *barePeer {
	t.Helper()
	h := newHost(t)
	bs := blockstore.NewBlockstore(ds)
	bswap := bitswap.New(context.Background(), bsnet.NewFromIpfsHost(h), nil, bs)
	t.Cleanup(func() { _ = bswap.Close() })
	return &barePeer{h: h, bs: bs, bswap: bswap}
}

func (b *barePeer) addr() peer.AddrInfo { return peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()} }

// addKuboStyle imports r as kubo does by default: CIDv0, 256 KiB dag-pb
// leaves (no raw leaves), a balanced DAG.
func (b *barePeer) addKuboStyle(t testing.TB, r io.Reader) cid.Cid {
	t.Helper()
	dag := merkledag.NewDAGService(blockservice.New(b.bs, nil))
	params := helpers.DagBuilderParams{Maxlinks: helpers.DefaultLinksPerBlock, Dagserv: dag, CidBuilder: merkledag.V0CidPrefix()}
	db, err := params.New(chunker.NewSizeSplitter(r, 256<<10))
	if err != nil {
		t.Fatal(err)
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		t.Fatal(err)
	}
	return nd.Cid()
}

// fetchAll has the bare peer fetch the DAG under c with bitswap from
// whoever it is connected to, and returns the file's SHA-256.
func (b *barePeer) fetchAll(t testing.TB, ctx context.Context, c cid.Cid) [32]byte {
	t.Helper()
	dag := merkledag.NewDAGService(blockservice.New(b.bs, b.bswap))
	if err := merkledag.FetchGraph(ctx, c, dag); err != nil {
		t.Fatal(err)
	}
	nd, err := dag.Get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	r, err := uio.NewDagReader(ctx, nd, merkledag.NewDAGService(blockservice.New(b.bs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return sumOf(t, r)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
