package procnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
)

// Net is a testnet read from its directory. Its methods act on the nodes
// its manifest names; those that change the testnet (Start, Kill, Down)
// take the directory's lock and read the manifest again under it.
type Net struct {
	log *slog.Logger
	// mu guards m.
	mu sync.Mutex
	m  Manifest
	// saveMu orders the writes of the manifest: each takes its snapshot
	// under it, so a later write never holds an older snapshot.
	saveMu sync.Mutex
}

// Open reads the testnet in dir.
func Open(dir string) (*Net, error) {
	if !supported {
		return nil, ErrUnsupported
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m, err := readManifest(abs)
	if err != nil {
		return nil, err
	}
	return &Net{m: m, log: slog.New(slog.DiscardHandler)}, nil
}

// Manifest returns a copy of the testnet's manifest.
func (n *Net) Manifest() Manifest {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.m
	m.Nodes = append([]Node(nil), n.m.Nodes...)
	m.Offers = append([]Offer(nil), n.m.Offers...)
	if n.m.Network != nil {
		nw := *n.m.Network
		nw.Partitions = make([]Partition, len(n.m.Network.Partitions))
		for i, p := range n.m.Network.Partitions {
			nw.Partitions[i] = Partition{Bridge: p.Bridge, Nodes: append([]string(nil), p.Nodes...)}
		}
		m.Network = &nw
	}
	return m
}

// Dir is the testnet's directory, absolute.
func (n *Net) Dir() string { return n.Manifest().Dir }

// Node returns the node named name.
func (n *Net) Node(name string) (Node, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.m.node(name)
	if err != nil {
		return Node{}, err
	}
	return n.m.Nodes[i], nil
}

// LogPath is the file that takes the node's stdout and stderr.
func (n *Net) LogPath(name string) (string, error) {
	nd, err := n.Node(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(nd.Home, LogFile), nil
}

// Running reports whether the node's daemon runs, and when it does not,
// why, in words for people.
func (n *Net) Running(name string) (bool, string, error) {
	nd, err := n.Node(name)
	if err != nil {
		return false, "", err
	}
	st, why := probe(n.Manifest().Binary, nd)
	return st == procOurs, why, nil
}

// Up boots a testnet in cfg.Dir, which must be absent or empty: the boot
// node, then the sellers and buyers, each a daemon of the binary copied
// to <Dir>/bin/spotmesh. It returns once every node's gossip mesh has
// formed and every node's book holds every seller's offers. On error, it
// stops the processes it started and leaves the directory (homes, logs,
// manifest) for a look.
func Up(ctx context.Context, cfg Config) (_ *Net, err error) {
	if !supported {
		return nil, ErrUnsupported
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Netns {
		if err := CheckNetns(); err != nil {
			return nil, err
		}
	}
	// Refuse a directory in use before writing anything into it; again
	// under the lock, against a racing up.
	if _, err := os.Stat(dir); err == nil {
		if err := checkFree(dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockDir(filepath.Join(dir, LockFile), 0)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := checkFree(dir); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	bin, err := copyBinary(cfg.Binary, filepath.Join(dir, BinDir, BinaryName))
	if err != nil {
		return nil, fmt.Errorf("copy the binary: %w", err)
	}
	m := Manifest{Version: ManifestVersion, Dir: dir, Binary: bin, Created: time.Now().UTC()}
	m.Nodes = append(m.Nodes, Node{Name: "boot", Role: RoleBoot})
	for i := 1; i <= cfg.Sellers; i++ {
		m.Nodes = append(m.Nodes, Node{Name: fmt.Sprintf("seller-%d", i), Role: RoleSeller})
	}
	for i := 1; i <= cfg.Buyers; i++ {
		m.Nodes = append(m.Nodes, Node{Name: fmt.Sprintf("buyer-%d", i), Role: RoleBuyer})
	}
	for i := range m.Nodes {
		m.Nodes[i].Home = filepath.Join(dir, m.Nodes[i].Name)
	}
	n := &Net{m: m, log: log}
	if err := n.save(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// Stop what started, even if ctx is over.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
			defer scancel()
			n.stop(sctx, n.Manifest(), 5*time.Second)
			if nerr := n.dropNetwork(sctx); nerr != nil {
				err = fmt.Errorf("%w\n(and its network: %v)", err, nerr)
			}
			if errors.Is(err, context.Canceled) {
				err = fmt.Errorf("interrupted before the testnet was ready: %w", context.Canceled)
			}
			err = fmt.Errorf("%w\n(the processes it started are stopped; their homes and logs are in %s)", err, dir)
		}
	}()
	t0 := time.Now()
	if cfg.Netns {
		if err := n.setupNetwork(ctx, true); err != nil {
			return nil, err
		}
		nw := n.Manifest().Network
		log.Info("network up", "bridge", nw.Bridge, "subnet", nw.Subnet, "took", time.Since(t0))
	}

	// The boot node first: everyone's bootstrap peer. Its p2p port is
	// then pinned in its config, so that a restarted boot node is found at
	// the address the others know.
	m = n.Manifest()
	boot := m.Nodes[0]
	if _, err := node.Init(nodeConfig(boot, nil, cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("%s: %w", boot.Name, err)
	}
	if err := n.spawn(0); err != nil {
		return nil, err
	}
	if err := n.waitReady(ctx, 0); err != nil {
		return nil, err
	}
	boot, _ = n.Node("boot")
	var bootAddr, bootListen string
	for _, a := range boot.Addrs {
		if strings.Contains(a, "/tcp/") {
			bootAddr = a
			bootListen, _, _ = strings.Cut(a, "/p2p/")
			break
		}
	}
	if bootAddr == "" {
		return nil, fmt.Errorf("boot: no TCP address among %v", boot.Addrs)
	}
	bc := nodeConfig(boot, nil, cfg.LogLevel)
	bc.Listen = []string{bootListen}
	if _, err := node.Init(bc); err != nil {
		return nil, fmt.Errorf("boot: pin its address: %w", err)
	}
	log.Info("boot node up", "addr", bootAddr, "took", time.Since(t0))

	for i := 1; i < len(m.Nodes); i++ {
		if _, err := node.Init(nodeConfig(m.Nodes[i], []string{bootAddr}, cfg.LogLevel)); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Nodes[i].Name, err)
		}
		if err := n.spawn(i); err != nil {
			return nil, err
		}
	}
	if err := n.each(ctx, 1, func(ctx context.Context, i int) error { return n.waitReady(ctx, i) }); err != nil {
		return nil, err
	}
	log.Info("nodes up", "nodes", len(m.Nodes), "took", time.Since(t0))

	clients, err := n.clients()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	// An offer published before a node's gossip mesh forms reaches only
	// the peers it is sent to directly.
	if err := n.waitMeshes(ctx, clients); err != nil {
		return nil, err
	}
	log.Info("meshes formed", "took", time.Since(t0))

	offers, err := n.addOffers(ctx, clients, cfg.OffersPerSeller)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.m.Offers = offers
	n.mu.Unlock()
	if err := n.save(); err != nil {
		return nil, err
	}
	if err := n.waitBooks(ctx, clients); err != nil {
		return nil, err
	}
	log.Info("every book holds every offer", "offers", len(offers), "took", time.Since(t0))
	return n, nil
}

// nodeConfig is a testnet node's config: loopback TCP and API on free
// ports (in a namespace, TCP, API and instances on its address, which the
// other nodes and the host reach; the gateway on its loopback), the DHT
// in server mode, the process driver for sellers only.
func nodeConfig(nd Node, bootstrap []string, logLevel string) node.Config {
	c := node.DefaultConfig()
	c.Home = nd.Home
	c.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	c.API = "127.0.0.1:0"
	if nd.IP != "" {
		c.Listen = []string{"/ip4/" + nd.IP + "/tcp/0"}
		c.API = net.JoinHostPort(nd.IP, "0")
		c.APIOffLoopback = true
		c.InstanceHost = nd.IP
	}
	c.Gateway = "127.0.0.1:0"
	c.Bootstrap = bootstrap
	c.DHTMode = "server"
	c.LogLevel = logLevel
	c.Driver = node.DriverNone
	if nd.Role == RoleSeller {
		c.Driver = node.DriverProcess
	}
	return c
}

// checkFree fails unless dir holds nothing but the lock.
func checkFree(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		m, err := readManifest(dir)
		if err != nil {
			return fmt.Errorf("%s holds a testnet manifest: %w", dir, err)
		}
		running := 0
		for _, nd := range m.Nodes {
			if st, _ := probe(m.Binary, nd); st == procOurs {
				running++
			}
		}
		if running > 0 {
			return fmt.Errorf("%s: %w (%d of %d nodes): stop it with 'spotmesh testnet down --dir %s' first, or choose another directory", dir, ErrRunning, running, len(m.Nodes), dir)
		}
		return fmt.Errorf("%s: %w: it holds a stopped testnet: start its nodes again with 'spotmesh testnet start --dir %s --all', or remove the directory for a new one", dir, ErrExists, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() != LockFile {
			return fmt.Errorf("%s: %w: it is not empty (it holds %s): choose a new or empty directory for the testnet", dir, ErrExists, e.Name())
		}
	}
	return nil
}

// copyBinary copies src (or this process's executable) to dst, through
// a temporary file and a rename, and returns dst.
func copyBinary(src, dst string) (string, error) {
	if src == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		src = exe
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp.Name(), dst)
}

// save writes the manifest.
func (n *Net) save() error {
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	return writeManifest(n.Manifest())
}

// reload reads the manifest again, for an operation that holds the lock.
func (n *Net) reload() error {
	m, err := readManifest(n.Dir())
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.m = m
	n.mu.Unlock()
	return nil
}

func (n *Net) lock() (func(), error) {
	unlock, err := lockDir(filepath.Join(n.Dir(), LockFile), 10*time.Second)
	if err != nil {
		return nil, err
	}
	if err := n.reload(); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// update changes node i and saves the manifest.
func (n *Net) update(i int, change func(*Node)) error {
	n.mu.Lock()
	change(&n.m.Nodes[i])
	n.mu.Unlock()
	return n.save()
}

// spawn starts node i's daemon and records its PID.
func (n *Net) spawn(i int) error {
	m := n.Manifest()
	nd := m.Nodes[i]
	// The daemon writes these when it is up; stale ones would fool waitReady.
	for _, f := range []string{node.APIAddrFile, node.PeerAddrFile, node.GatewayFile} {
		if err := os.Remove(filepath.Join(nd.Home, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", nd.Name, err)
		}
	}
	logPath := filepath.Join(nd.Home, LogFile)
	if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
		fmt.Fprintf(f, "--- spotmesh testnet: starting %s at %s\n", nd.Name, time.Now().UTC().Format(time.RFC3339))
		f.Close()
	}
	bin, args := m.Binary, []string{"run", "--home", nd.Home}
	if nd.Netns != "" {
		// ip execs the daemon in place: the PID is the daemon's.
		ip, err := exec.LookPath("ip")
		if err != nil {
			return fmt.Errorf("%s: %w: no ip command on $PATH to start it in namespace %s", nd.Name, ErrNetnsUnavailable, nd.Netns)
		}
		bin, args = ip, append([]string{"netns", "exec", nd.Netns, m.Binary}, args...)
	}
	pid, start, err := spawn(bin, args, nd.Home, logPath, os.Environ())
	if err != nil {
		return fmt.Errorf("%s: start %s: %w", nd.Name, m.Binary, err)
	}
	if nd.Netns != "" {
		waitExec(pid, bin)
	}
	n.log.Debug("started", "node", nd.Name, "pid", pid)
	return n.update(i, func(x *Node) {
		x.PID, x.StartTime, x.Started = pid, start, time.Now().UTC()
		x.APIAddr, x.PeerID, x.Addrs = "", "", nil
	})
}

// waitExec waits, up to a few seconds, until pid runs something else
// than launcher (ip, which execs the daemon once it is in its namespace),
// or has ended: during the exec its command line reads empty, as an
// exiting process's does, and a probe would take it for gone.
func waitExec(pid int, launcher string) {
	prefix := []byte(launcher + "\x00")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		st, err := readStat(pid)
		if err != nil || st.ended() {
			return
		}
		if cl, err := readCmdline(pid); err != nil || len(cl) > 0 && !bytes.HasPrefix(cl, prefix) {
			return
		}
	}
}

// waitReady waits until node i's daemon has written its addresses and its
// API answers, and records them.
func (n *Net) waitReady(ctx context.Context, i int) error {
	m := n.Manifest()
	nd := m.Nodes[i]
	tok, err := node.ReadToken(nd.Home)
	if err != nil {
		return fmt.Errorf("%s: %w", nd.Name, err)
	}
	var last error
	for {
		if st, why := probe(m.Binary, nd); st != procOurs {
			return fmt.Errorf("%s: %s before its API answered; the end of %s:\n%s", nd.Name, why,
				filepath.Join(nd.Home, LogFile), tail(filepath.Join(nd.Home, LogFile), 8))
		}
		if _, err := os.Stat(filepath.Join(nd.Home, node.PeerAddrFile)); err == nil {
			addr, err := node.ReadAPIAddr(nd.Home)
			if err == nil {
				c := api.NewClient(addr, tok)
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				var id api.IDResponse
				id, err = c.Identity(cctx)
				cancel()
				c.CloseIdleConnections()
				if err == nil {
					return n.update(i, func(x *Node) { x.APIAddr, x.PeerID, x.Addrs = addr, id.PeerID, id.Addrs })
				}
			}
			last = err // why the API did not answer, for the error below
		}
		select {
		case <-ctx.Done():
			why := "its API did not answer"
			if last != nil {
				why += ": " + last.Error()
			}
			return fmt.Errorf("%s: %w: %s; the end of %s:\n%s", nd.Name, notReady(ctx), why,
				filepath.Join(nd.Home, LogFile), tail(filepath.Join(nd.Home, LogFile), 8))
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// each runs f for nodes from..end at once and returns the first error.
func (n *Net) each(ctx context.Context, from int, f func(context.Context, int) error) error {
	count := len(n.Manifest().Nodes)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := from; i < count; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = f(ctx, i); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// The first real error, not a cancellation it caused.
	var canceled error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if canceled == nil {
			canceled = err
		}
	}
	return canceled
}

// clients makes an API client for every node, by index.
func (n *Net) clients() ([]*api.Client, error) {
	m := n.Manifest()
	out := make([]*api.Client, len(m.Nodes))
	for i, nd := range m.Nodes {
		tok, err := node.ReadToken(nd.Home)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nd.Name, err)
		}
		out[i] = api.NewClient(nd.APIAddr, tok)
	}
	return out, nil
}

// notReady says why a wait ended: ErrNotReady when its time was up,
// context.Canceled when it was interrupted.
func notReady(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("interrupted: %w", context.Canceled)
	}
	return ErrNotReady
}

// poll calls cond every interval until it holds, fails, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// meshMetric is the gauge of a node's gossipsub mesh for offers.
const meshMetric = "spotmesh_offers_mesh_peers"

// waitMeshes waits until every node has a peer and a peer in its offers
// mesh (when its metrics tell).
func (n *Net) waitMeshes(ctx context.Context, clients []*api.Client) error {
	m := n.Manifest()
	waiting := ""
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		for i, c := range clients {
			ps, err := c.Peers(ctx)
			if err != nil || len(ps) == 0 {
				waiting = m.Nodes[i].Name + " has no peer yet"
				return false, nil
			}
			text, err := c.Metrics(ctx)
			if err != nil {
				waiting = m.Nodes[i].Name + ": metrics: " + err.Error()
				return false, nil
			}
			if v, ok := metricValue(text, meshMetric); ok && v < 1 {
				waiting = m.Nodes[i].Name + " has no peer in its gossip mesh yet"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w: gossip meshes did not form: %s", notReady(ctx), waiting)
	}
	return nil
}

// metricValue finds an unlabelled gauge in Prometheus text.
func metricValue(text, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// addOffers has every seller publish its offers.
func (n *Net) addOffers(ctx context.Context, clients []*api.Client, per int) ([]Offer, error) {
	m := n.Manifest()
	var mu sync.Mutex
	var out []Offer
	seller := 0
	idx := map[int]int{}
	for i, nd := range m.Nodes {
		if nd.Role == RoleSeller {
			seller++
			idx[i] = seller
		}
	}
	err := n.each(ctx, 0, func(ctx context.Context, i int) error {
		s, ok := idx[i]
		if !ok {
			return nil
		}
		for _, spec := range offerSpecs(s, per) {
			st, err := clients[i].AddOffer(ctx, spec)
			if err != nil {
				return fmt.Errorf("%s: add offer %s: %w", m.Nodes[i].Name, spec.Key, err)
			}
			if st.Current == nil {
				return fmt.Errorf("%s: add offer %s: no signed copy published", m.Nodes[i].Name, spec.Key)
			}
			mu.Lock()
			out = append(out, Offer{Seller: m.Nodes[i].Name, Key: st.Key, OfferID: st.Current.OfferID,
				Region: spec.Region, Profile: spec.Hardware.Profile, Price: spec.Price.String()})
			mu.Unlock()
		}
		return nil
	})
	sort.Slice(out, func(a, b int) bool {
		if out[a].Seller != out[b].Seller {
			return nodeLess(out[a].Seller, out[b].Seller)
		}
		return out[a].Key < out[b].Key
	})
	return out, err
}

// nodeLess orders seller-2 before seller-10.
func nodeLess(a, b string) bool {
	pa, na := splitName(a)
	pb, nb := splitName(b)
	if pa != pb {
		return pa < pb
	}
	return na < nb
}

func splitName(s string) (string, int) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return s, 0
	}
	v, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return s, 0
	}
	return s[:i], v
}

// missing lists the testnet's offers a book lacks.
func missing(offers []Offer, book api.BookResponse) []string {
	have := make(map[string]bool, len(book.Offers))
	for _, o := range book.Offers {
		have[o.OfferID] = true
	}
	var out []string
	for _, o := range offers {
		if !have[o.OfferID] {
			out = append(out, o.Seller+"/"+o.Key)
		}
	}
	return out
}

var allOffers = api.BookQuery{Limit: api.MaxBookLimit, IncludePaused: true}

// waitBooks waits until every node's book holds every offer.
func (n *Net) waitBooks(ctx context.Context, clients []*api.Client) error {
	m := n.Manifest()
	waiting := ""
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		for i, c := range clients {
			b, err := c.Book(ctx, allOffers)
			if err != nil {
				waiting = m.Nodes[i].Name + ": book: " + err.Error()
				return false, nil
			}
			if miss := missing(m.Offers, b); len(miss) > 0 {
				waiting = fmt.Sprintf("%s's book lacks %d of %d offers (%s)", m.Nodes[i].Name, len(miss), len(m.Offers), strings.Join(first(miss, 5), ", "))
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w: offers did not reach every book: %s", notReady(ctx), waiting)
	}
	return nil
}

func first(s []string, k int) []string {
	if len(s) > k {
		return append(s[:k:k], "…")
	}
	return s
}

// tail returns the last k lines of a file, indented, for an error.
func tail(path string, k int) string {
	f, err := os.Open(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	defer f.Close()
	if err := SeekLastLines(f, k); err != nil {
		return "    (" + err.Error() + ")"
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	var sb strings.Builder
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		sb.WriteString("    ")
		sb.Write(l)
		sb.WriteByte('\n')
	}
	return strings.TrimRight(sb.String(), "\n")
}

// SeekLastLines positions f at the start of its last k lines, reading
// backwards from the end in chunks: a log of any size costs what its end
// does.
func SeekLastLines(f *os.File, k int) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	const chunk = 64 << 10
	size := info.Size()
	end := size
	// A final newline ends the last line; it does not start another.
	seen := -1
	buf := make([]byte, chunk)
	for end > 0 {
		start := max(end-chunk, 0)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' {
				continue
			}
			if start+int64(i) == size-1 {
				continue
			}
			seen++
			if seen == k-1 {
				_, err := f.Seek(start+int64(i)+1, io.SeekStart)
				return err
			}
		}
		end = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}
