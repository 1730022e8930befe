package appliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/verifcid"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// maxDepth bounds the depth of an appliance DAG. A balanced DAG of 174
// links per node holding 1 MiB leaves reaches a petabyte at depth 5.
const maxDepth = 32

// node is what a walk needs of one block of an appliance DAG.
type node struct {
	links    []cid.Cid
	data     uint64   // file bytes held in this block itself
	declared uint64   // file size the block declares for its subtree
	sizes    []uint64 // file size under each link, as the block declares it
}

// checkCID refuses CIDs this package does not handle: codecs other than
// raw and dag-pb, and hashes outside boxo's allowlist (weak or unknown
// functions, digests too short).
func checkCID(c cid.Cid) error {
	if t := c.Type(); t != cid.Raw && t != cid.DagProtobuf {
		return fmt.Errorf("block %s has codec 0x%x; an appliance is a UnixFS file of raw and dag-pb blocks: %w", c, t, ErrMalformed)
	}
	if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, c); err != nil {
		return fmt.Errorf("block %s: %v: %w", c, err, ErrMalformed)
	}
	return nil
}

// decode parses a block of an appliance DAG. The block's bytes must
// already be verified against its CID.
func decode(b blocks.Block) (node, error) {
	c := b.Cid()
	if err := checkCID(c); err != nil {
		return node{}, err
	}
	raw := b.RawData()
	if len(raw) > MaxBlockSize {
		return node{}, fmt.Errorf("block %s holds %d bytes, more than the %d a block may: %w", c, len(raw), MaxBlockSize, ErrMalformed)
	}
	if c.Type() == cid.Raw {
		return node{data: uint64(len(raw)), declared: uint64(len(raw))}, nil
	}
	pn, err := merkledag.DecodeProtobuf(raw)
	if err != nil {
		return node{}, fmt.Errorf("block %s: not dag-pb: %v: %w", c, err, ErrMalformed)
	}
	fs, err := unixfs.FSNodeFromBytes(pn.Data())
	if err != nil {
		return node{}, fmt.Errorf("block %s: not UnixFS: %v: %w", c, err, ErrMalformed)
	}
	switch fs.Type() {
	case unixfs.TFile, unixfs.TRaw:
	case unixfs.TDirectory, unixfs.THAMTShard:
		return node{}, fmt.Errorf("%s is a UnixFS directory; an appliance is one file (a disk image, or a tar bundle): %w", c, ErrMalformed)
	default:
		return node{}, fmt.Errorf("%s is a UnixFS %s; an appliance is one file: %w", c, fs.Type(), ErrMalformed)
	}
	n := node{data: uint64(len(fs.Data())), declared: fs.FileSize(), sizes: fs.BlockSizes()}
	if ls := pn.Links(); len(ls) > 0 {
		n.links = make([]cid.Cid, len(ls))
		for i, l := range ls {
			if err := checkCID(l.Cid); err != nil {
				return node{}, fmt.Errorf("link %d of %s: %w", i, c, err)
			}
			n.links[i] = l.Cid
		}
	}
	return n, nil
}

// localWalk walks a DAG over local blocks only. It checks that every block
// is here and that the sizes add up, and computes the file's size,
// counting a block once for every place the file holds it.
type localWalk struct {
	s     *Service
	limit uint64 // stop with ErrTooLarge beyond it; 0: no limit
	// memo holds the file size of every subtree walked, by multihash: a
	// DAG that repeats a block (a disk image's zero chunks) or a subtree is
	// walked once.
	memo map[string]uint64
	// visit, if set, sees every distinct block once with its stored size.
	visit func(c cid.Cid, size int)
	// skipMissing walks past missing blocks (counting them in missed)
	// instead of failing: GC marks what is here of an incomplete DAG.
	skipMissing bool
	missed      int
}

func (s *Service) newLocalWalk(limit uint64, visit func(cid.Cid, int)) *localWalk {
	return &localWalk{s: s, limit: limit, memo: map[string]uint64{}, visit: visit}
}

// size returns the file size under c.
func (w *localWalk) size(ctx context.Context, c cid.Cid) (uint64, error) {
	return w.walk(ctx, c, 0)
}

func (w *localWalk) walk(ctx context.Context, c cid.Cid, depth int) (uint64, error) {
	k := string(c.Hash())
	if n, ok := w.memo[k]; ok {
		return n, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if depth > maxDepth {
		return 0, fmt.Errorf("DAG deeper than %d levels at %s: %w", maxDepth, c, ErrMalformed)
	}
	if err := checkCID(c); err != nil {
		return 0, err
	}
	if c.Type() == cid.Raw && c.Prefix().MhType != mh.IDENTITY {
		n, err := w.s.bstore.GetSize(ctx, c)
		if err != nil {
			return 0, w.missing(c, err) // nil when skipping: not memoized
		}
		if w.visit != nil {
			w.visit(c, n)
		}
		w.memo[k] = uint64(n)
		return uint64(n), nil
	}
	b, err := w.s.bstore.Get(ctx, c)
	if err != nil {
		return 0, w.missing(c, err)
	}
	nd, err := decode(b)
	if err != nil {
		return 0, err
	}
	if w.visit != nil {
		w.visit(c, len(b.RawData()))
	}
	total := nd.data
	for _, l := range nd.links {
		n, err := w.walk(ctx, l, depth+1)
		if err != nil {
			return 0, err
		}
		total += n
		if w.limit > 0 && total > w.limit {
			return 0, fmt.Errorf("%s holds more than %d bytes: %w", c, w.limit, ErrTooLarge)
		}
	}
	if total != nd.declared && w.missed == 0 {
		return 0, fmt.Errorf("%s declares %d bytes but its blocks hold %d: %w", c, nd.declared, total, ErrMalformed)
	}
	w.memo[k] = total
	return total, nil
}

func (w *localWalk) missing(c cid.Cid, err error) error {
	if ipld.IsNotFound(err) {
		if w.skipMissing {
			w.missed++
			return nil
		}
		return fmt.Errorf("block %s is missing here: %w", c, ErrNotFound)
	}
	return fmt.Errorf("read block %s: %w", c, err)
}

// isNotFound tells a missing block from a failing store.
func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) || ipld.IsNotFound(err) }
