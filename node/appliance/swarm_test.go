package appliance

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
)

// allCorruptDS flips a byte of every block it returns.
type allCorruptDS struct{ datastore.Batching }

func (d allCorruptDS) Get(ctx context.Context, k datastore.Key) ([]byte, error) {
	v, err := d.Batching.Get(ctx, k)
	if err == nil && strings.HasPrefix(k.String(), "/blocks/") {
		v = bytes.Clone(v)
		v[len(v)/2] ^= 0x55
	}
	return v, err
}

// TestFetchFromHelpers: a DAG stream fetch from a named peer also asks a
// connected peer that speaks the protocol (a helper) for the blocks of its
// share of the file; a helper that lacks them or lies costs nothing but
// time, and every block is verified.
func TestFetchFromHelpers(t *testing.T) {
	const size = 8 << 20
	cfg := testConfig()
	cfg.ChunkSize = 256 << 10
	primary := newNode(t, nodeOpts{cfg: &cfg})
	info, sum := importPRNG(t, primary.Service, 5, size)
	leaves := len(dagBlocks(t, primary.Service, info.CID)) - 1

	for _, tc := range []struct {
		name   string
		ds     datastore.Batching
		holds  bool // the helper imports the appliance
		served bool // the helper must serve blocks
	}{
		{name: "helper holds it", ds: mapDS(), holds: true, served: true},
		{name: "helper holds nothing", ds: mapDS()},
		{name: "helper sends corrupt blocks", ds: allCorruptDS{mapDS()}, holds: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			helper := newNode(t, nodeOpts{cfg: &cfg, ds: tc.ds})
			if tc.holds {
				importPRNG(t, helper.Service, 5, size)
			}
			fetcher := newNode(t, nodeOpts{cfg: &cfg})
			if err := fetcher.h.Connect(context.Background(), helper.addr()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "identify of the helper", func() bool {
				ps, _ := fetcher.h.Peerstore().SupportsProtocols(helper.h.ID(), DAGProtocol)
				return len(ps) > 0
			})
			before := primary.Stats().BlocksServed
			_, err := fetcher.Fetch(context.Background(), info.CID, FetchOptions{Peers: []peer.AddrInfo{primary.addr()}, Transport: TransportStream})
			if err != nil {
				t.Fatal(err)
			}
			if openSum(t, fetcher.Service, info.CID) != sum {
				t.Fatal("fetched bytes differ")
			}
			fromHelper := helper.Stats().BlocksServed
			fromPrimary := primary.Stats().BlocksServed - before
			t.Logf("%d leaves: %d blocks from the primary, %d from the helper", leaves, fromPrimary, fromHelper)
			if tc.served && (fromHelper < uint64(leaves)/4 || fromPrimary > uint64(leaves)*3/4+1) {
				t.Errorf("the helper served %d blocks and the primary %d of %d leaves; want about half each", fromHelper, fromPrimary, leaves)
			}
			if !tc.served && fromPrimary < uint64(leaves)+1 {
				t.Errorf("the primary served %d blocks; want all %d", fromPrimary, leaves+1)
			}
		})
	}
}

// TestHelperMissLimit: a helper is given up after the same number of bytes
// of "don't have", whatever the leaf size.
func TestHelperMissLimit(t *testing.T) {
	for _, tc := range []struct {
		largest int
		want    int32
	}{{1 << 20, 32}, {256 << 10, 128}, {2 << 20, 16}, {48 << 20, 1}} {
		sw := &swarmSource{run: &fetchRun{largest: tc.largest}}
		if got := sw.missLimit(); got != tc.want {
			t.Errorf("leaves of %d bytes: a helper is given up after %d misses, want %d", tc.largest, got, tc.want)
		}
	}
}
