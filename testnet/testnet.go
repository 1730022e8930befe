package testnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/spotmesh/spotmesh/node"
)

// Config describes a network to boot.
type Config struct {
	// N is the number of nodes.
	N int
	// Dir holds the nodes' homes (node-0, node-1, …).
	Dir string
	// Mock runs the nodes over an in-process mocknet instead of TCP on
	// loopback: cheaper for tests of many nodes.
	Mock bool
	// API starts each node's REST API on a free loopback port.
	API bool
	// Degree is how many random other nodes each node dials. Zero means
	// every node dials node 0 only, the bootstrap node.
	Degree int
	// Clock is shared by all nodes (nil: real time).
	Clock clock.Clock
	// Logger receives every node's logs (nil: discarded).
	Logger *slog.Logger
	// NodeOptions are added to every node's options.
	NodeOptions []node.Option
	// PerNode, when set, adds options to node i.
	PerNode func(i int) []node.Option
}

// Net is a running network.
type Net struct {
	Nodes []*node.Node
	// Mock is the mocknet when Config.Mock is set.
	Mock mocknet.Mocknet
	cfg  Config
	once sync.Once
}

// Option tweaks a test network.
type Option func(*Config)

// WithMock runs the network over mocknet.
func WithMock() Option { return func(c *Config) { c.Mock = true } }

// WithAPI starts every node's REST API.
func WithAPI() Option { return func(c *Config) { c.API = true } }

// WithDegree makes each node dial k random others.
func WithDegree(k int) Option { return func(c *Config) { c.Degree = k } }

// WithClock shares a clock among the nodes.
func WithClock(clk clock.Clock) Option { return func(c *Config) { c.Clock = clk } }

// WithNodeOptions passes options to every node.
func WithNodeOptions(o ...node.Option) Option {
	return func(c *Config) { c.NodeOptions = append(c.NodeOptions, o...) }
}

// New boots n nodes for a test and stops them when it ends.
func New(t testing.TB, n int, opts ...Option) *Net {
	t.Helper()
	cfg := Config{N: n, Dir: t.TempDir()}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	net, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := net.Close(); err != nil {
			t.Errorf("testnet close: %v", err)
		}
	})
	return net
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// Start boots a network. On error, whatever started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Net, err error) {
	if cfg.N < 1 {
		return nil, errors.New("testnet: want at least one node")
	}
	if cfg.Dir == "" {
		return nil, errors.New("testnet: no directory for the homes")
	}
	net := &Net{cfg: cfg}
	defer func() {
		if err != nil {
			net.Close()
		}
	}()
	if cfg.Mock {
		net.Mock = mocknet.New()
	}
	var bootstrap []string
	for i := 0; i < cfg.N; i++ {
		n, err := net.startNode(ctx, i, bootstrap)
		if err != nil {
			return nil, err
		}
		net.Nodes = append(net.Nodes, n)
		if i == 0 && !cfg.Mock {
			bootstrap = []string{n.Identity().Addrs[0]}
		}
	}
	if cfg.Mock {
		if err := net.Mock.LinkAll(); err != nil {
			return nil, err
		}
		for i := 1; i < cfg.N; i++ {
			if err := net.Connect(ctx, i, 0); err != nil {
				return nil, err
			}
		}
	}
	if cfg.Degree > 0 && cfg.N > 1 {
		r := rand.New(rand.NewPCG(uint64(cfg.N), uint64(cfg.Degree)))
		for i := range cfg.N {
			for k := 0; k < cfg.Degree; k++ {
				j := r.IntN(cfg.N)
				if j == i {
					continue
				}
				if err := net.Connect(ctx, i, j); err != nil {
					return nil, err
				}
			}
		}
	}
	// An offer published before a node's gossip mesh forms reaches only
	// the peers it is sent to directly; a network is ready once every node
	// relays to someone.
	if err := net.WaitMesh(ctx, 1); err != nil {
		return nil, fmt.Errorf("testnet: gossip meshes did not form: %w", err)
	}
	return net, nil
}

func (net *Net) startNode(ctx context.Context, i int, bootstrap []string) (*node.Node, error) {
	cfg := node.DefaultConfig()
	cfg.Home = filepath.Join(net.cfg.Dir, fmt.Sprintf("node-%d", i))
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Bootstrap = bootstrap
	cfg.DHTMode = "server"
	if _, err := node.Init(cfg); err != nil {
		return nil, err
	}
	opts := []node.Option{}
	if net.cfg.Logger != nil {
		opts = append(opts, node.WithLogger(net.cfg.Logger.With("i", i)))
	}
	if net.cfg.Clock != nil {
		opts = append(opts, node.WithClock(net.cfg.Clock))
	}
	if !net.cfg.API {
		opts = append(opts, node.WithoutAPI())
	}
	if net.cfg.Mock {
		key, err := node.LoadKey(cfg.Home)
		if err != nil {
			return nil, err
		}
		h, err := net.Mock.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i)))
		if err != nil {
			return nil, err
		}
		opts = append(opts, node.WithHost(h))
	}
	opts = append(opts, net.cfg.NodeOptions...)
	if net.cfg.PerNode != nil {
		opts = append(opts, net.cfg.PerNode(i)...)
	}
	n, err := node.New(cfg, opts...)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	if err := n.Start(ctx); err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	return n, nil
}

// Connect dials node j from node i.
func (net *Net) Connect(ctx context.Context, i, j int) error {
	a, b := net.Nodes[i], net.Nodes[j]
	if net.Mock != nil {
		if _, err := net.Mock.LinkPeers(a.ID(), b.ID()); err != nil {
			// already linked is fine
			_ = err
		}
	}
	ai := peer.AddrInfo{ID: b.ID(), Addrs: b.Host().Addrs()}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := a.Host().Connect(cctx, ai); err != nil {
		return fmt.Errorf("testnet: connect node %d to %d: %w", i, j, err)
	}
	return nil
}

// Partition cuts the nodes in group off from all others (mocknet only).
func (net *Net) Partition(group ...int) error {
	if net.Mock == nil {
		return errors.New("testnet: partitions need a mocknet (WithMock)")
	}
	in := map[int]bool{}
	for _, i := range group {
		in[i] = true
	}
	for i := range net.Nodes {
		for j := range net.Nodes {
			if in[i] && !in[j] {
				a, b := net.Nodes[i].ID(), net.Nodes[j].ID()
				_ = net.Mock.UnlinkPeers(a, b)
				_ = net.Mock.DisconnectPeers(a, b)
			}
		}
	}
	return nil
}

// Heal links every node to every other again; connections come back as
// nodes dial.
func (net *Net) Heal() error {
	if net.Mock == nil {
		return errors.New("testnet: partitions need a mocknet (WithMock)")
	}
	return net.Mock.LinkAll()
}

// WaitFor polls cond until it holds or ctx ends.
func WaitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// WaitMesh waits until every node has at least min peers in its gossipsub
// mesh for offers (or as many as it has peers, if fewer).
func (net *Net) WaitMesh(ctx context.Context, min int) error {
	return WaitFor(ctx, func() bool {
		for _, n := range net.Nodes {
			want := min
			if p := len(n.Host().Network().Peers()); p < want {
				want = p
			}
			if n.MeshPeers() < want {
				return false
			}
		}
		return true
	})
}

// Close stops every node.
func (net *Net) Close() error {
	var errs []error
	net.once.Do(func() {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range net.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.Close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if net.Mock != nil {
			errs = append(errs, net.Mock.Close())
		}
	})
	return errors.Join(errs...)
}
