package appliance

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestInteropBareIPFSPeer: a bare IPFS peer (a libp2p host running only
// boxo's bitswap over its own blockstore, as any IPFS node does) serves an
// appliance it added the way kubo does by default (CIDv0, 256 KiB dag-pb
// leaves) to a spotmesh node, and fetches one from it (CIDv1, raw leaves).
func TestInteropBareIPFSPeer(t *testing.T) {
	const size = 6<<20 + 4321
	ctx := context.Background()
	bare := newBarePeer(t, mapDS())
	s := newNode(t, nodeOpts{})

	t.Run("from the bare peer", func(t *testing.T) {
		root := bare.addKuboStyle(t, newPRNG(21, size))
		if root.Version() != 0 {
			t.Fatalf("kubo-style root %s is not CIDv0", root)
		}
		// Auto: the bare peer does not speak the DAG stream, so the fetch
		// falls back to bitswap.
		info, err := s.Fetch(ctx, root, FetchOptions{Peers: []peer.AddrInfo{bare.addr()}})
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != size || !info.Pinned {
			t.Errorf("info %+v", info)
		}
		if openSum(t, s.Service, root) != prngSum(t, 21, size) {
			t.Fatal("fetched bytes differ")
		}
	})

	t.Run("to the bare peer", func(t *testing.T) {
		info, sum := importPRNG(t, s.Service, 22, size)
		if err := bare.h.Connect(ctx, s.addr()); err != nil {
			t.Fatal(err)
		}
		if got := bare.fetchAll(t, ctx, info.CID); got != sum {
			t.Fatal("the bare peer got different bytes")
		}
	})
}
