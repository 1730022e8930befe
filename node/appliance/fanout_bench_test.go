package appliance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/spotmesh/spotmesh/store"
)

// BenchmarkFanout: many sellers fetch the same appliance from one buyer at
// once (by the default transport: DAG streams to the buyer and to each
// other; APPLIANCE_FANOUT_TRANSPORT=bitswap for bitswap) while the buyer's
// upload is limited; the sellers are all connected to each other and can
// serve each other what they hold.
//
//	go test ./node/appliance -run '^$' -bench Fanout -benchtime 1x
//	APPLIANCE_FANOUT_MIB=64 APPLIANCE_FANOUT_MBPS=20 go test ./node/appliance -run '^$' -bench Fanout -benchtime 1x
//
// Every node is a libp2p host over TCP on 127.0.0.1 with its own badger
// database. The buyer sits behind a throttleProxy: its host advertises
// only the proxy's address and the sellers dial it there, so everything
// the buyer uploads passes one token bucket of APPLIANCE_FANOUT_MBPS
// MB/s (default 50) and is counted. The limit is the link: one seller
// alone (T1) takes the appliance's size over the rate; APPLIANCE_FANOUT_SELLERS
// fresh sellers (default 8) then fetch at once (T8, when the last one is
// done). Target: T8 < 3×T1, because the sellers serve each other, which
// shows as fewer than 8 copies leaving the buyer ("buyer-copies").
//
// Also reported: "peer-copies", the bytes the sellers served each other
// over the appliance's size; "dup-copies", bytes that arrived twice;
// "cores", the CPU time of the fan-out over its wall time (near 2 on two
// cores means the CPU, not the link, bounded it). Each seller's copy is
// read back and hashed against the original.
func BenchmarkFanout(b *testing.B) {
	size := envMiB("APPLIANCE_FANOUT_MIB", 256<<20)
	mbps := envInt("APPLIANCE_FANOUT_MBPS", 50)
	nSellers := envInt("APPLIANCE_FANOUT_SELLERS", 8)
	rateBps := float64(mbps) * 1e6

	proxy := newThrottleProxy(b, rateBps)
	bh := newHostBehind(b, proxy.addr)
	target, err := realTCPAddr(bh)
	if err != nil {
		b.Fatal(err)
	}
	proxy.setTarget(target)
	buyer := newNode(b, nodeOpts{host: bh, ds: badgerDS(b)})
	info, sum := importPRNG(b, buyer.Service, 11, size)
	via := peer.AddrInfo{ID: bh.ID(), Addrs: []ma.Multiaddr{proxy.addr}}
	env := fanoutEnv{proxy: proxy, buyer: via, root: info.CID, size: size, sum: sum, transport: TransportAuto}
	if os.Getenv("APPLIANCE_FANOUT_TRANSPORT") == "bitswap" {
		env.transport = TransportBitswap
	}

	var alone, all fanoutResult
	b.ResetTimer()
	for range b.N {
		alone.add(env.run(b, 1))
		all.add(env.run(b, nSellers))
	}
	b.StopTimer()

	n := float64(b.N)
	t1, t8 := alone.wall.Seconds()/n, all.wall.Seconds()/n
	sz := float64(size) * n
	fmt.Printf("%s: %d MiB, buyer upload %d MB/s (the link alone: %.1f s), transport %v, %d rounds\n",
		b.Name(), size>>20, mbps, float64(size)/rateBps, env.transport, b.N)
	fmt.Printf("  1 seller:   %6.1f s, %.2f copies left the buyer, %.2f cores\n",
		t1, float64(alone.proxyBytes)/sz, alone.cpu.Seconds()/alone.wall.Seconds())
	fmt.Printf("  %d sellers: %6.1f s (first done %.1f s, median %.1f s), %.2f copies left the buyer, %.2f served seller to seller, %.2f duplicates, %.2f cores\n",
		nSellers, t8, all.first.Seconds()/n, all.median.Seconds()/n,
		float64(all.proxyBytes)/sz, float64(all.peerBytes)/sz, float64(all.dupBytes)/sz, all.cpu.Seconds()/all.wall.Seconds())
	fmt.Printf("  T%d/T1 = %.2f (target < 3)\n", nSellers, t8/t1)
	b.ReportMetric(t1, "T1-s")
	b.ReportMetric(t8, "T8-s")
	b.ReportMetric(t8/t1, "T8/T1")
	b.ReportMetric(float64(all.proxyBytes)/sz, "buyer-copies")
	b.ReportMetric(float64(all.peerBytes)/sz, "peer-copies")
	b.ReportMetric(float64(all.dupBytes)/sz, "dup-copies")
	b.ReportMetric(all.cpu.Seconds()/all.wall.Seconds(), "cores")
}

// fanoutEnv is what every round of BenchmarkFanout shares: the buyer
// (reached through the proxy) and the appliance it holds.
type fanoutEnv struct {
	proxy *throttleProxy
	buyer peer.AddrInfo // the proxy's address only
	root  cid.Cid
	size  int64
	sum   [32]byte
	// transport of the sellers' fetches: the default (DAG streams to the
	// buyer and to the other sellers), or bitswap with
	// APPLIANCE_FANOUT_TRANSPORT=bitswap.
	transport Transport
}

// fanoutResult sums the rounds of one variant.
type fanoutResult struct {
	wall, first, median, cpu        time.Duration
	proxyBytes, peerBytes, dupBytes int64
}

func (r *fanoutResult) add(o fanoutResult) {
	r.wall += o.wall
	r.first += o.first
	r.median += o.median
	r.cpu += o.cpu
	r.proxyBytes += o.proxyBytes
	r.peerBytes += o.peerBytes
	r.dupBytes += o.dupBytes
}

// fanoutSeller is a seller node whose database lives in its own directory,
// removed when the round ends.
type fanoutSeller struct {
	*testNode
	db  *store.DB
	dir string
}

func (s *fanoutSeller) close() {
	_ = s.Close()
	_ = s.h.Close()
	_ = s.db.Close()
	_ = os.RemoveAll(s.dir)
}

// run makes n fresh sellers, connects them to each other directly and to
// the buyer through the proxy, and has them all fetch at once.
func (e fanoutEnv) run(b *testing.B, n int) fanoutResult {
	b.StopTimer()
	ctx := context.Background()
	sellers := make([]*fanoutSeller, n)
	for i := range sellers {
		dir := b.TempDir()
		db := openDB(b, dir)
		sellers[i] = &fanoutSeller{testNode: newNode(b, nodeOpts{ds: db.Datastore("appliance")}), db: db, dir: dir}
	}
	defer func() {
		for _, s := range sellers {
			s.close()
		}
	}()
	for i, s := range sellers {
		if err := s.h.Connect(ctx, e.buyer); err != nil {
			b.Fatal(err)
		}
		for _, o := range sellers[i+1:] {
			if err := s.h.Connect(ctx, o.addr()); err != nil {
				b.Fatal(err)
			}
		}
	}
	e.checkThroughProxy(b, sellers)

	down0 := e.proxy.down.Load()
	took := make([]time.Duration, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range sellers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			defer cancel()
			_, errs[i] = s.Fetch(fctx, e.root, FetchOptions{Peers: []peer.AddrInfo{e.buyer}, Transport: e.transport})
			took[i] = time.Since(t0)
		}()
	}
	b.StartTimer()
	c0, t0 := cpuTime(), time.Now()
	close(start)
	wg.Wait()
	wall, cpu := time.Since(t0), cpuTime()-c0
	b.StopTimer()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("seller %d of %d: %v", i, n, err)
		}
	}
	res := fanoutResult{wall: wall, cpu: cpu, proxyBytes: e.proxy.down.Load() - down0}
	slices.Sort(took)
	res.first, res.median = took[0], took[n/2]
	e.checkThroughProxy(b, sellers)
	for i, s := range sellers {
		st, err := s.bswap.Stat()
		if err != nil {
			b.Fatal(err)
		}
		res.peerBytes += int64(st.DataSent) + int64(s.Stats().BytesServed)
		res.dupBytes += int64(st.DupDataReceived)
		if openSum(b, s.Service, e.root) != e.sum {
			b.Fatalf("seller %d of %d: the fetched appliance differs from the buyer's", i, n)
		}
	}
	if res.proxyBytes < e.size {
		b.Fatalf("only %d bytes passed the proxy for a %d-byte appliance: the sellers reached the buyer another way", res.proxyBytes, e.size)
	}
	b.StartTimer()
	return res
}

// checkThroughProxy fails unless every seller has exactly one connection
// to the buyer, and it goes through the proxy.
func (e fanoutEnv) checkThroughProxy(b *testing.B, sellers []*fanoutSeller) {
	b.Helper()
	for i, s := range sellers {
		conns := s.h.Network().ConnsToPeer(e.buyer.ID)
		if len(conns) != 1 || !conns[0].RemoteMultiaddr().Equal(e.buyer.Addrs[0]) {
			addrs := make([]string, len(conns))
			for j, c := range conns {
				addrs[j] = c.RemoteMultiaddr().String()
			}
			b.Fatalf("seller %d: connections to the buyer at %v, want one at the proxy %s", i, addrs, e.buyer.Addrs[0])
		}
	}
	if got := e.proxy.open(); got < len(sellers) {
		b.Fatalf("%d connections through the proxy for %d sellers", got, len(sellers))
	}
}

// newHostBehind is a libp2p host on loopback TCP that advertises only
// addr (a proxy in front of it), so that peers learn no other way to it.
func newHostBehind(t testing.TB, addr ma.Multiaddr) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return []ma.Multiaddr{addr} }),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// realTCPAddr is the host:port a host really listens on (its TCP listener,
// whatever it advertises).
func realTCPAddr(h host.Host) (string, error) {
	for _, a := range h.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil {
			continue
		}
		na, err := manet.ToNetAddr(a)
		if err != nil {
			continue
		}
		return na.String(), nil
	}
	return "", fmt.Errorf("host listens on no TCP address: %v", h.Network().ListenAddresses())
}

// envInt reads a positive integer from the environment, or returns def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
