package appliance

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// heapLimit is the bound on the peak heap while importing or fetching an
// appliance of any size.
const heapLimit = 256 << 20

// peakHeap runs f while sampling the heap every few milliseconds and
// returns the largest HeapAlloc seen (both nodes live in this process, so
// a fetch counts the sender and the receiver).
func peakHeap(f func()) uint64 {
	runtime.GC()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return peak
}

// TestMemory: the peak heap while importing and while fetching stays
// under 256 MiB. The default run moves 256 MiB (32 MiB under the race
// detector); APPLIANCE_MEMTEST_MIB=1024 runs the 1 GiB case.
func TestMemory(t *testing.T) {
	def := int64(256 << 20)
	if raceEnabled {
		def = 32 << 20
	}
	size := envMiB("APPLIANCE_MEMTEST_MIB", def)
	a := newNode(t, nodeOpts{ds: badgerDS(t)})
	var info Info
	var sum [32]byte
	peak := peakHeap(func() { info, sum = importPRNG(t, a.Service, 61, size) })
	t.Logf("import of %d MiB: peak heap %d MiB", size>>20, peak>>20)
	if peak > heapLimit {
		t.Errorf("import of %d MiB: peak heap %d MiB, over %d MiB", size>>20, peak>>20, heapLimit>>20)
	}
	for _, tr := range []Transport{TransportStream, TransportBitswap} {
		b := newNode(t, nodeOpts{ds: badgerDS(t)})
		peak := peakHeap(func() {
			if _, err := b.Fetch(context.Background(), info.CID, FetchOptions{Peers: []peer.AddrInfo{a.addr()}, Transport: tr}); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("fetch of %d MiB by %s: peak heap %d MiB", size>>20, tr, peak>>20)
		if peak > heapLimit {
			t.Errorf("fetch of %d MiB by %s: peak heap %d MiB, over %d MiB", size>>20, tr, peak>>20, heapLimit>>20)
		}
		if openSum(t, b.Service, info.CID) != sum {
			t.Fatal("fetched bytes differ")
		}
		_ = b.Close()
	}
}
