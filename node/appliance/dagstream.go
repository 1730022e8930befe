package appliance

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/boxo/blockstore"
	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multihash"
)

// DAGProtocol is the DAG stream protocol: a requester pulls the blocks of
// one DAG from one peer over one stream, in order, pipelined. See
// docs/protocol/appliances.md for the wire format.
//
// The requester walks the DAG itself: it asks only for the blocks it does
// not hold (so a resumed fetch skips what arrived before), checks every
// block against the CID it asked for before it stores it, and stops asking
// when the size limit is passed. The server is stateless: it answers each
// CID with the block or "don't have", in the order asked.
const DAGProtocol protocol.ID = "/spotmesh/dag/1.0.0"

// Response status bytes.
const (
	dagBlock    = 0x00 // followed by uvarint length and the block's bytes
	dagDontHave = 0x01 // the server does not hold the block
)

// maxCIDLen bounds a requested CID's encoding.
const maxCIDLen = 256

// streamBufSize is the size of the buffers on either side of a stream.
const streamBufSize = 64 << 10

// handleDAGStream serves one requester.
func (s *Service) handleDAGStream(st network.Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if !s.streamSlot() {
		s.log.Debug("DAG stream refused: too many at once", "peer", st.Conn().RemotePeer())
		_ = st.Reset()
		return
	}
	defer s.releaseStreamSlot()
	stop := context.AfterFunc(s.ctx, func() { _ = st.Reset() })
	defer stop()
	if err := s.serveDAG(s.ctx, st); err != nil {
		s.log.Debug("DAG stream ended", "peer", st.Conn().RemotePeer(), "err", err)
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

func (s *Service) streamSlot() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams >= s.cfg.MaxStreams {
		return false
	}
	s.streams++
	return true
}

func (s *Service) releaseStreamSlot() {
	s.mu.Lock()
	s.streams--
	s.mu.Unlock()
}

// dagConn is what serveDAG needs of a stream.
type dagConn interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// serveDAG answers requests until the requester closes its side. It
// reads each block (from the disk, when the page cache no longer holds
// it) while the one before goes out: a reader and a sender, with two
// block buffers between them.
func (s *Service) serveDAG(ctx context.Context, st dagConn) error {
	answers := make(chan dagAnswer, 1)
	free := make(chan []byte, 2)
	free <- nil
	free <- nil
	stop := make(chan struct{})
	var readErr error
	go func() {
		defer close(answers)
		readErr = s.readRequests(ctx, st, free, answers, stop)
	}()
	if err := s.sendAnswers(st, free, answers); err != nil {
		close(stop)
		_ = st.SetReadDeadline(time.Now()) // wake the reader
		for range answers {
		}
		return err
	}
	return readErr // answers is closed: the reader has returned
}

// dagAnswer goes from serveDAG's reader to its sender.
type dagAnswer struct {
	data     []byte // the block; the sender gives the buffer back
	dontHave bool
	flush    bool // no request is waiting: send what is buffered
}

// readRequests reads the requests and their blocks, in order, until the
// requester closes its side (nil) or stop is closed.
func (s *Service) readRequests(ctx context.Context, st dagConn, free chan []byte, answers chan<- dagAnswer, stop <-chan struct{}) error {
	br := bufio.NewReaderSize(st, 4<<10)
	cbuf := make([]byte, maxCIDLen)
	send := func(a dagAnswer) bool {
		select {
		case answers <- a:
			return true
		case <-stop:
			return false
		}
	}
	for {
		if br.Buffered() == 0 && !send(dagAnswer{flush: true}) {
			return nil
		}
		_ = st.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		select {
		case <-stop:
			// The sender failed and set a past deadline to wake this
			// read; the one just set may have replaced it.
			return nil
		default:
		}
		n, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if n == 0 || n > maxCIDLen {
			return fmt.Errorf("request of a %d-byte CID: %w", n, ErrInvalid)
		}
		if _, err := io.ReadFull(br, cbuf[:n]); err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		c, err := cid.Cast(cbuf[:n])
		if err != nil {
			return fmt.Errorf("request: %v: %w", err, ErrInvalid)
		}
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			return nil
		}
		data, err := s.readBlockInto(ctx, c, buf[:0])
		switch {
		case isNotFound(err):
			free <- buf // never blocks: it came from free
			if !send(dagAnswer{dontHave: true}) {
				return nil
			}
		case err != nil:
			return fmt.Errorf("read block %s: %w", c, err)
		default:
			if !send(dagAnswer{data: data}) {
				return nil
			}
		}
	}
}

// sendAnswers writes the answers until the reader is done.
func (s *Service) sendAnswers(st dagConn, free chan<- []byte, answers <-chan dagAnswer) error {
	bw := bufio.NewWriterSize(st, streamBufSize)
	var hdr [1 + binary.MaxVarintLen64]byte
	for a := range answers {
		_ = st.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
		switch {
		case a.flush:
			if err := bw.Flush(); err != nil {
				return err
			}
			// Everything asked for is out: the requester has IdleTimeout
			// from now to ask again (the reader set its deadline when it
			// queued the flush, perhaps two blocks ago).
			_ = st.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
			continue
		case a.dontHave:
			if err := bw.WriteByte(dagDontHave); err != nil {
				return err
			}
			continue
		}
		hdr[0] = dagBlock
		m := 1 + binary.PutUvarint(hdr[1:], uint64(len(a.data)))
		if _, err := bw.Write(hdr[:m]); err != nil {
			return err
		}
		if _, err := bw.Write(a.data); err != nil {
			return err
		}
		s.stats.blocksServed.Add(1)
		s.stats.bytesServed.Add(uint64(len(a.data)))
		free <- a.data // never blocks: two buffers, two slots
	}
	return bw.Flush()
}

// blockViewer is what the store's datastore offers beyond go-datastore: a
// value read in place (store's datastore View).
type blockViewer interface {
	View(ctx context.Context, k datastore.Key, fn func(v []byte) error) error
}

// readBlockInto appends c's bytes to buf and returns it. It copies them
// from the datastore's value in place when it can, so that a stream serves
// its blocks through one reused buffer instead of a new one per block (the
// allocation and its zeroing cost a serving node 7% of its CPU); the copy
// keeps the network out of the database's read transaction. A block that
// is not here is an error for which isNotFound holds.
func (s *Service) readBlockInto(ctx context.Context, c cid.Cid, buf []byte) ([]byte, error) {
	if v, ok := s.ds.(blockViewer); ok && c.Prefix().MhType != multihash.IDENTITY {
		err := v.View(ctx, blockstore.BlockPrefix.Child(dshelp.MultihashToDsKey(c.Hash())), func(v []byte) error {
			buf = append(buf, v...)
			return nil
		})
		if errors.Is(err, datastore.ErrNotFound) {
			return nil, ipld.ErrNotFound{Cid: c}
		}
		return buf, err
	}
	b, err := s.bstore.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	return append(buf, b.RawData()...), nil
}

func (ss *streamSource) readOne(br *bufio.Reader, c cid.Cid) (blocks.Block, error) {
	status, err := br.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("%s: read the answer for %s: %w", ss, c, err)
	}
	switch status {
	case dagBlock:
	case dagDontHave:
		return nil, fmt.Errorf("%s: the peer does not have block %s: %w", ss, c, ErrNotFound)
	default:
		return nil, fmt.Errorf("%s: answer status 0x%x for %s: %w", ss, status, c, ErrInvalid)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, fmt.Errorf("%s: read the answer for %s: %w", ss, c, err)
	}
	if n > uint64(MaxBlockSize) {
		return nil, fmt.Errorf("%s: block %s of %d bytes, more than %d: %w", ss, c, n, MaxBlockSize, ErrCorrupt)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(br, data); err != nil {
		return nil, fmt.Errorf("%s: read block %s: %w", ss, c, err)
	}
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return nil, fmt.Errorf("%s: hash block %s: %v: %w", ss, c, err, ErrMalformed)
	}
	if !got.Equals(c) {
		return nil, fmt.Errorf("%s: the bytes sent for block %s hash to %s: %w", ss, c, got, ErrCorrupt)
	}
	return blocks.NewBlockWithCid(data, c)
}
