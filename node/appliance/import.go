package appliance

import (
	"context"
	"fmt"
	"io"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// cidBuilder makes CIDv1 with SHA-256; leaves get the raw codec.
var cidBuilder = cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256}

// Import reads a file from r into a balanced UnixFS DAG (CIDv1, raw
// leaves of Config.ChunkSize), stores its blocks, records meta beside it,
// pins it (reason "add") and announces it. progress, if not nil, is called
// with the bytes read so far after every chunk. Memory does not grow with
// the file's size: blocks go to the datastore in batches as they are cut.
func (s *Service) Import(ctx context.Context, r io.Reader, meta Meta, progress func(n uint64)) (Info, error) {
	if err := meta.Validate(); err != nil {
		return Info{}, fmt.Errorf("import: %w", err)
	}
	ctx, end, err := s.begin(ctx, "import")
	if err != nil {
		return Info{}, err
	}
	defer end()
	if err := s.gcSem.Acquire(ctx, 1); err != nil {
		return Info{}, fmt.Errorf("import %q: %w", meta.Name, err)
	}
	defer s.gcSem.Release(1)

	w := s.newWriter(ctx, s.bstore, writeQueueBlocks)
	spl := &countingSplitter{Splitter: chunker.NewSizeSplitter(ctxReader{ctx, r}, s.cfg.ChunkSize), progress: progress}
	params := helpers.DagBuilderParams{
		Maxlinks:   helpers.DefaultLinksPerBlock,
		RawLeaves:  true,
		CidBuilder: cidBuilder,
		Dagserv:    writerDAG{w: w, get: s.dag},
	}
	db, err := params.New(spl)
	if err != nil {
		_ = w.close()
		return Info{}, fmt.Errorf("import %q: %w", meta.Name, err)
	}
	root, err := balanced.Layout(db)
	if werr := w.close(); err == nil {
		err = werr
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Info{}, fmt.Errorf("import %q: %w", meta.Name, err)
	}
	c := root.Cid()
	rec, err := s.putRecordAndPin(ctx, c, record{Name: meta.Name, Format: meta.Format, Size: spl.total, Added: s.now()}, ReasonAdd)
	if err != nil {
		return Info{}, fmt.Errorf("import %q: %w", meta.Name, err)
	}
	s.announce(c)
	pins, err := s.pinsOf(ctx, c)
	if err != nil {
		return Info{}, fmt.Errorf("import %q: %w", meta.Name, err)
	}
	s.log.Info("appliance imported", "cid", c, "name", meta.Name, "size", spl.total, "blocks", w.stored)
	return rec.info(c, pins), nil
}

// countingSplitter counts the bytes cut and reports them.
type countingSplitter struct {
	chunker.Splitter
	total    uint64
	progress func(uint64)
}

func (c *countingSplitter) NextBytes() ([]byte, error) {
	b, err := c.Splitter.NextBytes()
	if len(b) > 0 {
		c.total += uint64(len(b))
		if c.progress != nil {
			c.progress(c.total)
		}
	}
	return b, err
}

// ctxReader ends a read once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
