package appliance

import (
	"context"
	"fmt"
	"io"

	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// File is an appliance opened for reading from local blocks.
type File interface {
	io.ReadSeekCloser
	io.WriterTo
	// Size is the file's size in bytes.
	Size() uint64
}

// Open opens the appliance c for reading from local blocks only: it never
// fetches. A block missing in the middle fails the read with an error
// wrapping ipld.ErrNotFound. ctx bounds the reads.
func (s *Service) Open(ctx context.Context, c cid.Cid) (File, error) {
	if err := checkCID(c); err != nil {
		return nil, fmt.Errorf("open %s: %w", c, err)
	}
	nd, err := s.dag.Get(ctx, c)
	if err != nil {
		if ipld.IsNotFound(err) {
			return nil, fmt.Errorf("open %s: not on this node, fetch it first: %w", c, ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", c, err)
	}
	r, err := uio.NewDagReader(ctx, nd, s.dag)
	if err != nil {
		return nil, fmt.Errorf("open %s: %v: %w", c, err, ErrMalformed)
	}
	return r, nil
}
