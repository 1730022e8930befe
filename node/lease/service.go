package lease

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

const maxProposalTTL = protocol.MaxProposalTTL

// Deps are the service's collaborators. DB, Queue and Key are required;
// a node that sells sets Offers and Provisioner, a node that uses Best
// sets Book.
type Deps struct {
	DB    *store.DB
	Queue *store.Queue
	// Key is the node's key: it signs proposals, leases and the rest.
	Key         crypto.PrivKey
	Offers      OfferSource
	Provisioner Provisioner
	Book        Book
	// Clock: nil means the real clock.
	Clock  clock.Clock
	Limits protocol.Limits
	// Logger: nil discards.
	Logger *slog.Logger
	// OnChange, if set, is called after a lease's stored state changed
	// (granted, running, renewed, ended), with the role of this node and
	// the lease ID. It must not block: it runs on the service's
	// goroutines.
	OnChange func(role Role, id cid.Cid)
	// Registerer, if set, gets the service's Prometheus metrics.
	Registerer prometheus.Registerer
}

// Service negotiates, stores and tracks the node's leases, as buyer and as
// seller. It is safe for concurrent use.
type Service struct {
	cfg    Config
	db     *store.DB
	key    crypto.PrivKey
	self   peer.ID
	offers OfferSource
	prov   Provisioner
	book   Book
	clk    clock.Clock
	lim    protocol.Limits
	log    *slog.Logger
	onChg  func(Role, cid.Cid)
	met    *metrics

	// The capacity owner's inputs (see capacity.go).
	proposals  chan *proposalReq
	commitDone chan commitResult
	releases   releaseQueue
	board      freeBoard

	// copies are the verified copies of own offers (see checkCopy).
	copiesMu sync.Mutex
	copies   map[cid.Cid]offerCopy // guarded by copiesMu

	// denied is the deny list, loaded at New and written through.
	denyMu sync.RWMutex
	denied map[peer.ID]Denied // guarded by denyMu

	// inflight are the buyer's proposals awaiting an answer, so that End
	// can give them up and List show them.
	inflightMu sync.Mutex
	inflight   map[cid.Cid]*inflightProp // guarded by inflightMu

	// gate counts stream handlers and API calls that started work, so that
	// Close waits for them and later ones fail.
	gate gate.Gate

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // owner, commits, publisher, provisioning calls
	once   sync.Once
}

// inflightProp is a proposal sent and not answered yet.
type inflightProp struct {
	cancel context.CancelFunc
	pd     *pending
}

// New makes the service and registers its job handlers on d.Queue (call
// it before the queue starts). It serves no stream until Start.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.DB == nil || d.Queue == nil || d.Key == nil {
		return nil, fmt.Errorf("lease: new: DB, Queue and Key are required: %w", ErrInvalid)
	}
	if (d.Offers == nil) != (d.Provisioner == nil) {
		return nil, fmt.Errorf("lease: new: a seller needs both Offers and Provisioner, a buyer-only node neither: %w", ErrInvalid)
	}
	self, err := peer.IDFromPrivateKey(d.Key)
	if err != nil {
		return nil, fmt.Errorf("lease: new: %w", err)
	}
	if d.Clock == nil {
		d.Clock = clock.New()
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, db: d.DB, key: d.Key, self: self,
		offers: d.Offers, prov: d.Provisioner, book: d.Book,
		clk: d.Clock, lim: d.Limits, log: d.Logger.With("component", "lease"), onChg: d.OnChange,
		met:        newMetrics(d.Registerer),
		proposals:  make(chan *proposalReq, cfg.QueueDepth),
		commitDone: make(chan commitResult, cfg.MaxCommits),
		copies:     make(map[cid.Cid]offerCopy),
		denied:     make(map[peer.ID]Denied),
		inflight:   make(map[cid.Cid]*inflightProp),
		ctx:        ctx,
		cancel:     cancel,
	}
	s.releases.kick = make(chan struct{}, 1)
	s.board.init()
	if err := s.loadDenied(); err != nil {
		cancel()
		return nil, err
	}
	d.Queue.Handle(JobExpire, s.runExpire)
	d.Queue.Handle(JobTerminate, s.runTerminate)
	d.Queue.Handle(JobSendEnd, s.runSendEnd)
	d.Queue.Handle(JobForget, s.runForget)
	d.Queue.Handle(JobExtend, s.runExtend)
	return s, nil
}

// ID is the node's peer ID.
func (s *Service) ID() peer.ID { return s.self }

// Start serves the lease protocol on h, starts the capacity owner (a
// seller's) and hands leases still provisioning to the Provisioner again.
// ctx bounds nothing after Start returns; Close stops the service.
func (s *Service) Start(ctx context.Context, h host.Host) error {
	if h == nil || h.ID() != s.self {
		return fmt.Errorf("lease: start: the host must run with the service's key: %w", ErrInvalid)
	}
	switch err := s.gate.Start(h); {
	case errors.Is(err, gate.ErrClosed):
		return fmt.Errorf("lease: start: %w", ErrClosed)
	case err != nil:
		return fmt.Errorf("lease: start: %v: %w", err, ErrInvalid)
	}

	if s.offers != nil {
		st, err := s.loadHeld()
		if err != nil {
			return fmt.Errorf("lease: start: load held slots: %w", err)
		}
		s.wg.Add(2)
		go s.ownerLoop(st)
		go s.publishLoop()
		if err := s.reprovision(); err != nil {
			s.log.Error("hand provisioning leases to the runtime again", "err", err)
		}
	}
	h.SetStreamHandler(ProtocolID, s.handleStream)
	return nil
}

// Close stops serving, waits for the requests in progress and every
// goroutine of the service. It is idempotent. Close it before the queue
// and the database.
func (s *Service) Close() error {
	s.once.Do(func() {
		if h := s.gate.Shut(); h != nil {
			h.RemoveStreamHandler(ProtocolID)
		}
		s.cancel()
		s.gate.Wait()
		s.wg.Wait()
	})
	return nil
}

// enter registers work in progress; every successful enter pairs with leave.
func (s *Service) enter() error {
	if s.gate.Enter() != nil {
		return ErrClosed
	}
	return nil
}

func (s *Service) leave() { s.gate.Leave() }

// started reports whether Start ran (the host is set).
func (s *Service) hostOrErr() (host.Host, error) {
	h, err := s.gate.Host()
	switch {
	case errors.Is(err, gate.ErrClosed):
		return nil, ErrClosed
	case err != nil:
		return nil, ErrNotStarted
	}
	return h, nil
}

// handleStream serves one request.
func (s *Service) handleStream(st network.Stream) {
	if err := s.enter(); err != nil {
		_ = st.Reset()
		return
	}
	defer s.leave()
	_ = st.SetDeadline(time.Now().Add(s.cfg.RequestTimeout))
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	remote := st.Conn().RemotePeer()
	r := bufio.NewReaderSize(st, 1024)
	tag, body, err := readFrame(r, s.lim, tagPropose, tagRenew, tagEnd, tagStatus)
	if err != nil {
		s.log.Debug("lease request unreadable", "peer", remote, "err", err)
		_ = st.Reset()
		return
	}
	var respTag byte
	var resp []byte
	switch tag {
	case tagPropose:
		_, offer, err := readFrame(r, s.lim, tagOffer)
		if err != nil {
			s.log.Debug("lease proposal without offer frame", "peer", remote, "err", err)
			_ = st.Reset()
			return
		}
		respTag, resp = s.serveProposal(ctx, remote, body, offer)
	case tagRenew:
		respTag, resp = s.serveRenewal(ctx, remote, body)
	case tagEnd:
		respTag, resp = s.serveEnd(ctx, remote, body)
	case tagStatus:
		respTag, resp = s.serveStatus(ctx, remote, body)
	}
	if resp == nil {
		_ = st.Reset()
		return
	}
	if _, err := st.Write(appendFrame(make([]byte, 0, len(resp)+8), respTag, resp)); err != nil {
		s.log.Debug("lease answer not sent", "peer", remote, "err", err)
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

// reject signs a refusal of the request named subject. It returns nil
// bytes (the stream is reset) only if signing fails.
func (s *Service) reject(subject cid.Cid, reason protocol.Reason, detail string) (byte, []byte) {
	s.met.answers.WithLabelValues("refused", string(reason)).Inc()
	r := &protocol.LeaseRejection{
		Version: protocol.LeaseRejectionVersion,
		Seller:  s.self,
		Subject: protocol.Link{Cid: subject},
		Reason:  reason,
		Detail:  cleanText(detail),
		At:      protocol.TimeOf(s.clk.Now()),
	}
	b, err := protocol.Sign(r, s.key)
	if err != nil {
		s.log.Error("sign rejection", "err", err)
		return 0, nil
	}
	return tagRejection, b
}

// cleanText keeps a detail within what a rejection or status may carry.
func cleanText(s string) string { return protocol.CleanText(s, protocol.MaxDetailLen) }

// isClosed reports whether err is the service or the store closing.
func isClosed(err error) bool {
	return errors.Is(err, ErrClosed) || errors.Is(err, store.ErrClosed) || errors.Is(err, context.Canceled)
}

// changed tells the OnChange hook that a lease's state changed.
func (s *Service) changed(role Role, id cid.Cid) {
	if s.onChg != nil {
		s.onChg(role, id)
	}
}
