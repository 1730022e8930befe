package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	ds "github.com/ipfs/go-datastore"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rawFsyncRate measures this disk: small appends to a file in dir, each
// followed by fsync, for about d. It is the ceiling of one-fsync-per-commit.
func rawFsyncRate(b *testing.B, dir string, d time.Duration) float64 {
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 128)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkUpdateDurable: 64 concurrent writers of small records with
// durable Updates. Reports updates/s, fsync rounds per update, and the raw
// fsync rate of the same disk measured in the same run. The sub-benchmarks
// compare the group-commit syncer with badger's own SyncWrites and with
// UpdateSoft (no fsync).
func BenchmarkUpdateDurable(b *testing.B) {
	for _, mode := range []string{"groupcommit", "badger-syncwrites", "soft"} {
		b.Run(mode, func(b *testing.B) {
			opts := DefaultOptions(b.TempDir())
			opts.syncEveryWrite = mode == "badger-syncwrites"
			db, err := Open(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			raw := rawFsyncRate(b, b.TempDir(), 300*time.Millisecond)
			update := db.Update
			if mode == "soft" {
				update = db.UpdateSoft
			}
			val := bytes.Repeat([]byte("r"), 200)
			var seq atomic.Int64
			r0 := db.syncRounds()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 writers
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var k [8]byte
				for pb.Next() {
					binary.BigEndian.PutUint64(k[:], uint64(seq.Add(1)))
					key := append(Key("bench"), k[:]...)
					if err := update(func(tx *Txn) error { return tx.Set(key, val) }); err != nil {
						b.Error(err)
						return
					}
				}
			})
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "updates/s")
			b.ReportMetric(raw, "raw-fsyncs/s")
			if mode == "groupcommit" {
				b.ReportMetric(float64(db.syncRounds()-r0)/float64(b.N), "rounds/update")
			}
		})
	}
}

// BenchmarkBookMemory fills an order book cache of 100,000 offers (~1 KiB
// each, as soft state, in a burst), reads it back (a full scan and random
// gets) and reports the memory of the process: heap (in use, and live after
// a GC), peak resident memory (VmHWM) and resident memory split into
// anonymous (heap, memtables) and file-backed (mmapped tables, which the
// kernel can reclaim).
// Run it alone: go test -run=^$ -bench=BookMemory -benchtime=1x ./store/
func BenchmarkBookMemory(b *testing.B) {
	for range b.N {
		opts := DefaultOptions(b.TempDir())
		db, err := Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		const offers, perTxn = 100_000, 500
		rng := rand.New(rand.NewPCG(1, 2))
		val := make([]byte, 1024)
		start := time.Now()
		for i := 0; i < offers; i += perTxn {
			err := db.UpdateSoft(func(tx *Txn) error {
				for j := i; j < i+perTxn; j++ {
					for k := range val {
						val[k] = byte('a' + rng.IntN(8)) // compressible, like CBOR
					}
					if err := tx.Set(Key("book", fmt.Sprintf("seller%03d", j%500), fmt.Sprintf("offer%06d", j)), val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("write %v", time.Since(start))
		start = time.Now()
		n := 0
		if err := db.View(func(tx *Txn) error {
			return tx.Iterate(Prefix("book"), func(k, v []byte) error { n++; return nil })
		}); err != nil || n != offers {
			b.Fatalf("scan: %d offers, %v", n, err)
		}
		b.Logf("scan %v", time.Since(start))
		start = time.Now()
		for range 20_000 {
			j := rng.IntN(offers)
			if err := db.View(func(tx *Txn) error {
				_, err := tx.Get(Key("book", fmt.Sprintf("seller%03d", j%500), fmt.Sprintf("offer%06d", j)))
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("gets %v", time.Since(start))
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MiB")

		b.ReportMetric(procStatusMiB(b, "VmHWM"), "peak-rss-MiB")
		b.ReportMetric(procStatusMiB(b, "VmRSS"), "rss-MiB")
		b.ReportMetric(procStatusMiB(b, "RssAnon"), "rss-anon-MiB")
		b.ReportMetric(procStatusMiB(b, "RssFile"), "rss-file-MiB")
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// procStatusMiB reads a "kB" field of /proc/self/status, in MiB.
func procStatusMiB(b *testing.B, field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			b.Fatal(err)
		}
		return kb / 1024
	}
	b.Fatalf("%s not in /proc/self/status", field)
	return 0
}

// BenchmarkReadDuringBulkWrite: small reads (View of one record, as the
// market and lease paths do) while a bulk writer commits 1 MiB values in
// batches through the go-datastore adapter, flat out, as an appliance
// fetch or import does. Badger starts every read transaction by waiting
// until the commits before it are applied (value log written, memtable
// updated), so a read waits out the batch in flight; and when a value-log
// file fills, badger syncs all of it inside a commit. A writer that syncs
// every 16 or 64 MiB itself (node/appliance's writer: 64) keeps the dirty
// data small, so the syncs at file rotation are short, and while it
// waits for its own sync no commit is in flight for readers to wait on.
// Reports the reads' p50/p99/max in ms and the writer's MB/s.
func BenchmarkReadDuringBulkWrite(b *testing.B) {
	for _, v := range []struct {
		batch, syncEvery int
	}{
		{1 << 20, 0}, {8 << 20, 0}, {32 << 20, 0}, {8 << 20, 16 << 20}, {8 << 20, 64 << 20}, {16 << 20, 64 << 20}, {32 << 20, 64 << 20},
	} {
		batch := v.batch
		b.Run(fmt.Sprintf("batch-%dMiB-sync-every-%dMiB", batch>>20, v.syncEvery>>20), func(b *testing.B) {
			db, err := Open(DefaultOptions(b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *Txn) error { return tx.Set([]byte("rec"), []byte("a small record")) }); err != nil {
				b.Fatal(err)
			}
			ds := db.Datastore("bulk")
			val := make([]byte, 1<<20)
			for i := range val {
				val[i] = byte(i * 31)
			}
			stop := make(chan struct{})
			done := make(chan float64)
			go func() {
				ctx := b.Context()
				start, written, synced := time.Now(), 0, 0
				for i := 0; ; {
					select {
					case <-stop:
						done <- float64(written) / 1e6 / time.Since(start).Seconds()
						return
					default:
					}
					bt, err := ds.Batch(ctx)
					if err != nil {
						b.Error(err)
						done <- 0
						return
					}
					for n := 0; n < batch; n += len(val) {
						if err := bt.Put(ctx, dsKey(i), val); err != nil {
							b.Error(err)
						}
						i++
					}
					if err := bt.Commit(ctx); err != nil {
						b.Error(err)
					}
					written += batch
					if v.syncEvery > 0 && written-synced >= v.syncEvery {
						synced = written
						if err := db.Sync(); err != nil {
							b.Error(err)
						}
					}
				}
			}()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := db.View(func(tx *Txn) error { _, err := tx.Get([]byte("rec")); return err }); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				time.Sleep(time.Millisecond) // a read now and then, not a read loop
			}
			b.StopTimer()
			close(stop)
			rate := <-done
			slices.Sort(lat)
			q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / 1e6 }
			b.ReportMetric(q(0.5), "read_p50_ms")
			b.ReportMetric(q(0.99), "read_p99_ms")
			b.ReportMetric(q(1), "read_max_ms")
			b.ReportMetric(rate, "write_MB/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func dsKey(i int) ds.Key { return ds.NewKey(fmt.Sprintf("/v/%09d", i)) }

// BenchmarkBulkWrite: an appliance's worth of 1 MiB values (512 MiB, or
// STORE_BENCH_MIB) written through the go-datastore adapter in 8 MiB
// batches and synced every 64 MiB, as node/appliance's writer does, into a
// fresh database each round, with the value log's pages kept in memory
// after each sync and freed (the default, dropbehind_linux.go) in turn.
// Reports MB/s and CPU seconds per GB for each.
func BenchmarkBulkWrite(b *testing.B) {
	size := 512 << 20
	if s := os.Getenv("STORE_BENCH_MIB"); s != "" {
		mib, err := strconv.Atoi(s)
		if err != nil || mib < 64 {
			b.Fatalf("STORE_BENCH_MIB=%q: want a number of MiB, at least 64", s)
		}
		size = mib << 20
	}
	val := make([]byte, 1<<20)
	for i := range val {
		val[i] = byte(i * 31)
	}
	variants := []struct {
		name string
		keep bool
	}{{"kept-cached", true}, {"dropped", false}}
	elapsed := make([]time.Duration, len(variants))
	cpu := make([]time.Duration, len(variants))
	b.ResetTimer()
	for range b.N {
		for i, v := range variants {
			opts := DefaultOptions(b.TempDir())
			opts.KeepValueLogCached = v.keep
			opts.GCInterval = 0
			db, err := Open(opts)
			if err != nil {
				b.Fatal(err)
			}
			d := db.Datastore("bulk")
			ctx := b.Context()
			cpu0, start := cpuTime(b), time.Now()
			for n := 0; n < size; {
				bt, err := d.Batch(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for end := n + 8<<20; n < end && n < size; n += len(val) {
					if err := bt.Put(ctx, dsKey(n>>20), val); err != nil {
						b.Fatal(err)
					}
				}
				if err := bt.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				if n%(64<<20) == 0 || n >= size {
					if err := db.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			elapsed[i] += time.Since(start)
			cpu[i] += cpuTime(b) - cpu0
			if err := db.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	for i, v := range variants {
		gb := float64(size) * float64(b.N) / 1e9
		b.ReportMetric(gb*1e3/elapsed[i].Seconds(), v.name+"_MB/s")
		b.ReportMetric(cpu[i].Seconds()/gb, v.name+"_cpu-s/GB")
	}
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
