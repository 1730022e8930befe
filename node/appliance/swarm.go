package appliance

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxHelpers bounds how many peers besides the chosen one a DAG stream
// fetch asks for blocks.
const maxHelpers = 8

// swarmSource pulls a run's blocks over DAG streams: one to the primary
// peer (the named holder, which must have every block) and one to each
// helper, a connected peer that speaks the protocol and may hold part of
// the DAG because it fetches, or fetched, the same appliance.
//
// Nodes that fetch the same appliance at once split it: ranked by peer ID,
// each starts at its share of the file (see firstLink) and walks on, so
// the block at a point of the file is most likely held by the node whose
// share it is in. A block in a helper's share is asked of that helper
// first, and of the primary if the helper answers "don't have"; a block in
// this node's own share, or of unknown position, goes to the primary. The
// primary then sends each block about once, and the helpers the rest.
// With no helper it is a plain pipelined stream from the primary.
//
// Each block is in flight on exactly one stream at a time, so a run's
// window bounds every stream's queue.
type swarmSource struct {
	primary *streamSource
	helpers []*streamSource // the opened ones
	// owners maps a rank (a share of the file) to its helper in helpers,
	// or -1: this node's own share, or a helper without a stream.
	owners []int
	run    *fetchRun
	open   func(peer.ID) (network.Stream, error)
}

// want is a block asked for.
type want struct {
	c cid.Cid
}

const (
	// helperReopens bounds the streams opened again to a helper in a row
	// without a block delivered between.
	helperReopens = 3
	// helperMissBytes: a helper that answered "don't have" for this many
	// bytes of blocks in a row (32 blocks of 1 MiB, 128 of 256 KiB) is
	// asked no more in this fetch (its share goes to the primary), so that
	// a connected peer that does not fetch this appliance costs a round
	// trip for only so many blocks. Counted in bytes, not blocks: with 32
	// blocks of 256 KiB, sellers of a fan-out that were a window behind
	// each other gave up on each other, and the buyer sent 2.57 copies
	// instead of 1.73 (BenchmarkFanout).
	helperMissBytes = 32 << 20
)

// streamSource is one DAG stream of a swarmSource. Requests go out as the
// run asks; a reader goroutine takes the answers in the same order, hashes
// each block and checks it against the CID asked for.
type streamSource struct {
	peer    peer.ID
	st      network.Stream
	helper  bool
	reopens int          // owned by the reader
	misses  atomic.Int32 // "don't have" answers in a row

	mu     sync.Mutex // guards bw, expect sends, closed, dead
	bw     *bufio.Writer
	expect chan want // asked for and not answered yet, in order
	closed bool
	dead   bool // the stream failed; nothing more goes to it
}

func (ss *streamSource) String() string { return "DAG stream from " + ss.peer.String() }

// openSwarmSource opens a stream to p (it must succeed) and to each
// helper (those that fail are left out).
func (s *Service) openSwarmSource(ctx context.Context, p peer.ID, helpers []peer.ID, r *fetchRun) (source, error) {
	openStream := func(q peer.ID) (network.Stream, error) {
		octx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
		defer cancel()
		st, err := s.host.NewStream(octx, q, DAGProtocol)
		if err != nil {
			return nil, fmt.Errorf("open a DAG stream to %s: %w", q, err)
		}
		return st, nil
	}
	open := func(q peer.ID) (*streamSource, error) {
		st, err := openStream(q)
		if err != nil {
			return nil, err
		}
		return &streamSource{
			peer:   q,
			st:     st,
			bw:     bufio.NewWriterSize(st, 4<<10),
			expect: make(chan want, maxWindowBlocks),
		}, nil
	}
	var (
		wg  sync.WaitGroup
		hss = make([]*streamSource, len(helpers))
	)
	for i, q := range helpers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs, err := open(q)
			if err != nil {
				s.log.Debug("no DAG stream to a helper", "peer", q, "err", err)
				return
			}
			hs.helper = true
			hss[i] = hs
		}()
	}
	ps, err := open(p)
	wg.Wait()
	// Ranks as startFraction gives them: self and the helpers by peer ID.
	ranked := append([]peer.ID{s.host.ID()}, helpers...)
	slices.Sort(ranked)
	hss = slices.DeleteFunc(hss, func(h *streamSource) bool { return h == nil })
	owners := make([]int, len(ranked))
	for i, q := range ranked {
		owners[i] = slices.IndexFunc(hss, func(h *streamSource) bool { return h.peer == q })
	}
	if err != nil {
		for _, h := range hss {
			_ = h.st.Reset()
		}
		return nil, err
	}
	sw := &swarmSource{primary: ps, helpers: hss, owners: owners, run: r, open: openStream}
	for _, ss := range append([]*streamSource{ps}, hss...) {
		r.wg.Add(1)
		go sw.read(ss)
	}
	return sw, nil
}

// helperWindowBytes bounds the window of a swarm with helpers. Asked
// further ahead, a helper is more often asked for a block it has not
// fetched itself yet, and its "don't have" sends the block back to the
// primary: 8 sellers fetching 256 MiB from a buyer took 2.47 copies from
// it with a 32 MiB window, 1.73 with 8 MiB (BenchmarkFanout).
const helperWindowBytes = 8 << 20

// limit: the run's whole window for one peer alone, helperWindowBytes of
// blocks when helpers share the work.
func (sw *swarmSource) limit() int {
	if len(sw.helpers) == 0 {
		return maxWindowBlocks
	}
	return max(helperWindowBytes/max(sw.run.largest, 1), minWindowBlocks)
}

// missLimit is helperMissBytes in blocks of the run's leaves.
func (sw *swarmSource) missLimit() int32 {
	return int32(max(helperMissBytes/max(sw.run.largest, 1), 1))
}

func (sw *swarmSource) String() string {
	if len(sw.helpers) == 0 {
		return sw.primary.String()
	}
	return fmt.Sprintf("%s and %d helpers", sw.primary, len(sw.helpers))
}

func (sw *swarmSource) want(ctx context.Context, cs []cid.Cid) error {
	for _, c := range cs {
		h := -1
		if f, ok := sw.run.position(c); ok && c.Type() == cid.Raw {
			h = sw.owners[min(int(f*float64(len(sw.owners))), len(sw.owners)-1)]
		}
		if h >= 0 && sw.helpers[h].misses.Load() < sw.missLimit() && sw.helpers[h].send(want{c: c}) == nil {
			continue
		}
		if err := sw.primary.send(want{c: c}); err != nil {
			return err
		}
	}
	return sw.flush()
}

// route sends w, which a helper did not deliver, to the primary. It does
// not flush.
func (sw *swarmSource) route(w want) error {
	return sw.primary.send(w)
}

// flush pushes buffered requests out on every stream.
func (sw *swarmSource) flush() error {
	for _, h := range sw.helpers {
		_ = h.flush() // a failed helper's reader re-routes its wants
	}
	return sw.primary.flush()
}

// send writes the request for w; it fails once the stream is dead or closed.
func (ss *streamSource) send(w want) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.dead || ss.closed {
		return fmt.Errorf("%s: %w", ss, errStreamGone)
	}
	ss.expect <- w // never blocks: a run keeps at most maxWindowBlocks in flight
	var hdr [binary.MaxVarintLen64]byte
	b := w.c.Bytes()
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := ss.bw.Write(hdr[:n]); err != nil {
		return nil // the reader sees the broken stream and re-routes w
	}
	_, _ = ss.bw.Write(b)
	return nil
}

func (ss *streamSource) flush() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.dead || ss.closed {
		return nil
	}
	if err := ss.bw.Flush(); err != nil {
		return fmt.Errorf("%s: send requests: %w", ss, err)
	}
	return nil
}

// errStreamGone: a stream of the swarm failed or was closed.
var errStreamGone = errors.New("stream gone")

// read takes the answers of one stream. A helper's "don't have" sends the
// want on to the next peer; a helper that fails or sends a wrong block is
// dropped and its wants go on. The primary's failures end the run.
func (sw *swarmSource) read(ss *streamSource) {
	r := sw.run
	defer r.wg.Done()
	br := bufio.NewReaderSize(ss.st, streamBufSize)
	for w := range ss.expect {
		b, err := ss.readOne(br, w.c)
		switch {
		case err == nil:
			ss.reopens = 0
			ss.misses.Store(0)
			r.results <- b // never blocks: results has room for maxWindowBlocks
			continue
		case !ss.helper:
			r.fail(err)
			return
		case errors.Is(err, ErrNotFound):
			ss.misses.Add(1)
			if err := sw.route(w); err != nil {
				r.fail(err)
				return
			}
			if err := sw.flush(); err != nil {
				r.fail(err)
				return
			}
			continue
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrMalformed) && ss.reopens < helperReopens {
			// The helper most likely closed a stream that stayed idle
			// past its timeout while this node fetched its own share.
			if nbr, ok := sw.reopen(ss, w); ok {
				br = nbr
				continue
			}
		}
		// A broken or lying helper: stop using it and pass its wants on.
		r.s.log.Debug("dropping a DAG stream helper", "peer", ss.peer, "err", err)
		ss.mu.Lock()
		closed := ss.closed
		ss.dead = true
		pending := []want{w}
		for len(ss.expect) > 0 {
			pending = append(pending, <-ss.expect)
		}
		ss.mu.Unlock()
		_ = ss.st.Reset()
		if closed {
			return
		}
		for _, p := range pending {
			if err := sw.route(p); err != nil {
				r.fail(err)
				return
			}
		}
		if err := sw.flush(); err != nil {
			r.fail(err)
		}
		return
	}
}

// reopen replaces a helper's failed stream by a new one and sends it the
// wants that were pending on the old one, w first. It reports false if no
// new stream could be opened (or the source is closed); the wants other
// than w are then back on the stream for the caller to pass on with w.
func (sw *swarmSource) reopen(ss *streamSource, w want) (*bufio.Reader, bool) {
	ss.reopens++
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return nil, false
	}
	pending := []want{w}
	for len(ss.expect) > 0 {
		pending = append(pending, <-ss.expect)
	}
	// Dialing takes up to the connect timeout: meanwhile the stream counts
	// as dead, so that new wants go to the primary and flushes pass it by,
	// and the lock is not held.
	ss.dead = true
	_ = ss.st.Reset()
	ss.mu.Unlock()
	st, err := sw.open(ss.peer)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if err != nil || ss.closed {
		if err == nil {
			_ = st.Reset()
		}
		if !ss.closed {
			for _, p := range pending[1:] {
				ss.expect <- p
			}
		}
		return nil, false
	}
	ss.dead = false
	ss.st, ss.bw = st, bufio.NewWriterSize(st, 4<<10)
	var hdr [binary.MaxVarintLen64]byte
	for _, p := range pending {
		ss.expect <- p
		b := p.c.Bytes()
		n := binary.PutUvarint(hdr[:], uint64(len(b)))
		_, _ = ss.bw.Write(hdr[:n])
		_, _ = ss.bw.Write(b)
	}
	_ = ss.bw.Flush() // a failure shows on the next read
	return bufio.NewReaderSize(st, streamBufSize), true
}

func (sw *swarmSource) close(ok bool) {
	for _, ss := range append([]*streamSource{sw.primary}, sw.helpers...) {
		ss.mu.Lock()
		if !ss.closed {
			ss.closed = true
			close(ss.expect)
		}
		st := ss.st // reopen replaces it under the lock
		ss.mu.Unlock()
		if ok && !ss.helper {
			_ = st.Close()
		} else {
			_ = st.Reset()
		}
	}
}

// helpersFor lists the connected peers, other than p and this node, that
// speak the DAG stream protocol, the named peers first: they may hold
// blocks of the DAG (having fetched, or fetching, the same appliance).
func (s *Service) helpersFor(p peer.ID, named []peer.ID) []peer.ID {
	var out []peer.ID
	add := func(q peer.ID) {
		if q == p || q == s.host.ID() || slices.Contains(out, q) || len(out) >= maxHelpers {
			return
		}
		if ps, err := s.host.Peerstore().SupportsProtocols(q, DAGProtocol); err != nil || len(ps) == 0 {
			return
		}
		out = append(out, q)
	}
	for _, q := range named {
		add(q)
	}
	for _, q := range s.host.Network().Peers() {
		add(q)
	}
	return out
}
