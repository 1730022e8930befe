package appliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
)

// writeQueueBlocks is how many blocks wait for the writer beyond the batch
// it is writing: enough to overlap hashing or receiving with a commit,
// few enough to keep the heap small.
const writeQueueBlocks = 8

// blockWriter stores blocks in batches from its own goroutine, so that the
// producer (the importer hashing chunks, a fetch receiving them) never
// waits on the datastore unless the queue is full. After each batch it
// tells bitswap's server, which sends the blocks to peers that want them.
type blockWriter struct {
	bs       blockstore.Blockstore
	bswap    *bitswap.Bitswap // nil before Start
	maxBytes int
	// sync syncs the datastore; the writer calls it every syncBytes.
	sync      func(context.Context) error
	syncBytes int
	ctx       context.Context // for the writes: not canceled with the operation

	in     chan blocks.Block
	failed chan struct{} // closed when err is set
	done   chan struct{} // closed when the goroutine has returned
	err    error
	stored uint64 // blocks written, read after done
}

// newWriter starts a writer whose queue holds queue blocks.
func (s *Service) newWriter(ctx context.Context, bs blockstore.Blockstore, queue int) *blockWriter {
	s.mu.Lock()
	bswap := s.bswap
	s.mu.Unlock()
	w := &blockWriter{
		bs:        bs,
		bswap:     bswap,
		maxBytes:  s.cfg.WriteBatchBytes,
		sync:      func(ctx context.Context) error { return s.ds.Sync(ctx, datastore.NewKey("/")) },
		syncBytes: s.cfg.SyncBytes,
		ctx:       context.WithoutCancel(ctx),
		in:        make(chan blocks.Block, queue),
		failed:    make(chan struct{}),
		done:      make(chan struct{}),
	}
	go w.run()
	return w
}

// put queues b. It fails when the writer failed or ctx ends.
func (w *blockWriter) put(ctx context.Context, b blocks.Block) error {
	select {
	case w.in <- b:
		return nil
	case <-w.failed:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close writes what is queued and waits; it returns the first write error.
func (w *blockWriter) close() error {
	close(w.in)
	<-w.done
	return w.err
}

func (w *blockWriter) run() {
	defer close(w.done)
	var batch []blocks.Block
	size, unsynced := 0, 0
	flush := func() {
		if len(batch) == 0 || w.err != nil {
			batch, size = batch[:0], 0
			return
		}
		if err := w.bs.PutMany(w.ctx, batch); err != nil {
			w.err = fmt.Errorf("store %d blocks: %w", len(batch), err)
			close(w.failed)
		} else {
			w.stored += uint64(len(batch))
			if w.bswap != nil {
				_ = w.bswap.Server.NotifyNewBlocks(w.ctx, batch...)
			}
			// Synced as it goes: see Config.SyncBytes.
			if unsynced += size; unsynced >= w.syncBytes {
				unsynced = 0
				if err := w.sync(w.ctx); err != nil {
					w.err = fmt.Errorf("sync the store after %d blocks: %w", w.stored, err)
					close(w.failed)
				}
			}
		}
		clear(batch)
		batch, size = batch[:0], 0
	}
	for b := range w.in {
		batch = append(batch, b)
		size += len(b.RawData())
	gather:
		for size < w.maxBytes {
			select {
			case b, ok := <-w.in:
				if !ok {
					break gather
				}
				batch = append(batch, b)
				size += len(b.RawData())
			default:
				break gather
			}
		}
		flush()
	}
	flush()
}

// writerDAG is the DAGService the importer writes through: Add queues the
// node on the writer. The importer only adds.
type writerDAG struct {
	w   *blockWriter
	get ipld.NodeGetter
}

var _ ipld.DAGService = writerDAG{}

func (d writerDAG) Add(ctx context.Context, n ipld.Node) error { return d.w.put(ctx, n) }

func (d writerDAG) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		if err := d.w.put(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (d writerDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) { return d.get.Get(ctx, c) }

func (d writerDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	return d.get.GetMany(ctx, cs)
}

var errImportOnly = errors.New("the import DAG service only adds")

func (d writerDAG) Remove(context.Context, cid.Cid) error       { return errImportOnly }
func (d writerDAG) RemoveMany(context.Context, []cid.Cid) error { return errImportOnly }
