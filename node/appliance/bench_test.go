package appliance

// Benchmarks that measure this package against the machine's own limits in
// the same run, so that a ratio survives a noisy machine:
//
//	go test ./node/appliance -run '^$' -bench . -benchtime 5x
//	APPLIANCE_BENCH_MIB=1024 go test ./node/appliance -run '^$' -bench . -benchtime 3x
//
// APPLIANCE_BENCH_MIB sets the file size (default 256 MiB). Each benchmark
// prints its variants' rates and their ratios to the limit.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func benchSize() int64 { return envMiB("APPLIANCE_BENCH_MIB", 256<<20) }

// meter times the variants of a benchmark. The variants run interleaved,
// one round after another, so that a shared machine's load drifts over all
// of them alike; each is timed by the wall clock and by this process's CPU
// time, which a busy neighbour disturbs less.
type meter struct {
	size  int64
	names []string
	wall  map[string]time.Duration
	cpu   map[string]time.Duration
}

func newMeter(size int64) *meter {
	return &meter{size: size, wall: map[string]time.Duration{}, cpu: map[string]time.Duration{}}
}

// time runs f once as variant name; setup done before f is not counted.
func (m *meter) time(name string, f func()) {
	if _, ok := m.wall[name]; !ok {
		m.names = append(m.names, name)
	}
	runtime.GC()
	c0, t0 := cpuTime(), time.Now()
	f()
	m.wall[name] += time.Since(t0)
	m.cpu[name] += cpuTime() - c0
}

func (m *meter) rate(name string, rounds int) (wall, cpu float64) {
	bytes := float64(m.size) * float64(rounds) / 1e6
	wall = bytes / m.wall[name].Seconds()
	if c := m.cpu[name].Seconds(); c > 0 {
		cpu = bytes / c
	}
	return wall, cpu
}

// report prints every variant's rates and its ratio to the limit named
// base, and reports the ratio of each variant as a benchmark metric.
func (m *meter) report(b *testing.B, base string) {
	baseWall, baseCPU := m.rate(base, b.N)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s, %d MiB, %d rounds:\n", b.Name(), m.size>>20, b.N)
	for _, n := range m.names {
		w, c := m.rate(n, b.N)
		fmt.Fprintf(&sb, "  %-32s %7.0f MB/s %7.0f MB/cpu-s", n, w, c)
		if n != base {
			fmt.Fprintf(&sb, "  %4.0f%% of %s (%3.0f%% by CPU)", 100*w/baseWall, base, 100*c/baseCPU)
			b.ReportMetric(100*w/baseWall, "%"+n)
		}
		sb.WriteByte('\n')
	}
	fmt.Print(sb.String())
}

// BenchmarkImport: Import into a fresh badger datastore (the store's
// adapter, the node's options) at two chunk sizes, beside SHA-256 over the
// same bytes on one core and writing the same bytes as 1 MiB values into a
// fresh badger datastore in 8 MiB batches, synced every 64 MiB as the
// import's writer does (the reference: with the store's drop-behind, a
// synced writer is the faster one) and not synced at all. Target: import
// at least 80% of the badger write rate.
func BenchmarkImport(b *testing.B) {
	size := benchSize()
	m := newMeter(size)
	for range b.N {
		m.time("sha256", func() {
			if _, err := io.CopyBuffer(sha256.New(), newPRNG(1, size), make([]byte, 1<<20)); err != nil {
				b.Fatal(err)
			}
		})
		ds := badgerDS(b)
		m.time("badger-write-1MiB", func() { writeValues(b, ds, newPRNG(1, size), 64<<20) })
		ds = badgerDS(b)
		m.time("badger-write-1MiB-unsynced", func() { writeValues(b, ds, newPRNG(1, size), 0) })
		for _, chunk := range []int64{256 << 10, 1 << 20} {
			cfg := testConfig()
			cfg.ChunkSize = chunk
			s, err := New(cfg, newHost(b), badgerDS(b), nil, clock.New(), testLogger(b))
			if err != nil {
				b.Fatal(err)
			}
			m.time(fmt.Sprintf("import-chunk-%dKiB", chunk>>10), func() {
				if _, err := s.Import(context.Background(), newPRNG(1, size), Meta{}, nil); err != nil {
					b.Fatal(err)
				}
			})
			_ = s.Close()
		}
	}
	m.report(b, "badger-write-1MiB")
}

// writeValues writes r's bytes as 1 MiB values under distinct keys, in
// batches of 8 MiB, synced every syncEvery bytes (0: never), as the
// import's writer does.
func writeValues(b testing.TB, ds datastore.Batching, r io.Reader, syncEvery int) {
	ctx := context.Background()
	batch, err := ds.Batch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pending, unsynced := 0, 0
	for i := 0; ; i++ {
		v := make([]byte, 1<<20)
		n, err := io.ReadFull(r, v)
		if n > 0 {
			if err := batch.Put(ctx, datastore.NewKey(fmt.Sprintf("/blocks/%08d", i)), v[:n]); err != nil {
				b.Fatal(err)
			}
			pending += n
		}
		if pending >= 8<<20 || (err != nil && pending > 0) {
			if err := batch.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			if unsynced += pending; syncEvery > 0 && (unsynced >= syncEvery || err != nil) {
				if err := ds.Sync(ctx, datastore.NewKey("/")); err != nil {
					b.Fatal(err)
				}
				unsynced = 0
			}
			if batch, err = ds.Batch(ctx); err != nil {
				b.Fatal(err)
			}
			pending = 0
		}
		if err != nil {
			return
		}
	}
}

// BenchmarkTransfer: a fetch between two nodes over real TCP on loopback
// (each with its own badger), by DAG stream and by bitswap, at two chunk
// sizes, beside a raw TCP copy of the same bytes hashed with SHA-256 at the
// receiver (the least work any verified transfer does), the same over one
// libp2p stream, and writing the bytes to badger (which the receiver of a
// fetch must do: its ceiling). Target: at least 40% of the hashed TCP copy.
func BenchmarkTransfer(b *testing.B) {
	size := benchSize()
	// The raw senders send from memory; 64 MiB of it is repeated.
	src := make([]byte, min(size, 64<<20))
	if _, err := io.ReadFull(newPRNG(3, int64(len(src))), src); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	h1, h2 := newHost(b), newHost(b)
	const proto = "/spotmesh/bench-copy/1"
	h1.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		if err := sendRepeated(s, src, size); err != nil {
			_ = s.Reset()
		}
	})
	if err := h2.Connect(context.Background(), peer.AddrInfo{ID: h1.ID(), Addrs: h1.Addrs()}); err != nil {
		b.Fatal(err)
	}
	type holder struct {
		a    *testNode
		info Info
		sum  [32]byte
		cfg  Config
	}
	holders := map[int64]holder{}
	for _, chunk := range []int64{256 << 10, 1 << 20} {
		cfg := testConfig()
		cfg.ChunkSize = chunk
		a := newNode(b, nodeOpts{cfg: &cfg, ds: badgerDS(b)})
		info, sum := importPRNG(b, a.Service, 5, size)
		holders[chunk] = holder{a, info, sum, cfg}
	}

	m := newMeter(size)
	b.ResetTimer()
	for range b.N {
		m.time("tcp-copy+sha256", func() {
			done := make(chan error, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				done <- sendRepeated(c, src, size)
			}()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			receiveHashed(b, c, size)
			c.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
		m.time("libp2p-stream+sha256", func() {
			s, err := h2.NewStream(context.Background(), h1.ID(), proto)
			if err != nil {
				b.Fatal(err)
			}
			receiveHashed(b, s, size)
			s.Close()
		})
		ds := badgerDS(b)
		m.time("badger-write-1MiB", func() { writeValues(b, ds, newPRNG(1, size), 64<<20) })
		for _, chunk := range []int64{256 << 10, 1 << 20} {
			hd := holders[chunk]
			for _, tr := range []Transport{TransportStream, TransportBitswap} {
				c := newNode(b, nodeOpts{cfg: &hd.cfg, ds: badgerDS(b)})
				m.time(fmt.Sprintf("fetch-%s-chunk-%dKiB", tr, chunk>>10), func() {
					if _, err := c.Fetch(context.Background(), hd.info.CID, FetchOptions{Peers: []peer.AddrInfo{hd.a.addr()}, Transport: tr}); err != nil {
						b.Fatal(err)
					}
				})
				if openSum(b, c.Service, hd.info.CID) != hd.sum {
					b.Fatal("fetched bytes differ")
				}
				_ = c.Close()
				_ = c.h.Close()
			}
		}
	}
	m.report(b, "tcp-copy+sha256")
}

func sendRepeated(w io.Writer, src []byte, size int64) error {
	for left := size; left > 0; {
		n := min(left, int64(len(src)))
		if _, err := w.Write(src[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

func receiveHashed(b *testing.B, r io.Reader, size int64) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 1<<20))
	if err != nil || n != size {
		b.Fatalf("received %d of %d bytes: %v", n, size, err)
	}
}
