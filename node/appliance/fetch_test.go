package appliance

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestRoundTrip moves a few hundred MiB between two nodes, each with its
// own badger, over TCP on loopback, by each transport, and compares hashes.
// APPLIANCE_ROUNDTRIP_MIB sets the size (default 256 MiB; 32 MiB under the
// race detector, which slows the transfer about tenfold).
func TestRoundTrip(t *testing.T) {
	def := int64(256 << 20)
	if raceEnabled {
		def = 32 << 20
	}
	size := envMiB("APPLIANCE_ROUNDTRIP_MIB", def)
	a := newNode(t, nodeOpts{ds: badgerDS(t)})
	start := time.Now()
	info, sum := importPRNG(t, a.Service, 42, size)
	t.Logf("import %d MiB: %v", size>>20, time.Since(start))
	for _, tr := range []Transport{TransportAuto, TransportBitswap} {
		t.Run(tr.String(), func(t *testing.T) {
			b := newNode(t, nodeOpts{ds: badgerDS(t)})
			var calls int
			var last uint64
			start := time.Now()
			got, err := b.Fetch(context.Background(), info.CID, FetchOptions{
				Peers:     []peer.AddrInfo{a.addr()},
				Transport: tr,
				Meta:      Meta{Name: "web.qcow2"},
				Progress: func(done, total uint64) {
					calls++
					last = done
					if total != uint64(size) && done > 0 {
						t.Errorf("progress total %d, want %d", total, size)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			el := time.Since(start)
			t.Logf("fetch %d MiB by %s: %v (%.0f MB/s)", size>>20, tr, el, float64(size)/el.Seconds()/1e6)
			if got.Size != uint64(size) || !got.Pinned || got.Name != "web.qcow2" || !got.CID.Equals(info.CID) {
				t.Errorf("info %+v", got)
			}
			if calls == 0 || last != uint64(size) {
				t.Errorf("progress: %d calls, last %d", calls, last)
			}
			if openSum(t, b.Service, info.CID) != sum {
				t.Fatal("fetched bytes differ")
			}
			if st := b.Stats(); st.BytesFetched < uint64(size) {
				t.Errorf("stats %+v", st)
			}
			// Fetching again fetches nothing.
			before := b.Stats().BlocksFetched
			if _, err := b.Fetch(context.Background(), info.CID, FetchOptions{Transport: tr}); err != nil {
				t.Fatal(err)
			}
			if n := b.Stats().BlocksFetched - before; n != 0 {
				t.Errorf("a second fetch fetched %d blocks", n)
			}
		})
	}
}

// dagBlocks lists the distinct blocks of a local DAG, in walk order.
func dagBlocks(t testing.TB, s *Service, root cid.Cid) []cid.Cid {
	t.Helper()
	var out []cid.Cid
	w := s.newLocalWalk(0, func(c cid.Cid, _ int) { out = append(out, c) })
	if _, err := w.size(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	return out
}

// countLocal counts the blocks of cs that a service holds.
func countLocal(t testing.TB, s *Service, cs []cid.Cid) int {
	t.Helper()
	n := 0
	for _, c := range cs {
		ok, err := s.bstore.Has(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			n++
		}
	}
	return n
}

// TestInterruptedFetch cancels a fetch midway, restarts the fetching node
// (a new host and Service over the reopened badger database) and fetches
// again: the second fetch transfers exactly the blocks that were missing.
func TestInterruptedFetch(t *testing.T) {
	for _, tr := range []Transport{TransportStream, TransportBitswap} {
		t.Run(tr.String(), func(t *testing.T) {
			size := int64(24 << 20)
			if raceEnabled {
				size = 12 << 20
			}
			cfg := testConfig()
			cfg.ChunkSize = 256 << 10
			cfg.WindowBytes = 2 << 20
			a := newNode(t, nodeOpts{cfg: &cfg})
			info, sum := importPRNG(t, a.Service, 9, size)
			all := dagBlocks(t, a.Service, info.CID)

			dir := t.TempDir()
			db := openDB(t, dir)
			b := newNode(t, nodeOpts{cfg: &cfg, ds: db.Datastore("appliance")})
			ctx, cancel := context.WithCancel(context.Background())
			_, err := b.Fetch(ctx, info.CID, FetchOptions{Peers: []peer.AddrInfo{a.addr()}, Transport: tr, Progress: func(done, _ uint64) {
				if done >= uint64(size)/2 {
					cancel()
				}
			}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted fetch: %v, want context.Canceled", err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			_ = b.h.Close()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			// The restarted node.
			b2 := newNode(t, nodeOpts{cfg: &cfg, ds: badgerDSAt(t, dir)})
			have := countLocal(t, b2.Service, all)
			if have == 0 || have == len(all) {
				t.Fatalf("after the interruption %d of %d blocks are here; want some", have, len(all))
			}
			if _, err := b2.Fetch(context.Background(), info.CID, FetchOptions{Peers: []peer.AddrInfo{a.addr()}, Transport: tr}); err != nil {
				t.Fatal(err)
			}
			if got, want := b2.Stats().BlocksFetched, uint64(len(all)-have); got != want {
				t.Errorf("the resumed fetch transferred %d blocks; %d were missing", got, want)
			}
			if openSum(t, b2.Service, info.CID) != sum {
				t.Fatal("fetched bytes differ")
			}
			t.Logf("%d of %d blocks survived the restart", have, len(all))
		})
	}
}

// putLyingDAG stores leaves of leafSize pseudo-random bytes under a root
// that declares only declaredPerLeaf bytes for each, and returns the root.
func putLyingDAG(t testing.TB, s *Service, leaves, leafSize int, declaredPerLeaf uint64) cid.Cid {
	t.Helper()
	ctx := context.Background()
	fs := unixfs.NewFSNode(unixfs.TFile)
	root := merkledag.NodeWithData(nil)
	if err := root.SetCidBuilder(cidBuilder); err != nil {
		t.Fatal(err)
	}
	p := newPRNG(77, int64(leaves*leafSize))
	for range leaves {
		buf := make([]byte, leafSize)
		if _, err := p.Read(buf); err != nil {
			t.Fatal(err)
		}
		leaf, err := merkledag.NewRawNodeWPrefix(buf, cidBuilder)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.bstore.Put(ctx, leaf); err != nil {
			t.Fatal(err)
		}
		if err := root.AddRawLink("", &ipld.Link{Cid: leaf.Cid(), Size: uint64(leafSize)}); err != nil {
			t.Fatal(err)
		}
		fs.AddBlockSize(declaredPerLeaf)
	}
	data, err := fs.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	root.SetData(data)
	if err := s.bstore.Put(ctx, root); err != nil {
		t.Fatal(err)
	}
	return root.Cid()
}

func TestSizeLimit(t *testing.T) {
	const leaf = 256 << 10
	cfg := testConfig()
	cfg.WindowBytes = 1 << 20
	a := newNode(t, nodeOpts{cfg: &cfg})
	honest, _ := importPRNG(t, a.Service, 3, 40*leaf)
	lying := putLyingDAG(t, a.Service, 40, leaf, 1024)         // declares 40 KiB, holds 10 MiB
	smallLie := putLyingDAG(t, a.Service, 4, 64<<10, 64<<10-1) // declares 4 bytes too few

	cases := []struct {
		name      string
		root      cid.Cid
		max       uint64
		want      error
		wantText  string
		maxBlocks uint64 // blocks accepted at most before the fetch stops
	}{
		{"honest root over the limit", honest.CID, 4 * leaf, ErrTooLarge, "the root declares", 1},
		{"lying root", lying, 4 * leaf, ErrTooLarge, "received", 1 + 5},
		{"lying root within the limit", smallLie, 1 << 20, ErrMalformed, "declares", 5},
	}
	for _, tc := range cases {
		for _, tr := range []Transport{TransportStream, TransportBitswap} {
			t.Run(tc.name+"/"+tr.String(), func(t *testing.T) {
				b := newNode(t, nodeOpts{cfg: &cfg})
				_, err := b.Fetch(context.Background(), tc.root, FetchOptions{Peers: []peer.AddrInfo{a.addr()}, MaxSize: tc.max, Transport: tr})
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("fetch: %v; want %v saying %q", err, tc.want, tc.wantText)
				}
				if n := b.Stats().BlocksFetched; n > tc.maxBlocks {
					t.Errorf("accepted %d blocks before stopping; want at most %d", n, tc.maxBlocks)
				}
				if _, err := b.Get(context.Background(), tc.root); !errors.Is(err, ErrNotFound) {
					t.Errorf("a refused appliance has a record: %v", err)
				}
				t.Logf("%v", err)
			})
		}
	}
	// The honest appliance passes with a limit of exactly its size.
	b := newNode(t, nodeOpts{cfg: &cfg})
	if _, err := b.Fetch(context.Background(), honest.CID, FetchOptions{Peers: []peer.AddrInfo{a.addr()}, MaxSize: 40 * leaf}); err != nil {
		t.Fatalf("fetch at exactly the limit: %v", err)
	}
}

// corruptDS returns wrong bytes for one key, as a disk or a liar would:
// the blockstore above it does not hash on read.
type corruptDS struct {
	datastore.Batching
	mu  sync.Mutex
	bad datastore.Key
}

func (d *corruptDS) corrupt(c cid.Cid) {
	d.mu.Lock()
	d.bad = datastore.NewKey("/blocks").Child(dshelp.MultihashToDsKey(c.Hash()))
	d.mu.Unlock()
}

func (d *corruptDS) Get(ctx context.Context, k datastore.Key) ([]byte, error) {
	v, err := d.Batching.Get(ctx, k)
	d.mu.Lock()
	bad := d.bad
	d.mu.Unlock()
	if err == nil && k.Equal(bad) {
		v = bytes.Clone(v)
		v[len(v)/2] ^= 0x55
	}
	return v, err
}

func TestCorruptPeer(t *testing.T) {
	const size = 8 << 20
	cfg := testConfig()
	cfg.ChunkSize = 256 << 10
	cds := &corruptDS{Batching: mapDS()}
	liar := newNode(t, nodeOpts{cfg: &cfg, ds: cds})
	info, sum := importPRNG(t, liar.Service, 11, size)
	blocks := dagBlocks(t, liar.Service, info.CID)
	bad := blocks[len(blocks)/2]
	cds.corrupt(bad)
	honest := newNode(t, nodeOpts{cfg: &cfg})
	importPRNG(t, honest.Service, 11, size)

	for _, tr := range []Transport{TransportAuto, TransportBitswap} {
		t.Run("with an honest peer/"+tr.String(), func(t *testing.T) {
			c := cfg
			c.IdleTimeout = 15 * time.Second
			b := newNode(t, nodeOpts{cfg: &c})
			_, err := b.Fetch(context.Background(), info.CID, FetchOptions{Peers: []peer.AddrInfo{liar.addr(), honest.addr()}, Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			if openSum(t, b.Service, info.CID) != sum {
				t.Fatal("fetched bytes differ")
			}
		})
	}
	t.Run("alone", func(t *testing.T) {
		c := cfg
		c.IdleTimeout = 1500 * time.Millisecond
		b := newNode(t, nodeOpts{cfg: &c})
		_, err := b.Fetch(context.Background(), info.CID, FetchOptions{Peers: []peer.AddrInfo{liar.addr()}})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bad.String()) || !strings.Contains(err.Error(), liar.h.ID().String()) {
			t.Fatalf("fetch from a liar: %v; want ErrCorrupt naming the block and the peer", err)
		}
		if !errors.Is(err, ErrStalled) {
			t.Errorf("fetch from a liar: %v; want bitswap's ErrStalled beside", err)
		}
		if ok, _ := b.bstore.Has(context.Background(), bad); ok {
			t.Fatal("the corrupted block was stored")
		}
		t.Log(err)
	})
}

// silentHost accepts the DAG stream and bitswap protocols and never
// answers.
func silentHost(t *testing.T) peer.AddrInfo {
	h := newHost(t)
	var mu sync.Mutex
	var streams []network.Stream
	hold := func(s network.Stream) {
		mu.Lock()
		streams = append(streams, s)
		mu.Unlock()
	}
	h.SetStreamHandler(DAGProtocol, hold)
	for _, p := range bitswapProtocols {
		h.SetStreamHandler(p, hold)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range streams {
			_ = s.Reset()
		}
	})
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// TestSilentPeer: a peer that stops answering ends the fetch with
// ErrStalled after IdleTimeout, measured on the injected clock.
func TestSilentPeer(t *testing.T) {
	mock := clock.NewMock()
	cfg := testConfig()
	cfg.IdleTimeout = time.Minute
	b := newNode(t, nodeOpts{cfg: &cfg, clk: mock})
	c, _ := cid.Decode("bafybeicpdsxfc4ki7bznfjzzraunlalfsohovmik5y2p2fjyf3xqlvpxeu")
	silent := silentHost(t)

	done := make(chan error, 1)
	go func() {
		_, err := b.Fetch(context.Background(), c, FetchOptions{Peers: []peer.AddrInfo{silent}})
		done <- err
	}()
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), silent.ID.String()) {
				t.Fatalf("fetch from a silent peer: %v; want ErrStalled naming the peer", err)
			}
			t.Logf("after %v of real time: %v", time.Since(start), err)
			return
		case <-tick.C:
			mock.Add(10 * time.Second)
			if time.Since(start) > 20*time.Second {
				t.Fatal("the fetch from a silent peer did not end")
			}
		}
	}
}

func TestFetchNoSource(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	b := newNode(t, nodeOpts{cfg: &cfg})
	c, _ := cid.Decode("bafybeicpdsxfc4ki7bznfjzzraunlalfsohovmik5y2p2fjyf3xqlvpxeu")
	_, err := b.Fetch(context.Background(), c, FetchOptions{})
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "name a peer") {
		t.Fatalf("fetch with no source: %v", err)
	}
	// A peer that does not have it answers "don't have" on the stream;
	// bitswap then waits for the idle timeout.
	a := newNode(t, nodeOpts{cfg: &cfg})
	_, err = b.Fetch(context.Background(), c, FetchOptions{Peers: []peer.AddrInfo{a.addr()}})
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrStalled) {
		t.Fatalf("fetch from a peer without it: %v", err)
	}
	t.Log(err)
}

func TestFetchRejectsBadArguments(t *testing.T) {
	b := newNode(t, nodeOpts{})
	dagCBOR, _ := cid.Decode("bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua")
	ok, _ := cid.Decode("bafybeicpdsxfc4ki7bznfjzzraunlalfsohovmik5y2p2fjyf3xqlvpxeu")
	cases := []struct {
		name string
		c    cid.Cid
		opts FetchOptions
		want error
	}{
		{"undefined", cid.Undef, FetchOptions{}, ErrInvalid},
		{"dag-cbor", dagCBOR, FetchOptions{}, ErrMalformed},
		{"bad meta", ok, FetchOptions{Meta: Meta{Name: "a/b"}}, ErrInvalid},
		{"bad reason", ok, FetchOptions{Pin: "\x01"}, ErrInvalid},
		{"bad transport", ok, FetchOptions{Transport: 9}, ErrInvalid},
	}
	for _, tc := range cases {
		if _, err := b.Fetch(context.Background(), tc.c, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestCloseDuringFetch: Close cancels a fetch under way and waits for it.
func TestCloseDuringFetch(t *testing.T) {
	b := newNode(t, nodeOpts{})
	c, _ := cid.Decode("bafybeicpdsxfc4ki7bznfjzzraunlalfsohovmik5y2p2fjyf3xqlvpxeu")
	silent := silentHost(t)
	done := make(chan error, 1)
	go func() {
		_, err := b.Fetch(context.Background(), c, FetchOptions{Peers: []peer.AddrInfo{silent}})
		done <- err
	}()
	// The fetch has begun once it holds its share of the GC lock.
	waitFor(t, 5*time.Second, "the fetch to start", func() bool {
		if b.gcSem.TryAcquire(gcWeight) {
			b.gcSem.Release(gcWeight)
			return false
		}
		return true
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
			t.Fatalf("fetch after Close: %v", err)
		}
	default:
		t.Fatal("Close returned before the fetch ended")
	}
}

// TestBitswapSmallBlocks fetches by bitswap a DAG of 64 KiB blocks, of
// which an 8 MiB window holds 128 wants: more than a boxo session keeps
// live, which stalled the fetch at its tail before the bitswap source
// capped what it asks for at once at 64.
func TestBitswapSmallBlocks(t *testing.T) {
	cfg := testConfig()
	cfg.ChunkSize = 64 << 10
	if w := min(cfg.WindowBytes, bitswapWindowBytes) / int(cfg.ChunkSize); w <= bitswapMaxInflight {
		t.Fatalf("the window (%d blocks) no longer exceeds the bitswap cap (%d): the test tests nothing", w, bitswapMaxInflight)
	}
	a := newNode(t, nodeOpts{cfg: &cfg})
	info, sum := importPRNG(t, a.Service, 11, 16<<20)
	b := newNode(t, nodeOpts{cfg: &cfg})
	if _, err := b.Fetch(context.Background(), info.CID, FetchOptions{Peers: []peer.AddrInfo{a.addr()}, Transport: TransportBitswap}); err != nil {
		t.Fatal(err)
	}
	if openSum(t, b.Service, info.CID) != sum {
		t.Fatal("the fetched bytes differ")
	}
}
