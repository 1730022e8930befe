package node

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	httpdriver "github.com/spotmesh/spotmesh/node/runtime/http"
)

// Files in a node's home directory.
const (
	ConfigFile   = "config.toml" // what init set; flags override it
	KeyFile      = "key"         // the libp2p private key, 0600; never overwritten
	TokenFile    = "api.token"   // the API bearer token, 0600
	APIAddrFile  = "api"         // written by a running daemon: host:port it listens on
	GatewayFile  = "gateway"     // written by a running daemon: its gateway's host:port
	PeerAddrFile = "addrs"       // written by a running daemon: its p2p multiaddrs, one a line
	DBDir        = "db"          // the badger database
	InstancesDir = "instances"   // the process driver's state: one directory per instance
)

// Drivers a node can sell instances with (Config.Driver).
const (
	DriverProcess = "process"
	DriverHTTP    = "http"
	DriverNone    = "none"
)

// DefaultHTTPDriverTimeout bounds one request of the http driver to the
// cloud when the config's http_driver.timeout is not set.
const DefaultHTTPDriverTimeout = 30 * time.Second

// Config is a node's configuration: the TOML file in its home, overridden
// by flags. The zero value of a field means its default.
type Config struct {
	// Home is the node's directory (not stored in the file).
	Home string `toml:"-"`
	// Listen are the p2p listen multiaddrs. Port 0 picks a free port.
	Listen []string `toml:"listen"`
	// API is the local REST API's host:port, on loopback. Port 0 picks one.
	API string `toml:"api"`
	// APIOffLoopback lets API be one IP address off loopback, such as the
	// address of the network namespace that 'spotmesh testnet up --netns'
	// runs the node in. The API has no TLS and only its token guards it:
	// set it only for an address of a network inside this machine.
	APIOffLoopback bool `toml:"api_off_loopback,omitempty"`
	// Gateway is the local read-only HTTP gateway's host:port, on loopback,
	// from which the seller's own cloud pulls appliances by CID.
	Gateway string `toml:"gateway"`
	// Bootstrap peers, as multiaddrs ending in /p2p/<id>.
	Bootstrap []string `toml:"bootstrap"`
	// MDNS turns on local-network discovery (multicast; never in tests).
	MDNS bool `toml:"mdns"`
	// DHTMode is "server", "client" or "auto" (server when reachable).
	DHTMode string `toml:"dht_mode"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// ClockSkew is the clock difference tolerated between peers.
	ClockSkew Duration `toml:"clock_skew"`
	// OfferTTL is the default life of one signed offer copy.
	OfferTTL Duration `toml:"offer_ttl"`
	// Driver runs the instances of the leases this node sells: "process"
	// runs appliance bundles as local processes (state under
	// <home>/instances), "http" drives the seller's own cloud through the
	// REST contract of docs/driver-http.yaml (configured by HTTPDriver),
	// "none" sells no instances (the node can still buy).
	Driver string `toml:"driver"`
	// InstanceHost is the IP address the process driver's instances
	// listen on, and the host of the endpoints buyers reach them at; empty
	// means 127.0.0.1, which only buyers on this machine reach. A testnet
	// of network namespaces ('spotmesh testnet up --netns') sets it to the
	// seller's namespace address.
	InstanceHost string `toml:"instance_host,omitempty"`
	// HTTPDriver configures the http driver: the [http_driver] table,
	// read when Driver is "http". A config without it still loads.
	HTTPDriver HTTPDriverConfig `toml:"http_driver,omitempty"`
}

// HTTPDriverConfig is the [http_driver] table: where the seller's cloud
// serves the contract of docs/driver-http.yaml, and how to reach it.
type HTTPDriverConfig struct {
	// URL is the cloud's base URL, such as https://cloud.example:8443;
	// the contract's paths (/v1/...) go under it. Required.
	URL string `toml:"url,omitempty"`
	// TokenFile, if set, holds the bearer token the node sends to the
	// cloud. A relative path is taken from the home. The node reads it
	// when it starts (not at init) and warns when the file is readable by
	// anyone but its owner (wider than 0600).
	TokenFile string `toml:"token_file,omitempty"`
	// GatewayURL, if set, is the node's appliance gateway as the cloud
	// reaches it, such as http://10.0.0.5:8081 (a proxy in front of the
	// loopback gateway). Empty means the node's own gateway address.
	GatewayURL string `toml:"gateway_url,omitempty"`
	// Timeout bounds one request to the cloud; zero means
	// DefaultHTTPDriverTimeout.
	Timeout Duration `toml:"timeout,omitzero"`
}

// Duration is a time.Duration that TOML reads and writes as "90s", "10m".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration like 90s or 10m", b)
	}
	*d = Duration(v)
	return nil
}

// DefaultConfig is the configuration of a fresh node: loopback only, free
// ports, no bootstrap peers. An operator who wants peers from other machines
// sets Listen to a public address, such as /ip4/0.0.0.0/tcp/4001.
func DefaultConfig() Config {
	return Config{
		Listen:    []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		API:       "127.0.0.1:0",
		Gateway:   "127.0.0.1:0",
		DHTMode:   "auto",
		LogLevel:  "info",
		ClockSkew: Duration(30 * time.Second),
		OfferTTL:  Duration(10 * time.Minute),
		Driver:    DriverProcess,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if len(c.Listen) == 0 {
		return errors.New("config: listen: want at least one multiaddr, like /ip4/127.0.0.1/tcp/4001")
	}
	for _, a := range c.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("config: listen %q: %v: want a multiaddr like /ip4/127.0.0.1/tcp/4001", a, err)
		}
	}
	for _, a := range c.Bootstrap {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			return fmt.Errorf("config: bootstrap %q: %v: want a multiaddr ending in /p2p/<peer id>", a, err)
		}
	}
	if c.API == "" || !strings.Contains(c.API, ":") {
		return fmt.Errorf("config: api %q: want host:port on loopback, like 127.0.0.1:5001", c.API)
	}
	if c.Gateway == "" || !strings.Contains(c.Gateway, ":") {
		return fmt.Errorf("config: gateway %q: want host:port on loopback, like 127.0.0.1:8080", c.Gateway)
	}
	switch c.DHTMode {
	case "auto", "server", "client":
	default:
		return fmt.Errorf("config: dht_mode %q: want auto, server or client", c.DHTMode)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.ClockSkew < 0 || time.Duration(c.ClockSkew) > time.Hour {
		return fmt.Errorf("config: clock_skew %v: want between 0 and 1h", time.Duration(c.ClockSkew))
	}
	if time.Duration(c.OfferTTL) < time.Second || time.Duration(c.OfferTTL) > 24*time.Hour {
		return fmt.Errorf("config: offer_ttl %v: want between 1s and 24h", time.Duration(c.OfferTTL))
	}
	if c.InstanceHost != "" {
		if ip := net.ParseIP(c.InstanceHost); ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("config: instance_host %q: want the one IP address buyers reach this machine's instances at, like 198.18.0.3, or leave it out for 127.0.0.1", c.InstanceHost)
		}
	}
	switch c.Driver {
	case DriverProcess, DriverNone:
	case DriverHTTP:
		if err := c.HTTPDriver.validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("config: driver %q: want process (run bundles as local processes), http (drive your own cloud through docs/driver-http.yaml) or none (sell no instances)", c.Driver)
	}
	return nil
}

// validate checks the [http_driver] table of a config whose driver is
// "http". It does not read the token file: the node does, when it starts.
func (h HTTPDriverConfig) validate() error {
	if h.URL == "" {
		return errors.New("config: http_driver.url is empty: driver \"http\" needs the base URL of your cloud's REST API (docs/driver-http.yaml), like https://cloud.example:8443 (set it with 'spotmesh init --driver http --driver-url URL')")
	}
	if err := checkHTTPURL(h.URL); err != nil {
		return fmt.Errorf("config: http_driver.url %q: %v: want the base URL of your cloud's REST API, like https://cloud.example:8443", h.URL, err)
	}
	if h.GatewayURL != "" {
		if err := checkHTTPURL(h.GatewayURL); err != nil {
			return fmt.Errorf("config: http_driver.gateway_url %q: %v: want the node's gateway as your cloud reaches it, like http://10.0.0.5:8081, or leave it out to use the node's own gateway", h.GatewayURL, err)
		}
	}
	if strings.TrimSpace(h.TokenFile) != h.TokenFile {
		return fmt.Errorf("config: http_driver.token_file %q: blanks around the path: remove them", h.TokenFile)
	}
	if t := time.Duration(h.Timeout); t != 0 && (t < time.Second || t > 10*time.Minute) {
		return fmt.Errorf("config: http_driver.timeout %v: want between 1s and 10m, or leave it out for %v", t, DefaultHTTPDriverTimeout)
	}
	return nil
}

// checkHTTPURL accepts an absolute http or https URL with a host.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want scheme http or https")
	case u.Host == "":
		return errors.New("no host")
	case u.User != nil:
		return errors.New("credentials in the URL: put the token in token_file instead")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("a query or fragment: want a base URL")
	}
	return nil
}

// httpDriverConfig is the http driver's configuration from the
// [http_driver] table. It reads the token file, and logs a warning when
// the file is readable by others.
func (c Config) httpDriverConfig(log *slog.Logger) (httpdriver.Config, error) {
	h := c.HTTPDriver
	out := httpdriver.DefaultConfig()
	out.URL = h.URL
	out.GatewayURL = h.GatewayURL
	out.Timeout = cmp.Or(time.Duration(h.Timeout), DefaultHTTPDriverTimeout)
	if h.TokenFile == "" {
		return out, nil
	}
	path := h.TokenFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.Home, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return out, fmt.Errorf("http driver: http_driver.token_file %s: %w: write the cloud's bearer token there (mode 0600), or remove token_file from %s if the cloud wants none", path, err, ConfigFile)
	}
	if !fi.Mode().IsRegular() {
		return out, fmt.Errorf("http driver: http_driver.token_file %s: not a regular file: point token_file at the file holding the cloud's bearer token", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err
		}
		return out, fmt.Errorf("http driver: http_driver.token_file %s: %w: make it readable by the user that runs the node", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return out, fmt.Errorf("http driver: http_driver.token_file %s is empty: write the cloud's bearer token into it, or remove token_file from %s if the cloud wants none", path, ConfigFile)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return out, fmt.Errorf("http driver: http_driver.token_file %s holds more than one line: want the bearer token alone", path)
	}
	if perm := fi.Mode().Perm(); perm&^0o600 != 0 {
		log.Warn("the http driver's token file has a mode wider than 0600, so others may read the token: run chmod 600 on it",
			"token_file", path, "mode", fmt.Sprintf("%#o", perm))
	}
	out.Token = tok
	return out, nil
}

// ErrNoHome means the home has not been initialised.
var ErrNoHome = errors.New("no spotmesh home here: run 'spotmesh init --home DIR' first")

// Init creates a node's home: the directory, a new key (unless one is
// there: Init never overwrites a key), an API token and the config file.
// It returns the node's peer ID. Calling Init on an existing home keeps the
// key and token and rewrites the config.
func Init(cfg Config) (peer.ID, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return "", fmt.Errorf("init %s: %w", cfg.Home, err)
	}
	key, err := loadOrCreateKey(filepath.Join(cfg.Home, KeyFile))
	if err != nil {
		return "", err
	}
	tokPath := filepath.Join(cfg.Home, TokenFile)
	if _, err := os.Stat(tokPath); errors.Is(err, fs.ErrNotExist) {
		tok := make([]byte, 32)
		if _, err := rand.Read(tok); err != nil {
			return "", err
		}
		if err := WriteFileAtomic(tokPath, []byte(hex.EncodeToString(tok)+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("init: write token: %w", err)
		}
	}
	if cfg.Driver == DriverHTTP && cfg.HTTPDriver.Timeout == 0 {
		cfg.HTTPDriver.Timeout = Duration(DefaultHTTPDriverTimeout) // written out, for people to see and change
	}
	var b strings.Builder
	b.WriteString("# spotmesh node configuration, written by 'spotmesh init'. Flags override it.\n")
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		return "", fmt.Errorf("init: encode config: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(cfg.Home, ConfigFile), []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("init: write config: %w", err)
	}
	return peer.IDFromPrivateKey(key)
}

// LoadConfig reads the config of the home at dir, over the defaults.
func LoadConfig(dir string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("%s: %w", dir, ErrNoHome)
	}
	if err != nil {
		return cfg, err
	}
	if _, err := toml.Decode(string(b), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	cfg.Home = dir
	return cfg, cfg.Validate()
}

// LoadKey reads the node's private key from its home.
func LoadKey(dir string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoHome)
	}
	if err != nil {
		return nil, err
	}
	k, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: key file is damaged: %w", filepath.Join(dir, KeyFile), err)
	}
	return k, nil
}

// ReadToken reads the API token from a home.
func ReadToken(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", dir, ErrNoHome)
	}
	return strings.TrimSpace(string(b)), err
}

// ReadAPIAddr reads the address a running daemon wrote into its home.
func ReadAPIAddr(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, APIAddrFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func loadOrCreateKey(path string) (crypto.PrivKey, error) {
	if _, err := os.Stat(path); err == nil {
		return LoadKey(filepath.Dir(path))
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	// O_EXCL: never overwrite a key, even if two inits race.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("init: create key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return k, f.Close()
}

// WriteFileAtomic writes data to path via a synced temporary file in the
// same directory and a rename, so that a reader never sees half a file.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
