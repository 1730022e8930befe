package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// nodeFlags are the flags of init and run that set or override the
// node's config.
type nodeFlags struct {
	f         *flags
	listen    *[]string
	api       *string
	bootstrap *[]string
	mdns      *bool
	dhtMode   *string
	gateway   *string
	// driver is init's alone: run takes the driver from the config.
	driver *driverFlags
}

// driverFlags are init's flags that choose the driver the node sells
// instances with, and configure the http driver.
type driverFlags struct {
	name       *string
	url        *string
	tokenFile  *string
	gatewayURL *string
}

func addNodeFlags(f *flags) *nodeFlags {
	nf := &nodeFlags{
		f:         f,
		listen:    f.list("listen", "p2p listen `multiaddr`, repeatable (default loopback TCP and QUIC on free ports; /ip4/0.0.0.0/tcp/4001 for peers on other machines)"),
		api:       f.str("api", "", "the API's `host:port`, on loopback (default 127.0.0.1:0, a free port)"),
		bootstrap: f.list("bootstrap", "a bootstrap peer's `multiaddr` ending in /p2p/<peer id>, repeatable"),
		mdns:      f.boolean("mdns", false, "discover peers on the local network by multicast DNS"),
		dhtMode:   f.str("dht-mode", "", "DHT `mode`: auto, server or client (default auto)"),
		gateway:   f.str("gateway", "", "the appliance gateway's `host:port`, on loopback (default 127.0.0.1:0, a free port)"),
	}
	if f.verb == "init" {
		nf.driver = &driverFlags{
			name:       f.str("driver", "", "the `driver` that runs the instances of leases this node sells: process (local processes), http (your own cloud, through the REST contract of docs/driver-http.yaml) or none (default process)"),
			url:        f.str("driver-url", "", "with --driver http: your cloud's base `URL`, like https://cloud.example:8443"),
			tokenFile:  f.str("driver-token-file", "", "with --driver http: a `file` holding the bearer token for your cloud, mode 0600, read when the node starts"),
			gatewayURL: f.str("driver-gateway-url", "", "with --driver http: the node's appliance gateway as your cloud reaches it, like http://10.0.0.5:8081 (default the node's own gateway `URL`)"),
		}
	}
	return nf
}

// check validates the flags given, in the flags' own words.
func (n *nodeFlags) check() error {
	for _, a := range *n.listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return usagef("--listen %q: want a multiaddr like /ip4/127.0.0.1/tcp/4001", a)
		}
	}
	for _, a := range *n.bootstrap {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			return usagef("--bootstrap %q: want a multiaddr ending in /p2p/<peer id>, like /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...", a)
		}
	}
	if n.f.isSet("api") {
		if err := api.CheckLoopback(*n.api); err != nil {
			return usagef("--api %v", err)
		}
	}
	if n.f.isSet("gateway") {
		if err := api.CheckLoopback(*n.gateway); err != nil {
			return usagef("--gateway %v", err)
		}
	}
	if n.f.isSet("dht-mode") {
		switch *n.dhtMode {
		case "auto", "server", "client":
		default:
			return usagef("--dht-mode %q: want auto, server or client", *n.dhtMode)
		}
	}
	if n.driver != nil {
		return n.driver.check(n.f)
	}
	return nil
}

// check validates the driver flags given, each on its own.
func (d *driverFlags) check(f *flags) error {
	if f.isSet("driver") {
		switch *d.name {
		case node.DriverProcess, node.DriverHTTP, node.DriverNone:
		default:
			return usagef("--driver %q: want process (run bundles as local processes), http (your own cloud, through docs/driver-http.yaml) or none (sell no instances)", *d.name)
		}
	}
	if f.isSet("driver-url") {
		if err := checkHTTPURL(*d.url); err != nil {
			return usagef("--driver-url %q: %v: want your cloud's base URL, like https://cloud.example:8443", *d.url, err)
		}
	}
	if f.isSet("driver-gateway-url") && *d.gatewayURL != "" {
		if err := checkHTTPURL(*d.gatewayURL); err != nil {
			return usagef("--driver-gateway-url %q: %v: want the node's gateway as your cloud reaches it, like http://10.0.0.5:8081, or \"\" for the node's own", *d.gatewayURL, err)
		}
	}
	if f.isSet("driver-token-file") && *d.tokenFile != "" && strings.TrimSpace(*d.tokenFile) != *d.tokenFile {
		return usagef("--driver-token-file %q: blanks around the path: remove them", *d.tokenFile)
	}
	return nil
}

// checkHTTPURL accepts an absolute http or https URL with a host.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || s == "":
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want http:// or https://")
	case u.Host == "":
		return errors.New("no host")
	case u.User != nil:
		return errors.New("credentials in the URL: give the token with --driver-token-file")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("a query or fragment")
	}
	return nil
}

// apply sets cfg's driver from the flags given, over what cfg had (a
// re-init keeps the [http_driver] table it does not change), and checks
// the result: --driver http needs a URL, and the http driver's flags need
// --driver http. A relative token file is taken from the working
// directory. Mistakes are usage errors.
func (d *driverFlags) apply(f *flags, cfg *node.Config) error {
	if f.isSet("driver") {
		cfg.Driver = *d.name
	}
	h := &cfg.HTTPDriver
	if f.isSet("driver-url") {
		h.URL = *d.url
	}
	if f.isSet("driver-gateway-url") {
		h.GatewayURL = *d.gatewayURL
	}
	if f.isSet("driver-token-file") {
		h.TokenFile = *d.tokenFile
		if h.TokenFile != "" {
			abs, err := filepath.Abs(h.TokenFile)
			if err != nil {
				return usagef("--driver-token-file %q: %v", h.TokenFile, err)
			}
			h.TokenFile = abs
		}
	}
	if cfg.Driver != node.DriverHTTP {
		for _, name := range []string{"driver-url", "driver-token-file", "driver-gateway-url"} {
			if f.isSet(name) {
				return usagef("--%s is for --driver http, and this node's driver is %s: add --driver http", name, cfg.Driver)
			}
		}
		return nil
	}
	if h.URL == "" {
		return usagef("--driver http needs --driver-url: your cloud's base URL, where it serves the REST contract of docs/driver-http.yaml, like https://cloud.example:8443")
	}
	return nil
}

// apply overrides cfg with the flags that were given.
func (n *nodeFlags) apply(cfg *node.Config) {
	if len(*n.listen) > 0 {
		cfg.Listen = *n.listen
	}
	if n.f.isSet("api") {
		cfg.API = *n.api
	}
	if len(*n.bootstrap) > 0 {
		cfg.Bootstrap = *n.bootstrap
	}
	if n.f.isSet("mdns") {
		cfg.MDNS = *n.mdns
	}
	if n.f.isSet("dht-mode") {
		cfg.DHTMode = *n.dhtMode
	}
	if n.f.isSet("gateway") {
		cfg.Gateway = *n.gateway
	}
}

// initResult is what init prints with --json.
type initResult struct {
	PeerID  peer.ID `json:"peer_id"`
	Home    string  `json:"home"`
	KeptKey bool    `json:"kept_key"`
}

func cmdInit(ctx context.Context, c *cli, args []string) error {
	f := newFlags("init")
	nf := addNodeFlags(f)
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if err := nf.check(); err != nil {
		return err
	}
	cfg := node.DefaultConfig()
	_, statErr := os.Stat(filepath.Join(c.home, node.KeyFile))
	kept := statErr == nil
	if kept {
		// Re-running init changes what its flags say and keeps the rest.
		if old, err := node.LoadConfig(c.home); err == nil {
			cfg = old
		} else if !errors.Is(err, node.ErrNoHome) {
			fmt.Fprintf(c.stderr, "spotmesh init: the config in %s is unreadable (%v): writing a fresh one\n", c.home, err)
		}
	}
	nf.apply(&cfg)
	if err := nf.driver.apply(f, &cfg); err != nil {
		return err
	}
	cfg.Home = c.home
	if c.logLevelSet {
		cfg.LogLevel = c.logLevel
	}
	id, err := node.Init(cfg)
	if err != nil {
		return fmt.Errorf("home %s: %w", c.home, err)
	}
	if tf := cfg.HTTPDriver.TokenFile; cfg.Driver == node.DriverHTTP && tf != "" {
		// Not an error: the node reads the file when it starts.
		if fh, err := os.Open(tf); err != nil {
			fmt.Fprintf(c.stderr, "spotmesh init: note: cannot read the token file yet (%v): put the cloud's token there, mode 0600, before 'spotmesh run'\n", err)
		} else {
			fh.Close()
		}
	}
	if c.json {
		return c.printJSON(initResult{PeerID: id, Home: c.home, KeptKey: kept})
	}
	if kept {
		fmt.Fprintf(c.stdout, "home %s exists: kept its key and token, rewrote its config\n", c.home)
	} else {
		fmt.Fprintf(c.stdout, "created home %s\n", c.home)
	}
	fmt.Fprintf(c.stdout, "peer id: %s\n", id)
	if cfg.Driver == node.DriverHTTP {
		fmt.Fprintf(c.stdout, "driver: http, cloud %s\n", cfg.HTTPDriver.URL)
	}
	fmt.Fprintf(c.stdout, "start the node with: spotmesh run --home %s\n", c.home)
	return nil
}

// cmdRun reads the config and flags of 'run'; runNode (run.go) runs the
// daemon.
func cmdRun(ctx context.Context, c *cli, args []string) error {
	f := newFlags("run")
	nf := addNodeFlags(f)
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if err := nf.check(); err != nil {
		return err
	}
	cfg, err := node.LoadConfig(c.home)
	if err != nil {
		if errors.Is(err, node.ErrNoHome) {
			return fmt.Errorf("no spotmesh home at %s: create one with 'spotmesh init --home %s'", c.home, c.home)
		}
		return err
	}
	nf.apply(&cfg)
	if c.logLevelSet {
		cfg.LogLevel = c.logLevel
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(c.home, node.ConfigFile), err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	return runNode(ctx, c, cfg, log)
}

func cmdID(ctx context.Context, c *cli, args []string) error {
	f := newFlags("id")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	id, err := call(c, func(cl *api.Client) (api.IDResponse, error) { return cl.Identity(ctx) })
	if err == nil {
		return c.printID(id)
	}
	var ue unreachableError
	if !errors.As(err, &ue) {
		return err
	}
	// No daemon: the peer ID is still in the key.
	key, kerr := node.LoadKey(c.home)
	if kerr != nil {
		return err
	}
	pid, kerr := peer.IDFromPrivateKey(key)
	if kerr != nil {
		return err
	}
	if perr := c.printID(api.IDResponse{PeerID: pid}); perr != nil {
		return perr
	}
	return err
}

func (c *cli) printID(id api.IDResponse) error {
	if c.json {
		return c.printJSON(id)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "peer id:\t%s\n", id.PeerID)
	if id.APIAddr != "" {
		fmt.Fprintf(w, "api:\t%s\n", id.APIAddr)
	}
	if id.GatewayAddr != "" {
		fmt.Fprintf(w, "gateway:\t%s\n", id.GatewayAddr)
	}
	if id.Version != "" {
		fmt.Fprintf(w, "version:\t%s\n", id.Version)
	}
	if !id.Started.IsZero() {
		fmt.Fprintf(w, "started:\t%s (up %s)\n", id.Started.Format(time.RFC3339), roundDuration(c.now().Sub(id.Started)))
	}
	for i, a := range id.Addrs {
		label := ""
		if i == 0 {
			label = "addrs:"
		}
		fmt.Fprintf(w, "%s\t%s\n", label, a)
	}
	return w.Flush()
}

func cmdPeers(ctx context.Context, c *cli, args []string) error {
	f := newFlags("peers")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	ps, err := call(c, func(cl *api.Client) ([]api.Peer, error) { return cl.Peers(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.PeersResponse{Peers: ps})
	}
	if len(ps) == 0 {
		fmt.Fprintln(c.stdout, "no connected peers: connect to one with 'spotmesh connect MULTIADDR'")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PEER\tLATENCY\tADDRS")
	for _, p := range ps {
		lat := "-"
		if p.Latency > 0 {
			lat = roundDuration(p.Latency.Std())
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", p.ID, lat, strings.Join(p.Addrs, " "))
	}
	return w.Flush()
}

func cmdConnect(ctx context.Context, c *cli, args []string) error {
	f := newFlags("connect")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one multiaddr ending in /p2p/<peer id>, like /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...")
	}
	if _, err := peer.AddrInfoFromString(pos[0]); err != nil {
		return usagef("%q: want a multiaddr ending in /p2p/<peer id>, like /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...", pos[0])
	}
	r, err := call(c, func(cl *api.Client) (api.ConnectResponse, error) { return cl.Connect(ctx, pos[0]) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.stdout, "connected to %s\n", r.PeerID)
	return nil
}

// versionInfo is what version prints with --json.
type versionInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified,omitempty"`
	Go         string `json:"go"`
}

// buildVersion is node.Version (set by -ldflags "-X
// github.com/spotmesh/spotmesh/node.Version=v1.2.3") and the VCS facts
// the Go toolchain stamped into the binary, when it did.
func buildVersion() versionInfo {
	v := versionInfo{Version: node.Version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
	}
	return v
}

func cmdVersion(ctx context.Context, c *cli, args []string) error {
	f := newFlags("version")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	v := buildVersion()
	if c.json {
		return c.printJSON(v)
	}
	s := "spotmesh " + v.Version
	if v.Commit != "" {
		commit := v.Commit
		if len(commit) > 12 {
			commit = commit[:12]
		}
		s += " (" + commit
		if v.CommitTime != "" {
			s += " " + v.CommitTime
		}
		if v.Modified {
			s += ", modified"
		}
		s += ")"
	}
	fmt.Fprintf(c.stdout, "%s %s %s/%s\n", s, v.Go, runtime.GOOS, runtime.GOARCH)
	return nil
}

// roundDuration prints d to a sensible precision: 3ms, 1.5s, 9m30s, 71h.
func roundDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return protocol.FormatDuration(d.Round(time.Second))
	default:
		return protocol.FormatDuration(d.Round(time.Minute))
	}
}
