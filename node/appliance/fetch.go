package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ipfs/boxo/exchange"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Transport chooses how a fetch moves blocks.
type Transport int

const (
	// TransportAuto pulls the DAG over the DAG stream protocol from the
	// first named (or, with none, found) peer that speaks it, and falls
	// back to bitswap for whatever is still missing. Connected spotmesh
	// peers help: when several nodes fetch the same appliance at once, each
	// takes its own share of the blocks from the named peer and the rest
	// from the others (see swarmSource), so the named peer sends about one
	// copy, not one per fetcher.
	TransportAuto Transport = iota
	// TransportBitswap uses bitswap only: any IPFS node, any number of
	// sources, found by the want-haves bitswap broadcasts.
	TransportBitswap
	// TransportStream uses the DAG stream protocol only.
	TransportStream
)

// String implements fmt.Stringer.
func (t Transport) String() string {
	switch t {
	case TransportAuto:
		return "auto"
	case TransportBitswap:
		return "bitswap"
	case TransportStream:
		return "stream"
	}
	return fmt.Sprintf("Transport(%d)", int(t))
}

// FetchOptions tune one Fetch.
type FetchOptions struct {
	// Peers are known holders, dialled first: the buyer a lease names, or
	// any IPFS node given by multiaddr. With none (or none reachable) the
	// routing is asked for the root's providers.
	Peers []peer.AddrInfo
	// MaxSize is the largest appliance accepted, in bytes; 0 means
	// Config.MaxSize. The fetch stops as soon as the file bytes received
	// pass it, whatever the root declares.
	MaxSize uint64
	// Progress, if not nil, is called as blocks arrive with the file bytes
	// held so far and the size the root declares (0 until the root is here;
	// a DAG that lies about it fails at the end).
	Progress func(done, total uint64)
	// Meta names the appliance if this node has no record of it yet.
	Meta Meta
	// Pin is the reason of the pin set on success; "" means ReasonGet.
	Pin string
	// Transport chooses bitswap, the DAG stream, or both (the default).
	Transport Transport
}

// Fetch gets the appliance c from the network into the local store, pins
// it and announces it. Every block is verified against its CID. Blocks
// already here are not fetched again, so a fetch that was interrupted (even
// by a restart) resumes where it stopped. It fails with ErrTooLarge past
// the size limit, ErrStalled when no block arrives for Config.IdleTimeout,
// ErrCorrupt when the only peers with a block send wrong bytes, and
// ErrMalformed when the DAG is not a well-formed UnixFS file.
func (s *Service) Fetch(ctx context.Context, c cid.Cid, opts FetchOptions) (Info, error) {
	if !c.Defined() {
		return Info{}, fmt.Errorf("fetch: no CID given: %w", ErrInvalid)
	}
	op := "fetch " + c.String()
	if err := checkCID(c); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := opts.Meta.Validate(); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	reason := opts.Pin
	if reason == "" {
		reason = ReasonGet
	}
	if err := ValidateReason(reason); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	maxSize := opts.MaxSize
	if maxSize == 0 {
		maxSize = s.cfg.MaxSize
	}
	if opts.Transport < TransportAuto || opts.Transport > TransportStream {
		return Info{}, fmt.Errorf("%s: transport %v: %w", op, opts.Transport, ErrInvalid)
	}
	if opts.Transport == TransportStream && !s.cfg.Stream {
		return Info{}, fmt.Errorf("%s: the DAG stream is off in this node's config; use bitswap: %w", op, ErrInvalid)
	}
	bswap, err := s.exchange(op)
	if err != nil {
		return Info{}, err
	}
	ctx, end, err := s.begin(ctx, op)
	if err != nil {
		return Info{}, err
	}
	defer end()
	if err := s.gcSem.Acquire(ctx, 1); err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	defer s.gcSem.Release(1)

	size, err := s.newLocalWalk(maxSize, nil).size(ctx, c)
	switch {
	case err == nil:
		s.log.Debug("appliance already here", "cid", c)
	case !errors.Is(err, ErrNotFound):
		return Info{}, fmt.Errorf("%s: %w", op, err)
	default:
		if err := s.fetchMissing(ctx, bswap, c, maxSize, opts); err != nil {
			return Info{}, fmt.Errorf("%s: %w", op, err)
		}
		if size, err = s.newLocalWalk(maxSize, nil).size(ctx, c); err != nil {
			return Info{}, fmt.Errorf("%s: check the fetched DAG: %w", op, err)
		}
	}
	rec, err := s.putRecordAndPin(ctx, c, record{Name: opts.Meta.Name, Format: opts.Meta.Format, Size: size, Added: s.now()}, reason)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	s.announce(c)
	pins, err := s.pinsOf(ctx, c)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", op, err)
	}
	return rec.info(c, pins), nil
}

// fetchMissing brings every missing block of c's DAG here.
func (s *Service) fetchMissing(ctx context.Context, bswap exchangeSession, c cid.Cid, maxSize uint64, opts FetchOptions) error {
	connected, tried := s.connectAll(ctx, opts.Peers)
	if len(connected) == 0 && s.routing != nil {
		found, err := s.findProvider(ctx, c)
		if err != nil {
			return err
		}
		if found != "" {
			connected = append(connected, found)
			tried = append(tried, "found by the DHT: "+found.String())
		} else {
			tried = append(tried, "the DHT found no provider")
		}
	}

	var failures []error
	if s.cfg.Stream && opts.Transport != TransportBitswap {
		for _, p := range connected {
			helpers := s.helpersFor(p, connected)
			err := s.runFetch(ctx, c, maxSize, opts.Progress, startFraction(s.host.ID(), helpers), func(r *fetchRun) (source, error) {
				return s.openSwarmSource(ctx, p, helpers, r)
			})
			if err == nil {
				return nil
			}
			if fatal(err) {
				return err
			}
			s.log.Info("DAG stream fetch failed; trying the next source", "cid", c, "peer", p, "err", err)
			failures = append(failures, err)
		}
		if opts.Transport == TransportStream {
			if len(failures) == 0 {
				return fmt.Errorf("no peer to stream from (%s): %w", strings.Join(tried, "; "), ErrNotFound)
			}
			return errors.Join(failures...)
		}
	}
	var start float64
	if len(connected) > 0 {
		start = startFraction(s.host.ID(), s.helpersFor(connected[0], connected))
	}
	err := s.runFetch(ctx, c, maxSize, opts.Progress, start, func(r *fetchRun) (source, error) {
		return &bitswapSource{sess: bswap.NewSession(ctx), run: r}, nil
	})
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrStalled) {
		switch {
		case len(tried) > 0:
			err = fmt.Errorf("%w (peers: %s)", err, strings.Join(tried, "; "))
		default:
			err = fmt.Errorf("%w (no peer was named and there is no DHT to find one: name a peer that holds it)", err)
		}
	}
	return errors.Join(append(failures, err)...)
}

// exchangeSession is what a fetch needs of bitswap.
type exchangeSession interface {
	NewSession(context.Context) exchange.Fetcher
}

// fatal errors end a fetch; others let it try another source.
func fatal(err error) bool {
	return errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMalformed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed)
}

// connectAll dials the given peers at once; it returns those connected
// and a line per peer for error messages.
func (s *Service) connectAll(ctx context.Context, peers []peer.AddrInfo) ([]peer.ID, []string) {
	var (
		mu        sync.Mutex
		wg        sync.WaitGroup
		connected []peer.ID
		tried     = make([]string, len(peers))
	)
	for i, p := range peers {
		if p.ID == s.host.ID() {
			tried[i] = "self"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
			defer cancel()
			if err := s.host.Connect(cctx, p); err != nil {
				s.log.Info("cannot reach a named peer", "peer", p.ID, "err", err)
				tried[i] = fmt.Sprintf("%s unreachable: %v", p.ID, err)
				return
			}
			tried[i] = p.ID.String()
			mu.Lock()
			connected = append(connected, p.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Keep the caller's order: the first named peer is the first tried.
	ordered := make([]peer.ID, 0, len(connected))
	for _, p := range peers {
		for _, q := range connected {
			if p.ID == q {
				ordered = append(ordered, q)
				break
			}
		}
	}
	return ordered, tried
}

// findProvider asks the routing for holders of c and returns the first one
// it can connect to ("" when none); bitswap keeps looking for more.
func (s *Service) findProvider(ctx context.Context, c cid.Cid) (peer.ID, error) {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FindProvidersTimeout)
	defer cancel()
	for p := range s.routing.FindProvidersAsync(fctx, c, s.cfg.MaxProviders) {
		if p.ID == s.host.ID() || p.ID == "" {
			continue
		}
		cctx, ccancel := context.WithTimeout(fctx, s.cfg.ConnectTimeout)
		err := s.host.Connect(cctx, p)
		ccancel()
		if err != nil {
			s.log.Info("cannot reach a provider", "cid", c, "peer", p.ID, "err", err)
			continue
		}
		return p.ID, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return "", nil
}

// source delivers requested blocks, verified, to its run's results.
type source interface {
	// want asks for blocks; it does not wait for them.
	want(ctx context.Context, cs []cid.Cid) error
	// close releases the source; ok says whether the run succeeded.
	close(ok bool)
	// limit is how many blocks the source takes in flight at most.
	limit() int
	// String names the source in errors.
	String() string
}

// fetchRun is one pass over a DAG: it walks it from the root in order,
// takes what is here from the store and asks its source for the rest.
type fetchRun struct {
	s        *Service
	root     cid.Cid
	maxSize  uint64 // file bytes
	maxMeta  uint64 // bytes of dag-pb structure
	progress func(done, total uint64)
	// start is where in the file this fetch begins, as a fraction of its
	// size (see firstLink); pos holds the file offset of the blocks
	// queued and not here yet, by multihash.
	start float64
	pos   map[string]uint64

	seen  map[string]struct{} // multihashes queued, so a repeated block is fetched once
	queue []cid.Cid
	head  int

	content  uint64 // file bytes held: here before, or received
	meta     uint64
	largest  int // the largest leaf seen (1 MiB until one is), for the window
	leaves   int
	declared uint64
	rootSeen bool

	w       *blockWriter
	results chan blocks.Block
	errc    chan error // a source's failure; buffered, first one wins
	wg      sync.WaitGroup
}

// runFetch makes a run and drives it with the source newSource makes.
func (s *Service) runFetch(ctx context.Context, root cid.Cid, maxSize uint64, progress func(done, total uint64), start float64, newSource func(*fetchRun) (source, error)) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &fetchRun{
		s:        s,
		root:     root,
		maxSize:  maxSize,
		maxMeta:  maxSize/64 + uint64(MaxBlockSize),
		progress: progress,
		seen:     map[string]struct{}{},
		results:  make(chan blocks.Block, maxWindowBlocks),
		largest:  1 << 20,
		errc:     make(chan error, 1),
		pos:      map[string]uint64{},
		start:    start,
	}
	r.w = s.newWriter(ctx, s.wbstore, writeQueueBlocks)
	src, err := newSource(r)
	if err != nil {
		cancel()
		return errors.Join(err, r.w.close())
	}
	defer func() {
		cancel()
		src.close(err == nil)
		r.wg.Wait()
		// Blocks that arrived stay, whatever ended the run: a later fetch
		// does not fetch them again.
		if werr := r.w.close(); werr != nil && err == nil {
			err = werr
		}
	}()
	return r.loop(ctx, src)
}

// Bounds of a run's window in blocks.
const (
	minWindowBlocks = 2
	maxWindowBlocks = 256
)

// window is how many blocks may be in flight: WindowBytes of the largest
// block seen so far.
func (r *fetchRun) window() int {
	return min(max(r.s.cfg.WindowBytes/max(r.largest, 1), minWindowBlocks), maxWindowBlocks)
}

func (r *fetchRun) push(c cid.Cid) {
	k := string(c.Hash())
	if _, ok := r.seen[k]; ok {
		return
	}
	r.seen[k] = struct{}{}
	r.queue = append(r.queue, c)
}

func (r *fetchRun) pop() cid.Cid {
	c := r.queue[r.head]
	r.queue[r.head] = cid.Undef
	r.head++
	if r.head == len(r.queue) {
		r.queue, r.head = r.queue[:0], 0
	}
	return c
}

// fail reports a source's failure to the loop.
func (r *fetchRun) fail(err error) {
	select {
	case r.errc <- err:
	default:
	}
}

func (r *fetchRun) loop(ctx context.Context, src source) error {
	s := r.s
	r.push(r.root)
	inflight := 0
	idle := s.clk.Timer(s.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		var batch []cid.Cid
		for inflight+len(batch) < min(r.window(), src.limit()) && r.head < len(r.queue) {
			c := r.pop()
			here, err := r.local(ctx, c)
			if err != nil {
				return err
			}
			if !here {
				batch = append(batch, c)
			}
		}
		if len(batch) > 0 {
			if err := src.want(ctx, batch); err != nil {
				return err
			}
			inflight += len(batch)
		}
		if inflight == 0 {
			if r.head < len(r.queue) {
				continue
			}
			return nil
		}
		select {
		case b := <-r.results:
			inflight--
			if !idle.Stop() {
				select { // drain a tick that fired meanwhile
				case <-idle.C:
				default:
				}
			}
			idle.Reset(s.cfg.IdleTimeout)
			if err := r.accept(b); err != nil {
				return err
			}
			s.stats.blocksFetched.Add(1)
			s.stats.bytesFetched.Add(uint64(len(b.RawData())))
			if err := r.w.put(ctx, b); err != nil {
				return err
			}
		case err := <-r.errc:
			return err
		case <-idle.C:
			return fmt.Errorf("no block arrived from %s for %v; %d blocks (%d file bytes) are here, %d more asked for: %w",
				src, s.cfg.IdleTimeout, len(r.seen)-len(r.queue)+r.head-inflight, r.content, inflight, ErrStalled)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// local accounts for c from the store if it is here.
func (r *fetchRun) local(ctx context.Context, c cid.Cid) (bool, error) {
	bs := r.s.bstore
	if c.Type() == cid.Raw {
		n, err := bs.GetSize(ctx, c)
		if err != nil {
			if isNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("read block %s: %w", c, err)
		}
		return true, r.account(c, node{data: uint64(n), declared: uint64(n)}, n)
	}
	b, err := bs.Get(ctx, c)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("read block %s: %w", c, err)
	}
	return true, r.accept(b)
}

// accept takes a verified block: it decodes it, counts it against the
// limits and queues its links.
func (r *fetchRun) accept(b blocks.Block) error {
	nd, err := decode(b)
	if err != nil {
		return err
	}
	return r.account(b.Cid(), nd, len(b.RawData()))
}

func (r *fetchRun) account(c cid.Cid, nd node, size int) error {
	if c.Type() == cid.Raw || len(nd.links) == 0 {
		r.largest = max(r.largest, size) // leaves set the pace
		if r.leaves == 0 {
			r.largest = size
		}
		r.leaves++
	}
	if !r.rootSeen && c.Equals(r.root) {
		r.rootSeen = true
		r.declared = nd.declared
		if nd.declared > r.maxSize {
			return fmt.Errorf("the root declares %d bytes, more than the limit of %d: %w", nd.declared, r.maxSize, ErrTooLarge)
		}
	}
	r.content += nd.data
	if c.Type() == cid.DagProtobuf {
		r.meta += uint64(size) - nd.data
	}
	if r.content > r.maxSize {
		return fmt.Errorf("received %d bytes of file data, more than the limit of %d (the root declares %d): %w", r.content, r.maxSize, r.declared, ErrTooLarge)
	}
	if r.meta > r.maxMeta {
		return fmt.Errorf("received %d bytes of DAG structure, more than %d for a limit of %d: %w", r.meta, r.maxMeta, r.maxSize, ErrTooLarge)
	}
	defer delete(r.pos, string(c.Hash()))
	if n := len(nd.links); n > 0 {
		off := r.firstLink(c, nd)
		for i := range n {
			r.push(nd.links[(off+i)%n])
		}
	}
	if r.progress != nil {
		r.progress(r.content, r.declared)
	}
	return nil
}

// firstLink is the index of the link of nd (the block c) to fetch first.
// A fetch begins at a point of the file, r.start of the way in, and walks
// on from there, wrapping around: nodes that fetch the same appliance at
// once begin at points spread evenly over it, so that each soon holds
// blocks the others lack and serves them. In the node whose range holds
// that point, the walk starts at the link covering it; elsewhere at the
// first link. It also records where each inner child begins.
func (r *fetchRun) firstLink(c cid.Cid, nd node) int {
	if len(nd.sizes) != len(nd.links) {
		return 0 // not UnixFS-sized links: the plain order
	}
	base := r.pos[string(c.Hash())]
	target := uint64(r.start * float64(r.declared))
	first, at := 0, base+nd.data
	for i, l := range nd.links {
		if target >= at && target < at+nd.sizes[i] {
			first = i
		}
		if _, ok := r.pos[string(l.Hash())]; !ok {
			r.pos[string(l.Hash())] = at
		}
		at += nd.sizes[i]
	}
	return first
}

// position is where in the file the block c begins, as a fraction of
// the file's size, if known.
func (r *fetchRun) position(c cid.Cid) (float64, bool) {
	at, ok := r.pos[string(c.Hash())]
	if !ok || r.declared == 0 {
		return 0, false
	}
	return float64(at) / float64(r.declared), true
}

// startFraction spreads the nodes that fetch at once over the file: this
// node's rank among itself and the helpers (by peer ID) over their number.
// With no helper it is 0: the file in order.
func startFraction(self peer.ID, helpers []peer.ID) float64 {
	rank := 0
	for _, h := range helpers {
		if h < self {
			rank++
		}
	}
	return float64(rank) / float64(len(helpers)+1)
}

// bitswapSource asks bitswap, in one session, for the blocks of a run.
// Bitswap hashes every block it receives and delivers only those that
// match a CID it wants, so what arrives is verified.
type bitswapSource struct {
	sess exchange.Fetcher
	run  *fetchRun
}

func (b *bitswapSource) String() string { return "bitswap" }

// bitswapMaxInflight is how many blocks a fetch wants of a bitswap session
// at once: boxo's session keeps at most 64 wants live (its
// broadcastLiveWantsLimit), and with more in flight a fetch stalled at its
// tail with dozens of wants never answered (TestBitswapSmallBlocks: 64 KiB
// blocks and an 8 MiB window, 128 wants).
const bitswapMaxInflight = 64

// bitswapWindowBytes bounds a bitswap fetch's window in bytes: bitswap
// buffers blocks on both sides (message queues, the server's outstanding
// bytes), so its heap grows faster with the window than a DAG stream's.
// A 1 GiB fetch peaked at 201 MiB of heap with 32 MiB in flight, 122 MiB
// with 8 (TestMemory; the limit is 256 MiB).
const bitswapWindowBytes = 8 << 20

func (b *bitswapSource) limit() int {
	return min(bitswapMaxInflight, max(bitswapWindowBytes/max(b.run.largest, 1), minWindowBlocks))
}

func (b *bitswapSource) want(ctx context.Context, cs []cid.Cid) error {
	ch, err := b.sess.GetBlocks(ctx, cs)
	if err != nil {
		return fmt.Errorf("bitswap: %w", err)
	}
	r := b.run
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for blk := range ch {
			select {
			case r.results <- blk:
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

func (b *bitswapSource) close(bool) {}
