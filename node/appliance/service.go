package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/client"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"golang.org/x/sync/semaphore"
)

// gcWeight is the weight GC takes of Service.gcSem: all of it. Imports,
// fetches and pins take 1 each, so GC never runs beside them and never
// frees a block that one of them is about to link under a pin.
const gcWeight = 1 << 30

// bitswapProtocols are the protocols bitswap serves; Close removes their
// handlers, since the host outlives the service.
var bitswapProtocols = []protocol.ID{bsnet.ProtocolBitswap, bsnet.ProtocolBitswapOneOne, bsnet.ProtocolBitswapOneZero, bsnet.ProtocolBitswapNoVers}

// Service imports, stores, serves and fetches appliances. Its methods are
// safe for concurrent use.
type Service struct {
	cfg     Config
	host    host.Host
	ds      datastore.Batching
	routing routing.ContentRouting // nil: no DHT
	clk     clock.Clock
	log     *slog.Logger

	// bstore is boxo's blockstore over ds (Put checks Has first, identity
	// CIDs are answered inline); wbstore writes without that check, for
	// blocks a fetch already knows are missing.
	bstore  blockstore.Blockstore
	wbstore blockstore.Blockstore
	// dag reads local blocks only: it never triggers a fetch.
	dag ipld.DAGService
	// gcSem: GC takes gcWeight, every operation that adds or pins takes 1.
	gcSem *semaphore.Weighted

	gatewayOnce sync.Once
	gateway     *gatewayHandler

	stats struct {
		blocksFetched, bytesFetched, blocksServed, bytesServed atomic.Uint64
	}

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	// wg counts background goroutines, operations under way and served
	// streams; Close waits for it.
	wg sync.WaitGroup

	mu       sync.Mutex // guards started, closed, bswap, provideq, streams
	started  bool
	closed   bool
	bswap    *bitswap.Bitswap
	provideq chan cid.Cid
	streams  int // DAG streams being served
}

// New builds a Service over the node's host and datastore. routing may be
// nil (no DHT: fetches use the peers they are given and those connected).
// Nothing runs until Start; Import, Open, List, pins, GC and the gateway
// work before it, Fetch does not.
func New(cfg Config, h host.Host, ds datastore.Batching, r routing.ContentRouting, clk clock.Clock, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil || ds == nil || clk == nil || log == nil {
		return nil, fmt.Errorf("appliance: New needs a host, a datastore, a clock and a logger: %w", ErrInvalid)
	}
	bstore := blockstore.NewIdStore(blockstore.NewBlockstore(ds))
	s := &Service{
		cfg:     cfg,
		host:    h,
		ds:      ds,
		routing: r,
		clk:     clk,
		log:     log.With("service", "appliance"),
		bstore:  bstore,
		wbstore: blockstore.NewIdStore(blockstore.NewBlockstore(ds, blockstore.WriteThrough(true))),
		dag:     merkledag.NewDAGService(blockservice.New(bstore, nil)),
		gcSem:   semaphore.NewWeighted(gcWeight),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start starts bitswap (client and server) and the DAG stream protocol on
// the host, and the announcing of pinned roots. ctx bounds Start only.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("appliance start: %w", ErrClosed)
	}
	if s.started {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("appliance start: %w", err)
	}
	var finder routing.ContentDiscovery // an untyped nil when there is no routing
	if s.routing != nil {
		finder = s.routing
	}
	net := bsnet.NewFromIpfsHost(s.host, bsnet.SupportedProtocols(append([]protocol.ID(nil), bitswapProtocols...)))
	dontHave := client.DefaultDontHaveTimeoutConfig()
	dontHave.MinTimeout = s.cfg.BitswapMinDontHaveTimeout
	dontHave.MaxTimeout = max(dontHave.MaxTimeout, dontHave.MinTimeout)
	s.bswap = bitswap.New(s.ctx, net, finder, s.bstore,
		bitswap.MaxOutstandingBytesPerPeer(s.cfg.BitswapMaxOutstandingBytesPerPeer),
		bitswap.WithClientOption(client.WithDontHaveTimeoutConfig(dontHave)),
	)
	if s.cfg.Stream {
		s.host.SetStreamHandler(DAGProtocol, s.handleDAGStream)
	}
	if s.cfg.Provide && s.routing != nil {
		s.provideq = make(chan cid.Cid, 1024)
		s.wg.Add(1)
		go s.provideLoop(s.provideq)
	}
	s.started = true
	s.log.Info("appliance service started", "stream", s.cfg.Stream, "provide", s.cfg.Provide && s.routing != nil)
	return nil
}

// Close stops every goroutine the service started, cancels operations
// under way and waits for them, and removes its protocol handlers from the
// host. It does not close the host or the datastore. Close is idempotent.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	started := s.started
	s.mu.Unlock()

	if started && s.cfg.Stream {
		s.host.RemoveStreamHandler(DAGProtocol)
	}
	s.wg.Wait()
	if started {
		for _, p := range bitswapProtocols {
			s.host.RemoveStreamHandler(p)
		}
		_ = s.bswap.Close()
	}
	return nil
}

// begin registers an operation: it fails once the service is closed, and
// returns a context that Close cancels and a func that ends the operation.
func (s *Service) begin(ctx context.Context, op string) (context.Context, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	s.wg.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel(); s.wg.Done() }, nil
}

// exchange returns bitswap, or an error before Start and after Close.
func (s *Service) exchange(op string) (*bitswap.Bitswap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	case !s.started:
		return nil, fmt.Errorf("%s: call Start first: %w", op, ErrNotStarted)
	}
	return s.bswap, nil
}

// Stats are counters since the service was built.
type Stats struct {
	// BlocksFetched and BytesFetched count the blocks that fetches received
	// from the network and stored (by bitswap or the DAG stream).
	BlocksFetched, BytesFetched uint64
	// BlocksServed and BytesServed count the blocks sent over DAG streams
	// (bitswap keeps its own counters).
	BlocksServed, BytesServed uint64
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	return Stats{
		BlocksFetched: s.stats.blocksFetched.Load(),
		BytesFetched:  s.stats.bytesFetched.Load(),
		BlocksServed:  s.stats.blocksServed.Load(),
		BytesServed:   s.stats.bytesServed.Load(),
	}
}
