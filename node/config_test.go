package node_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node"
)

// TestConfigHTTPDriverRoundTrip: init writes the [http_driver] table with
// the timeout spelled out, and LoadConfig reads back what init was given.
func TestConfigHTTPDriverRoundTrip(t *testing.T) {
	home := filepath.Join(t.TempDir(), "seller")
	cfg := node.DefaultConfig()
	cfg.Home = home
	cfg.Driver = node.DriverHTTP
	cfg.HTTPDriver = node.HTTPDriverConfig{
		URL:        "https://cloud.example:8443/base",
		TokenFile:  "/etc/spotmesh/cloud.token", // not read at init
		GatewayURL: "http://10.0.0.5:8081",
	}
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(home, node.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`driver = "http"`, "[http_driver]", `url = "https://cloud.example:8443/base"`,
		`token_file = "/etc/spotmesh/cloud.token"`, `gateway_url = "http://10.0.0.5:8081"`, `timeout = "30s"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config.toml lacks %s:\n%s", want, b)
		}
	}
	got, err := node.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	want := cfg
	want.HTTPDriver.Timeout = node.Duration(node.DefaultHTTPDriverTimeout)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded %+v\nwant   %+v", got, want)
	}

	// A timeout of one's own survives too.
	cfg.HTTPDriver.Timeout = node.Duration(90 * time.Second)
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	if got, err := node.LoadConfig(home); err != nil || got.HTTPDriver != cfg.HTTPDriver {
		t.Fatalf("loaded %+v, %v; want %+v", got.HTTPDriver, err, cfg.HTTPDriver)
	}
}

// TestConfigWithoutHTTPDriverTable: a process node's config has no
// [http_driver] table, and a config written before the table existed
// still loads.
func TestConfigWithoutHTTPDriverTable(t *testing.T) {
	home := filepath.Join(t.TempDir(), "n")
	cfg := node.DefaultConfig()
	cfg.Home = home
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(home, node.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "http_driver") {
		t.Fatalf("a process node's config has an http_driver table:\n%s", b)
	}

	old := `# spotmesh node configuration, written by 'spotmesh init'. Flags override it.
listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
api = "127.0.0.1:0"
gateway = "127.0.0.1:0"
mdns = false
dht_mode = "auto"
log_level = "info"
clock_skew = "30s"
offer_ttl = "10m0s"
driver = "process"
`
	if err := os.WriteFile(filepath.Join(home, node.ConfigFile), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := node.LoadConfig(home)
	if err != nil {
		t.Fatalf("a config without [http_driver]: %v", err)
	}
	if got.Driver != node.DriverProcess || got.HTTPDriver != (node.HTTPDriverConfig{}) {
		t.Fatalf("loaded driver %q, http_driver %+v", got.Driver, got.HTTPDriver)
	}
}

func TestConfigValidateHTTPDriver(t *testing.T) {
	ok := node.HTTPDriverConfig{URL: "https://cloud.example:8443"}
	for _, c := range []struct {
		name   string
		driver string
		h      node.HTTPDriverConfig
		want   string // "" for valid; else words the error must hold
	}{
		{"url alone", node.DriverHTTP, ok, ""},
		{"http url with path", node.DriverHTTP, node.HTTPDriverConfig{URL: "http://127.0.0.1:9000/cloud/"}, ""},
		{"everything", node.DriverHTTP, node.HTTPDriverConfig{URL: ok.URL, TokenFile: "cloud.token", GatewayURL: "http://10.0.0.5:8081", Timeout: node.Duration(time.Minute)}, ""},
		{"process ignores the table", node.DriverProcess, node.HTTPDriverConfig{URL: "not a url"}, ""},
		{"none ignores the table", node.DriverNone, node.HTTPDriverConfig{}, ""},
		{"no url", node.DriverHTTP, node.HTTPDriverConfig{}, "http_driver.url is empty"},
		{"no url names the flag", node.DriverHTTP, node.HTTPDriverConfig{}, "--driver-url"},
		{"url without scheme", node.DriverHTTP, node.HTTPDriverConfig{URL: "cloud.example:8443"}, "http_driver.url"},
		{"ftp url", node.DriverHTTP, node.HTTPDriverConfig{URL: "ftp://cloud.example"}, "want scheme http or https"},
		{"url without host", node.DriverHTTP, node.HTTPDriverConfig{URL: "https:///v1"}, "no host"},
		{"url with credentials", node.DriverHTTP, node.HTTPDriverConfig{URL: "https://u:p@cloud.example"}, "token_file"},
		{"url with query", node.DriverHTTP, node.HTTPDriverConfig{URL: "https://cloud.example/?x=1"}, "base URL"},
		{"bad gateway url", node.DriverHTTP, node.HTTPDriverConfig{URL: ok.URL, GatewayURL: "10.0.0.5:8081"}, "http_driver.gateway_url"},
		{"short timeout", node.DriverHTTP, node.HTTPDriverConfig{URL: ok.URL, Timeout: node.Duration(time.Millisecond)}, "http_driver.timeout"},
		{"negative timeout", node.DriverHTTP, node.HTTPDriverConfig{URL: ok.URL, Timeout: node.Duration(-time.Second)}, "between 1s and 10m"},
		{"long timeout", node.DriverHTTP, node.HTTPDriverConfig{URL: ok.URL, Timeout: node.Duration(time.Hour)}, "http_driver.timeout"},
		{"token file with blanks", node.DriverHTTP, node.HTTPDriverConfig{URL: ok.URL, TokenFile: " cloud.token"}, "http_driver.token_file"},
		{"unknown driver lists http", "docker", node.HTTPDriverConfig{}, "http (drive your own cloud"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			cfg.Driver = c.driver
			cfg.HTTPDriver = c.h
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("want an error about %q, got none", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// TestConfigDecodeHTTPDriverTable: the table as a person writes it.
func TestConfigDecodeHTTPDriverTable(t *testing.T) {
	home := t.TempDir()
	for _, c := range []struct {
		name, toml string
		want       node.HTTPDriverConfig
		err        string
	}{
		{"full", "driver = \"http\"\n[http_driver]\nurl = \"http://127.0.0.1:9000\"\ntoken_file = \"t\"\ntimeout = \"5s\"\n",
			node.HTTPDriverConfig{URL: "http://127.0.0.1:9000", TokenFile: "t", Timeout: node.Duration(5 * time.Second)}, ""},
		{"default timeout", "driver = \"http\"\n[http_driver]\nurl = \"http://127.0.0.1:9000\"\n",
			node.HTTPDriverConfig{URL: "http://127.0.0.1:9000"}, ""},
		{"bad timeout", "driver = \"http\"\n[http_driver]\nurl = \"http://127.0.0.1:9000\"\ntimeout = \"5 seconds\"\n",
			node.HTTPDriverConfig{}, "want a Go duration"},
		{"no table", "driver = \"http\"\n", node.HTTPDriverConfig{}, "http_driver.url is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(home, node.ConfigFile), []byte(c.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := node.LoadConfig(home)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil || got.HTTPDriver != c.want {
				t.Fatalf("loaded %+v, %v; want %+v", got.HTTPDriver, err, c.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer a logger may write from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHTTPDriverTokenFile: the node reads the token file when it opens
// (init does not), refuses one it cannot use with words on what to do,
// and warns about one whose mode is wider than 0600.
func TestHTTPDriverTokenFile(t *testing.T) {
	for _, c := range []struct {
		name    string
		content string // "" with mode 0: no file
		mode    os.FileMode
		rel     bool // token_file relative to the home
		err     string
		warn    bool
	}{
		{name: "0600", content: "s3cret\n", mode: 0o600},
		{name: "relative to the home", content: "s3cret\n", mode: 0o600, rel: true},
		{name: "0400", content: "s3cret", mode: 0o400},
		{name: "0644 warns", content: "s3cret\n", mode: 0o644, warn: true},
		{name: "0640 warns", content: "s3cret\n", mode: 0o640, warn: true},
		{name: "missing", err: "write the cloud's bearer token there"},
		{name: "empty", content: " \n", mode: 0o600, err: "is empty"},
		{name: "two lines", content: "a\nb\n", mode: 0o600, err: "more than one line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			home := filepath.Join(dir, "home")
			tokPath := filepath.Join(dir, "cloud.token")
			cfg := node.DefaultConfig()
			cfg.Home = home
			cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
			cfg.Driver = node.DriverHTTP
			cfg.HTTPDriver = node.HTTPDriverConfig{URL: "http://127.0.0.1:1", TokenFile: tokPath}
			if c.rel {
				tokPath = filepath.Join(home, "cloud.token")
				cfg.HTTPDriver.TokenFile = "cloud.token"
			}
			// Init does not read the token file: it may come later.
			if _, err := node.Init(cfg); err != nil {
				t.Fatalf("init with a token file not there yet: %v", err)
			}
			if c.mode != 0 {
				if err := os.WriteFile(tokPath, []byte(c.content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(tokPath, c.mode); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncBuffer
			n, err := node.New(cfg, node.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), node.WithoutAPI())
			if c.err != "" {
				if err == nil {
					n.Close()
					t.Fatalf("node opened; want an error saying %q", c.err)
				}
				if !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), tokPath) {
					t.Fatalf("error %q does not name %s and say %q", err, tokPath, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.Runtime() == nil {
				t.Fatal("driver http built no runtime")
			}
			warned := strings.Contains(logs.String(), "chmod 600")
			if warned != c.warn {
				t.Fatalf("warned about the token file's mode: %v, want %v; log:\n%s", warned, c.warn, logs.String())
			}
		})
	}
}
