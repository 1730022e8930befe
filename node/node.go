package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/node/runtime"
	httpdriver "github.com/spotmesh/spotmesh/node/runtime/http"
	"github.com/spotmesh/spotmesh/node/runtime/process"
	"github.com/spotmesh/spotmesh/node/settle"
	proto "github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// Version is the build's version, set with -ldflags by release builds.
var Version = "dev"

// Option tweaks a node beyond its Config.
type Option func(*options)

type options struct {
	log    *slog.Logger
	clk    clock.Clock
	host   host.Host
	noAPI  bool
	limits *proto.Limits
	key    crypto.PrivKey
	psOpts []pubsub.Option
	driver runtime.Driver
	rtCfg  *runtime.Config
	lcfg   *lease.Config
	scfg   *settle.Config
}

// WithDriver runs the instances of leases sold through d instead of the
// driver the config names (a fake in tests, a driver configured
// elsewhere). The node closes it on Close.
func WithDriver(d runtime.Driver) Option { return func(o *options) { o.driver = d } }

// WithRuntimeConfig tunes the runtime's polling.
func WithRuntimeConfig(c runtime.Config) Option { return func(o *options) { o.rtCfg = &c } }

// WithLeaseConfig tunes the lease service.
func WithLeaseConfig(c lease.Config) Option { return func(o *options) { o.lcfg = &c } }

// WithSettleConfig replaces the settle service's defaults (tests shorten
// its resend and claim delays).
func WithSettleConfig(c settle.Config) Option { return func(o *options) { o.scfg = &c } }

// WithPubsubOptions adds gossipsub options (tracers in tests, tuning).
func WithPubsubOptions(o ...pubsub.Option) Option {
	return func(opts *options) { opts.psOpts = append(opts.psOpts, o...) }
}

// WithLogger sets the node's logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the clock (tests run hours in seconds with a mock).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clk = c } }

// WithHost runs the node on a host made elsewhere, such as a mocknet peer.
// The node closes it on Close.
func WithHost(h host.Host) Option { return func(o *options) { o.host = h } }

// WithoutAPI starts no REST API, for many nodes in one test process.
func WithoutAPI() Option { return func(o *options) { o.noAPI = true } }

// WithLimits overrides the protocol limits (the config's clock skew still
// applies unless set here).
func WithLimits(l proto.Limits) Option { return func(o *options) { o.limits = &l } }

// WithKey uses key instead of the home's key file.
func WithKey(k crypto.PrivKey) Option { return func(o *options) { o.key = k } }

// Node is a running spotmesh node.
type Node struct {
	cfg     Config
	opts    options
	log     *slog.Logger
	clk     clock.Clock
	lim     proto.Limits
	key     crypto.PrivKey
	id      peer.ID
	started time.Time

	db      *store.DB
	queue   *store.Queue
	book    *market.Book
	offers  *offers.Service
	metrics *metrics

	// leases negotiates leases; drv and rt (nil when the node sells no
	// instances) run the instances of those sold.
	leases *lease.Service
	settle *settle.Service
	drv    runtime.Driver
	rt     *runtime.Runtime

	host  host.Host
	dht   *dht.IpfsDHT
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	mdns  mdns.Service
	api   *api.Server

	appl    *appliance.Service
	gateway *http.Server
	gwAddr  string

	synced atomic.Int32
	mesh   *meshTracer

	// scoresMu guards scores, the latest gossipsub peer scores.
	scoresMu sync.Mutex
	scores   map[peer.ID]float64
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
	closed   chan struct{}
}

var _ api.Backend = (*Node)(nil)

// New opens the node's home (key and database) and wires its services.
// Nothing touches the network until Start.
func New(cfg Config, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: slog.New(slog.DiscardHandler), clk: clock.New()}
	for _, f := range opts {
		f(&o)
	}
	n := &Node{cfg: cfg, opts: o, log: o.log, clk: o.clk, closed: make(chan struct{}), mesh: newMeshTracer()}
	n.lim = proto.DefaultLimits()
	n.lim.ClockSkew = time.Duration(cfg.ClockSkew)
	if o.limits != nil {
		n.lim = *o.limits
		if n.lim.ClockSkew == 0 {
			n.lim.ClockSkew = time.Duration(cfg.ClockSkew)
		}
	}
	n.key = o.key
	if n.key == nil {
		k, err := LoadKey(cfg.Home)
		if err != nil {
			return nil, err
		}
		n.key = k
	}
	id, err := peer.IDFromPrivateKey(n.key)
	if err != nil {
		return nil, err
	}
	n.id = id
	n.log = n.log.With("node", id.ShortString())

	sopts := store.DefaultOptions(filepath.Join(cfg.Home, DBDir))
	sopts.Logger = n.log
	sopts.Clock = n.clk
	n.db, err = store.Open(sopts)
	if err != nil {
		return nil, err
	}
	n.queue = store.NewQueue(n.db, store.QueueOptions{Clock: n.clk, Logger: n.log})
	n.book = market.NewBook(market.DefaultConfig(), bookStore{n.db}, n.clk, n.lim, n.log)
	ocfg := offers.DefaultConfig()
	ocfg.DefaultTTL = time.Duration(cfg.OfferTTL)
	n.offers, err = offers.New(ocfg, n.db, n.queue, n.key, n, n.p2pAddrs, n.clk, n.lim, n.log)
	if err != nil {
		n.db.Close()
		return nil, err
	}
	n.metrics = newMetrics(
		func() float64 { return float64(n.book.Len()) },
		func() float64 {
			if n.host == nil {
				return 0
			}
			return float64(len(n.host.Network().Peers()))
		},
		func() float64 { return float64(n.mesh.size()) })
	if err := n.newLeases(); err != nil {
		n.db.Close()
		return nil, err
	}
	if err := n.newSettle(); err != nil {
		if n.drv != nil {
			n.drv.Close()
		}
		n.db.Close()
		return nil, err
	}
	return n, nil
}

// newLeases builds the instance driver and runtime (unless the node sells
// none) and the lease service, whose free-slot counts the node's offers
// then state. The lease service registers its jobs before the queue starts.
func (n *Node) newLeases() error {
	n.drv = n.opts.driver
	if n.drv == nil && n.cfg.Driver == DriverProcess {
		dir, err := filepath.Abs(filepath.Join(n.cfg.Home, InstancesDir))
		if err != nil {
			return fmt.Errorf("process driver: %w", err)
		}
		pcfg := process.DefaultConfig()
		pcfg.Dir = dir
		if n.cfg.InstanceHost != "" {
			pcfg.BindHost = n.cfg.InstanceHost
		}
		d, err := process.New(pcfg, n.clk, n.log)
		if err != nil {
			return fmt.Errorf("process driver: %w (set driver = \"none\" in %s to sell no instances)", err, ConfigFile)
		}
		n.drv = d
	}
	if n.drv == nil && n.cfg.Driver == DriverHTTP {
		// The driver hands the cloud the node's own gateway URL from each
		// Spec unless http_driver.gateway_url replaces it.
		hcfg, err := n.cfg.httpDriverConfig(n.log)
		if err != nil {
			return err
		}
		d, err := httpdriver.New(hcfg, nil, n.log)
		if err != nil {
			return fmt.Errorf("http driver: %w (fix the [http_driver] table in %s, or set driver = \"none\" to sell no instances)", err, ConfigFile)
		}
		n.drv = d
	}
	deps := lease.Deps{DB: n.db, Queue: n.queue, Key: n.key, Book: n.book, Clock: n.clk, Limits: n.lim, Logger: n.log,
		OnChange: n.leaseChanged, Registerer: n.metrics.reg}
	if n.drv != nil {
		rcfg := runtime.DefaultConfig()
		if n.opts.rtCfg != nil {
			rcfg = *n.opts.rtCfg
		}
		rt, err := runtime.New(rcfg, n.drv, n.clk, n.log, n.instanceEvent)
		if err != nil {
			n.drv.Close()
			return err
		}
		n.rt = rt
		deps.Offers = leaseOffers{n.offers}
		deps.Provisioner = leaseRuntime{n}
	}
	lcfg := lease.DefaultConfig()
	if n.opts.lcfg != nil {
		lcfg = *n.opts.lcfg
	}
	l, err := lease.New(lcfg, deps)
	if err != nil {
		if n.drv != nil {
			n.drv.Close()
		}
		return err
	}
	n.leases = l
	if n.rt != nil {
		n.offers.SetFreeSlots(l.Free)
	}
	return nil
}

// startLeases starts the runtime (re-adopting the instances a previous run
// left) and then the lease service, which hands it the leases still
// provisioning.
func (n *Node) startLeases(ctx context.Context) error {
	if n.rt != nil {
		if err := n.rt.Start(ctx); err != nil {
			if n.cfg.Driver == DriverHTTP {
				return fmt.Errorf("start runtime: %w (is your cloud up at %s? see [http_driver] in %s)", err, n.cfg.HTTPDriver.URL, ConfigFile)
			}
			return fmt.Errorf("start runtime: %w", err)
		}
	}
	if err := n.leases.Start(ctx, n.host); err != nil {
		return fmt.Errorf("start leases: %w", err)
	}
	if err := n.settle.Start(ctx, n.host); err != nil {
		return fmt.Errorf("start settle: %w", err)
	}
	return nil
}

// Leases is the node's lease service, as buyer and seller.
func (n *Node) Leases() *lease.Service { return n.leases }

// Runtime runs the instances of the leases the node sells; nil when the
// node sells none (driver "none").
func (n *Node) Runtime() *runtime.Runtime { return n.rt }

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.id }

// Host is the node's libp2p host (after Start).
func (n *Node) Host() host.Host { return n.host }

// MarketBook is the node's order book.
func (n *Node) MarketBook() *market.Book { return n.book }

// OwnOffers is the node's seller-side offers service.
func (n *Node) OwnOffers() *offers.Service { return n.offers }

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.metrics.reg }

// APIAddr is the address the API listens on (after Start), or "".
func (n *Node) APIAddr() string {
	if n.api == nil {
		return ""
	}
	return n.api.Addr()
}

// Start brings up the host, DHT, gossip, book, job queue and API.
func (n *Node) Start(ctx context.Context) (err error) {
	ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	n.started = n.clk.Now()
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if err := n.book.Start(ctx); err != nil {
		return fmt.Errorf("start book: %w", err)
	}
	if err := n.startHost(); err != nil {
		return err
	}
	if err := n.startRouting(ctx); err != nil {
		return err
	}
	if err := n.startGossip(ctx); err != nil {
		return err
	}
	n.host.SetStreamHandler(BookSyncProt, n.serveBookSync)
	if err := n.startAppliances(ctx); err != nil {
		return err
	}
	if err := n.startLeases(ctx); err != nil {
		return err
	}
	if err := n.watchPeers(ctx); err != nil {
		return err
	}
	if err := n.queue.Start(ctx); err != nil {
		return fmt.Errorf("start job queue: %w", err)
	}
	if n.cfg.MDNS {
		n.mdns = mdns.NewMdnsService(n.host, "spotmesh", mdnsNotifee{n})
		if err := n.mdns.Start(); err != nil {
			return fmt.Errorf("start mdns: %w", err)
		}
	}
	n.bootstrap(ctx)
	if err := n.offers.Republish(ctx); err != nil {
		n.log.Warn("republish own offers", "err", err)
	}
	if !n.opts.noAPI {
		tok, err := ReadToken(n.cfg.Home)
		if err != nil {
			return err
		}
		n.api = api.New(api.Config{Addr: n.cfg.API, OffLoopback: n.cfg.APIOffLoopback, Token: tok, Logger: n.log}, n)
		if err := n.api.Start(ctx); err != nil {
			return err
		}
		if err := WriteFileAtomic(filepath.Join(n.cfg.Home, APIAddrFile), []byte(n.api.Addr()+"\n"), 0o600); err != nil {
			return fmt.Errorf("write api address: %w", err)
		}
	}
	if n.cfg.Home != "" {
		if err := WriteFileAtomic(filepath.Join(n.cfg.Home, PeerAddrFile), []byte(strings.Join(n.p2pAddrs(), "\n")+"\n"), 0o600); err != nil {
			return fmt.Errorf("write p2p addresses: %w", err)
		}
	}
	n.log.Info("node started", "peer", n.id, "addrs", n.p2pAddrs(), "api", n.APIAddr())
	return nil
}

// startAppliances starts the appliance store over the node's badger
// database, host and DHT, and its read-only gateway on loopback.
func (n *Node) startAppliances(ctx context.Context) error {
	a, err := appliance.New(appliance.DefaultConfig(), n.host, n.db.Datastore("appliance"), n.dht, n.clk, n.log)
	if err != nil {
		return fmt.Errorf("appliances: %w", err)
	}
	n.appl = a
	if err := a.Start(ctx); err != nil {
		return fmt.Errorf("start appliances: %w", err)
	}
	if err := api.CheckLoopback(n.cfg.Gateway); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	l, err := net.Listen("tcp", n.cfg.Gateway)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w (pick another with --gateway)", n.cfg.Gateway, err)
	}
	n.gwAddr = l.Addr().String()
	n.gateway = &http.Server{Handler: a.GatewayHandler(), ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.gateway.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("gateway", "err", err)
		}
	}()
	if n.cfg.Home != "" {
		if err := WriteFileAtomic(filepath.Join(n.cfg.Home, GatewayFile), []byte(n.gwAddr+"\n"), 0o600); err != nil {
			return fmt.Errorf("write gateway address: %w", err)
		}
	}
	return nil
}

// Appliances implements api.Backend.
func (n *Node) Appliances() api.Appliances { return n.appl }

// ApplianceService is the node's appliance store (after Start).
func (n *Node) ApplianceService() *appliance.Service { return n.appl }

// GatewayAddr is the local gateway's host:port (after Start).
func (n *Node) GatewayAddr() string { return n.gwAddr }

func (n *Node) startHost() error {
	if n.opts.host != nil {
		n.host = n.opts.host
		return nil
	}
	cm, err := connmgr.NewConnManager(100, 400, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return err
	}
	h, err := libp2p.New(
		libp2p.Identity(n.key),
		libp2p.ListenAddrStrings(n.cfg.Listen...),
		libp2p.DefaultTransports,
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
		libp2p.ConnectionManager(cm),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return fmt.Errorf("start p2p host on %v: %w (is another node listening there? pick other ports with --listen)", n.cfg.Listen, err)
	}
	n.host = h
	return nil
}

// dhtMode resolves "auto": a node that listens on loopback only is a local
// testnet node and serves the DHT; otherwise the DHT decides by
// reachability.
func (n *Node) dhtMode() dht.ModeOpt {
	switch n.cfg.DHTMode {
	case "server":
		return dht.ModeServer
	case "client":
		return dht.ModeClient
	}
	for _, a := range n.host.Addrs() {
		if !manet.IsIPLoopback(a) {
			return dht.ModeAuto
		}
	}
	return dht.ModeServer
}

func (n *Node) startRouting(ctx context.Context) error {
	boot, err := n.bootstrapPeers()
	if err != nil {
		return err
	}
	d, err := dht.New(n.host,
		dht.Mode(n.dhtMode()),
		dht.ProtocolPrefix(protocol.ID(DHTPrefix)),
		dht.BootstrapPeers(boot...),
	)
	if err != nil {
		return fmt.Errorf("start dht: %w", err)
	}
	n.dht = d
	return nil
}

func (n *Node) startGossip(ctx context.Context) error {
	params, thr := peerScoreParams()
	ps, err := pubsub.NewGossipSub(ctx, n.host, append([]pubsub.Option{
		pubsub.WithNoAuthor(),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithMessageIdFn(msgID),
		pubsub.WithPeerScore(params, thr),
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerScoreInspect(pubsub.ExtendedPeerScoreInspectFn(n.inspectScores), time.Second),
		pubsub.WithRawTracer(n.mesh),
	}, n.opts.psOpts...)...)
	if err != nil {
		return fmt.Errorf("start gossipsub: %w", err)
	}
	n.ps = ps
	if err := ps.RegisterTopicValidator(OffersTopic, pubsub.ValidatorEx(n.validateOffer)); err != nil {
		return err
	}
	n.topic, err = ps.Join(OffersTopic)
	if err != nil {
		return err
	}
	sub, err := n.topic.Subscribe(pubsub.WithBufferSize(4096))
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Cancel()
		n.deliver(ctx, sub)
	}()
	return nil
}

// watchPeers syncs the book from the first few peers that speak book sync.
func (n *Node) watchPeers(ctx context.Context) error {
	sub, err := n.host.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-sub.Out():
				if !ok {
					return
				}
				e := ev.(event.EvtPeerIdentificationCompleted)
				if !supports(e.Protocols, BookSyncProt) || n.synced.Load() >= maxSyncPeers {
					continue
				}
				n.synced.Add(1)
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					n.syncFrom(ctx, e.Peer)
				}()
			}
		}
	}()
	return nil
}

func supports(ps []protocol.ID, want protocol.ID) bool {
	for _, p := range ps {
		if p == want {
			return true
		}
	}
	return false
}

func (n *Node) bootstrapPeers() ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, a := range n.cfg.Bootstrap {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return nil, fmt.Errorf("bootstrap %q: %w", a, err)
		}
		if ai.ID != n.id {
			out = append(out, *ai)
		}
	}
	return out, nil
}

// bootstrap dials the bootstrap peers in the background and then fills the
// DHT's routing table.
func (n *Node) bootstrap(ctx context.Context) {
	boot, _ := n.bootstrapPeers()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var wg sync.WaitGroup
		for _, ai := range boot {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				if err := n.host.Connect(cctx, ai); err != nil {
					n.log.Warn("bootstrap peer unreachable", "peer", ai.ID, "err", err)
				}
			}()
		}
		wg.Wait()
		if err := n.dht.Bootstrap(ctx); err != nil && ctx.Err() == nil {
			n.log.Debug("dht bootstrap", "err", err)
		}
	}()
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.n.id {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.n.host.Connect(ctx, ai)
}

// p2pAddrs are the node's listen addresses with its /p2p/ suffix.
func (n *Node) p2pAddrs() []string {
	if n.host == nil {
		return nil
	}
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+n.id.String())).String())
	}
	return out
}

// Close stops every service in reverse order and waits for their
// goroutines. It is idempotent.
func (n *Node) Close() error {
	var errs []error
	n.once.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		if n.api != nil {
			errs = append(errs, n.api.Close())
			if n.cfg.Home != "" {
				os.Remove(filepath.Join(n.cfg.Home, APIAddrFile))
			}
		}
		if n.mdns != nil {
			errs = append(errs, n.mdns.Close())
		}
		// Leases first: their provisioning calls use the runtime and the
		// appliances. Instances keep running; the next start re-adopts them.
		errs = append(errs, n.settle.Close())
		errs = append(errs, n.leases.Close())
		if n.rt != nil {
			errs = append(errs, n.rt.Close())
		}
		if n.drv != nil {
			errs = append(errs, n.drv.Close())
		}
		if n.gateway != nil {
			errs = append(errs, n.gateway.Close())
			if n.cfg.Home != "" {
				os.Remove(filepath.Join(n.cfg.Home, GatewayFile))
			}
		}
		if n.appl != nil {
			errs = append(errs, n.appl.Close())
		}
		errs = append(errs, n.queue.Close())
		if n.dht != nil {
			errs = append(errs, n.dht.Close())
		}
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		n.wg.Wait()
		errs = append(errs, n.book.Close())
		errs = append(errs, n.db.Close())
		close(n.closed)
	})
	return errors.Join(errs...)
}

func (n *Node) inspectScores(s map[peer.ID]*pubsub.PeerScoreSnapshot) {
	m := make(map[peer.ID]float64, len(s))
	for p, snap := range s {
		m[p] = snap.Score
	}
	n.scoresMu.Lock()
	n.scores = m
	n.scoresMu.Unlock()
}

// PeerScore is the gossipsub score of p as last inspected (every second),
// and whether p was scored at all.
func (n *Node) PeerScore(p peer.ID) (float64, bool) {
	n.scoresMu.Lock()
	defer n.scoresMu.Unlock()
	s, ok := n.scores[p]
	return s, ok
}

// MeshPeers is the number of peers in this node's gossipsub mesh for the
// offers topic: the peers it relays offers to.
func (n *Node) MeshPeers() int { return n.mesh.size() }

// GraylistThreshold is the score below which a peer's messages are dropped.
const GraylistThreshold = graylistThreshold

// Done is closed when the node has closed.
func (n *Node) Done() <-chan struct{} { return n.closed }

// Identity implements api.Backend.
func (n *Node) Identity() api.Identity {
	return api.Identity{PeerID: n.id, Addrs: n.p2pAddrs(), APIAddr: n.APIAddr(), GatewayAddr: n.gwAddr, Version: Version, Started: n.started}
}

// Peers implements api.Backend.
func (n *Node) Peers() []api.PeerInfo {
	var out []api.PeerInfo
	for _, p := range n.host.Network().Peers() {
		pi := api.PeerInfo{ID: p, Latency: n.host.Peerstore().LatencyEWMA(p)}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, pi)
	}
	return out
}

// Connect implements api.Backend.
func (n *Node) Connect(ctx context.Context, addr string) (peer.ID, error) {
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return "", fmt.Errorf("connect %q: want a multiaddr ending in /p2p/<peer id>: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := n.host.Connect(ctx, *ai); err != nil {
		return "", fmt.Errorf("connect %s: %w", ai.ID, err)
	}
	return ai.ID, nil
}

// AddOffer implements api.Backend.
func (n *Node) AddOffer(ctx context.Context, spec offers.Spec) (offers.Status, error) {
	return n.offers.Add(ctx, spec)
}

// Offers implements api.Backend.
func (n *Node) Offers() []offers.Status {
	l, err := n.offers.List()
	if err != nil {
		n.log.Error("list own offers", "err", err)
	}
	return l
}

// WithdrawOffer implements api.Backend.
func (n *Node) WithdrawOffer(ctx context.Context, key string) (offers.Status, error) {
	return n.offers.Withdraw(ctx, key)
}

// Book implements api.Backend.
func (n *Node) Book(q market.Query) []market.Entry { return n.book.Query(q) }

// BookSize implements api.Backend.
func (n *Node) BookSize() int { return n.book.Len() }

// Gatherer implements api.Backend.
func (n *Node) Gatherer() prometheus.Gatherer { return n.metrics.reg }

func marketAll() market.Query {
	return market.Query{IncludePaused: true, Limit: math.MaxInt32}
}

// bookStore persists the order book under v1/book/<seller>/<key>, unsynced:
// the book is soft state, rebuilt from gossip.
type bookStore struct{ db *store.DB }

func bookKey(id proto.OfferID) []byte { return store.Key("book", id.Seller.String(), id.Key) }

func (b bookStore) PutOffers(batch []market.PersistedOffer) error {
	return b.db.UpdateSoft(func(t *store.Txn) error {
		for _, p := range batch {
			if err := t.Set(bookKey(p.ID), p.Raw); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b bookStore) DeleteOffers(ids []proto.OfferID) error {
	return b.db.UpdateSoft(func(t *store.Txn) error {
		for _, id := range ids {
			if err := t.Delete(bookKey(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b bookStore) LoadOffers(fn func(raw []byte) error) error {
	return b.db.View(func(t *store.Txn) error {
		return t.Iterate(store.Key("book", ""), func(_, v []byte) error { return fn(v) })
	})
}
