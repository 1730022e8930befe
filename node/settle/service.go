package settle

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spotmesh/spotmesh/node/internal/gate"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// Job kinds of the service on the node's durable queue.
const (
	// JobMeter meters a running lease sold at the end of each period.
	JobMeter = "settle.meter"
	// JobSend sends a lease's unanswered receipts, then its settlement or
	// claim, until the buyer has them.
	JobSend = "settle.send"
)

// Deps are the service's collaborators. DB, Queue, Key and Leases are
// required; a node that sells sets Meter.
type Deps struct {
	DB     *store.DB
	Queue  *store.Queue
	Key    crypto.PrivKey
	Leases Leases
	Meter  Meter
	// Clock: nil means the real clock.
	Clock  clock.Clock
	Limits protocol.Limits
	// Logger: nil discards.
	Logger *slog.Logger
	// Registerer, if set, gets the service's Prometheus metrics.
	Registerer prometheus.Registerer
	// FindPeer, if set, finds the addresses of a party the peerstore no
	// longer holds (the node's DHT).
	FindPeer func(ctx context.Context, p peer.ID) (peer.AddrInfo, error)
}

// Service meters the node's leases sold, checks and answers the receipts
// of its leases bought, settles both and keeps the ledger. It is safe for
// concurrent use.
type Service struct {
	cfg    Config
	db     *store.DB
	queue  *store.Queue
	key    crypto.PrivKey
	self   peer.ID
	leases Leases
	meter  Meter
	clk    clock.Clock
	lim    protocol.Limits
	log    *slog.Logger
	find   func(context.Context, peer.ID) (peer.AddrInfo, error)
	met    *metrics

	// locks serialize the changes of one lease's billing.
	lockMu sync.Mutex
	locks  map[cid.Cid]*leaseLock // guarded by lockMu

	// bought caches the buyer's billing of its leases, so that a receipt
	// costs no read of the store. An entry is read and written only under
	// its lease's lock.
	cacheMu sync.Mutex
	bought  map[cid.Cid]*boughtEntry // guarded by cacheMu

	// commits feed the committer, which writes the buyer's answers of
	// many leases in one synced transaction.
	commits    chan *commitReq
	commitStop chan struct{}

	probes *prober

	// tamper, set by tests only, rewrites each receipt after signing.
	tamper func(r *protocol.UsageReceipt, raw []byte) []byte

	gate gate.Gate

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New makes the service and registers its jobs on d.Queue (call it
// before the queue starts). It serves nothing until Start.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.DB == nil || d.Queue == nil || d.Key == nil || d.Leases == nil {
		return nil, fmt.Errorf("settle: new: DB, Queue, Key and Leases are required: %w", ErrInvalid)
	}
	self, err := peer.IDFromPrivateKey(d.Key)
	if err != nil {
		return nil, fmt.Errorf("settle: new: %w", err)
	}
	if d.Clock == nil {
		d.Clock = clock.New()
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, db: d.DB, queue: d.Queue, key: d.Key, self: self,
		leases: d.Leases, meter: d.Meter, clk: d.Clock, lim: d.Limits,
		log: d.Logger.With("component", "settle"), find: d.FindPeer,
		met:     newMetrics(d.Registerer),
		locks:   make(map[cid.Cid]*leaseLock),
		bought:  make(map[cid.Cid]*boughtEntry),
		commits: make(chan *commitReq, 1024), commitStop: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	s.probes = newProber(s)
	d.Queue.Handle(JobMeter, s.runMeter)
	d.Queue.Handle(JobSend, s.runSend)
	return s, nil
}

// ID is the node's peer ID.
func (s *Service) ID() peer.ID { return s.self }

// Start serves the receipt and settle protocols on h, and picks up the
// leases that changed while the node was down.
func (s *Service) Start(ctx context.Context, h host.Host) error {
	if h == nil || h.ID() != s.self {
		return fmt.Errorf("settle: start: the host must run with the service's key: %w", ErrInvalid)
	}
	switch err := s.gate.Start(h); {
	case errors.Is(err, gate.ErrClosed):
		return fmt.Errorf("settle: start: %w", ErrClosed)
	case err != nil:
		return fmt.Errorf("settle: start: %v: %w", err, ErrInvalid)
	}
	// The committers (one: badger serializes commits; see commitLoop).
	for range committers {
		s.wg.Add(1)
		go s.commitLoop()
	}
	h.SetStreamHandler(ReceiptProtocol, s.handleReceipts)
	h.SetStreamHandler(SettleProtocol, s.handleSettle)
	if s.cfg.Probe {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.probes.loop(s.ctx)
		}()
	}
	// Leases that changed while this service did not listen.
	if s.meter != nil {
		sold, err := s.leases.List(true)
		if err != nil {
			return fmt.Errorf("settle: start: list leases sold: %w", err)
		}
		for _, l := range sold {
			s.sellerChanged(l)
		}
	}
	bought, err := s.leases.List(false)
	if err != nil {
		return fmt.Errorf("settle: start: list leases bought: %w", err)
	}
	for _, l := range bought {
		s.buyerChanged(l)
	}
	return nil
}

// Close stops serving and waits for the exchanges in progress. Close it
// before the queue and the database.
func (s *Service) Close() error {
	s.once.Do(func() {
		if h := s.gate.Shut(); h != nil {
			h.RemoveStreamHandler(ReceiptProtocol)
			h.RemoveStreamHandler(SettleProtocol)
		}
		s.cancel()
		if started := s.gate.Wait(); started {
			close(s.commitStop) // no handler is left to commit
		}
		s.wg.Wait()
	})
	return nil
}

// leaseLock is one lease's lock, kept while someone holds or waits for it.
type leaseLock struct {
	mu   sync.Mutex
	refs int // guarded by Service.lockMu
}

// enter lets a handler or hook in, unless the service closed; leave lets
// it out.
func (s *Service) enter() error {
	if s.gate.Enter() != nil {
		return ErrClosed
	}
	return nil
}

func (s *Service) leave() { s.gate.Leave() }

// lock locks the billing of one lease.
func (s *Service) lock(id cid.Cid) func() {
	s.lockMu.Lock()
	l := s.locks[id]
	if l == nil {
		l = &leaseLock{}
		s.locks[id] = l
	}
	l.refs++
	s.lockMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.lockMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, id)
		}
		s.lockMu.Unlock()
	}
}

// commitReq is one handler's writes for the committer.
type commitReq struct {
	fn   func(*store.Txn) error
	done chan error
}

// maxCommitBatch bounds the writes of one committed transaction.
const maxCommitBatch = 256

// committers is the number of batches written at once: one, since badger
// applies commits one after the other (more made the benchmark slower).
const committers = 1

// commitLoop writes the requests waiting, many in one synced transaction,
// so that a thousand leases' receipts share a few commits and fsyncs.
func (s *Service) commitLoop() {
	defer s.wg.Done()
	for {
		var first *commitReq
		select {
		case first = <-s.commits:
		case <-s.commitStop:
			return
		}
		batch := []*commitReq{first}
	more:
		for len(batch) < maxCommitBatch {
			select {
			case r := <-s.commits:
				batch = append(batch, r)
			default:
				break more
			}
		}
		err := s.db.Update(func(t *store.Txn) error {
			for _, r := range batch {
				if err := r.fn(t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(batch) > 1 {
			// One bad request (or a batch too big) fails alone.
			for _, r := range batch {
				r.done <- s.db.Update(r.fn)
			}
			continue
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// commit writes fn durably through the committer, with other handlers'
// writes. Call it from a stream handler (inside enter/leave).
func (s *Service) commit(fn func(*store.Txn) error) error {
	r := &commitReq{fn: fn, done: make(chan error, 1)}
	select {
	case s.commits <- r:
	case <-s.commitStop:
		return ErrClosed
	}
	return <-r.done
}

// LeaseChanged is the lease service's OnChange hook: a lease's state
// changed. It does not block.
func (s *Service) LeaseChanged(sold bool, id cid.Cid) {
	if err := s.enter(); err != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.leave()
		l, err := s.leases.Lease(id, sold)
		if err != nil {
			s.log.Warn("read changed lease", "lease", id, "err", err)
			return
		}
		if sold {
			s.sellerChanged(l)
		} else {
			unlock := s.lock(id)
			s.dropBought(id) // its lease changed (renewed, ended)
			unlock()
			s.buyerChanged(l)
		}
	}()
}

// buyerChanged starts or stops probing a lease bought.
func (s *Service) buyerChanged(l *Lease) {
	if !s.cfg.Probe {
		return
	}
	done := l.State == protocol.StateEnded
	if !done {
		_ = s.db.View(func(t *store.Txn) error {
			st, ok, _ := getState(t, false, l.ID)
			done = ok && (st.Final || st.Status != StatusOpen)
			return nil
		})
	}
	if done {
		s.probes.remove(l.ID)
		return
	}
	if l.Endpoint != "" {
		s.probes.add(l.ID, l.Endpoint, l.Lease.Proposal.ReceiptInterval.Std())
	}
}

// roundTrip sends one request frame to p on proto and reads one answer
// frame whose tag is one of want.
func (s *Service) roundTrip(ctx context.Context, p peer.ID, proto2 string, req []byte, want ...byte) (byte, []byte, error) {
	h, err := s.gate.Host()
	switch {
	case errors.Is(err, gate.ErrClosed):
		return 0, nil, ErrClosed
	case err != nil:
		return 0, nil, fmt.Errorf("settle: %v: %w", err, ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if h.Network().Connectedness(p) != network.Connected {
		dctx, dcancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		err := h.Connect(dctx, peer.AddrInfo{ID: p})
		if err != nil && s.find != nil {
			if ai, ferr := s.find(dctx, p); ferr == nil {
				err = h.Connect(dctx, ai)
			}
		}
		dcancel()
		if err != nil {
			return 0, nil, fmt.Errorf("%w: connect %s: %v", ErrUnreachable, p, err)
		}
	}
	st, err := h.NewStream(ctx, p, protocolID(proto2))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: open stream to %s: %v", ErrUnreachable, p, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if _, err := st.Write(req); err != nil {
		_ = st.Reset()
		return 0, nil, fmt.Errorf("%w: send to %s: %v", ErrUnreachable, p, errOr(ctx, err))
	}
	_ = st.CloseWrite()
	tag, body, err := readFrame(bufio.NewReaderSize(st, 4096), want...)
	if err != nil {
		_ = st.Reset()
		return 0, nil, fmt.Errorf("%w: no valid answer from %s: %v", ErrUnreachable, p, errOr(ctx, err))
	}
	_ = st.Close()
	return tag, body, nil
}

func errOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// serve runs one request handler on a stream: read one frame, answer one.
func (s *Service) serve(st network.Stream, want []byte, fn func(ctx context.Context, remote peer.ID, tag byte, body []byte) (byte, []byte)) {
	if err := s.enter(); err != nil {
		_ = st.Reset()
		return
	}
	defer s.leave()
	_ = st.SetDeadline(time.Now().Add(s.cfg.RequestTimeout))
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	remote := st.Conn().RemotePeer()
	tag, body, err := readFrame(bufio.NewReaderSize(st, 4096), want...)
	if err != nil {
		s.log.Debug("settle request unreadable", "peer", remote, "err", err)
		_ = st.Reset()
		return
	}
	rtag, resp := fn(ctx, remote, tag, body)
	if rtag == 0 {
		_ = st.Reset()
		return
	}
	if _, err := st.Write(appendFrame(make([]byte, 0, len(resp)+8), rtag, resp)); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

func (s *Service) refuse(reason string, st *state) (byte, []byte) {
	r := refusal{Reason: reason}
	if st != nil {
		r.Seq, r.AckedSeq = st.Seq, st.AckedSeq
	}
	b, err := encodeMsg(r)
	if err != nil {
		return 0, nil
	}
	return tagRefused, b
}

// isClosed reports whether err comes from closing the node.
func isClosed(err error) bool {
	return errors.Is(err, store.ErrClosed) || errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled)
}
