package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node"
)

// TestInitDriverHTTP: init --driver http writes the [http_driver] table,
// a re-init keeps what it does not change, and --driver process keeps
// the table for a later switch back.
func TestInitDriverHTTP(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "seller")
	tok := filepath.Join(dir, "cloud.token")
	r := spotmesh(t, nil, "init", "--home", home, "--driver", "http", "--driver-url", "https://cloud.example:8443",
		"--driver-token-file", tok, "--driver-gateway-url", "http://10.0.0.5:8081")
	if r.code != 0 || !strings.Contains(r.stdout, "driver: http, cloud https://cloud.example:8443") {
		t.Fatalf("init --driver http: %+v", r)
	}
	// The token file is not there yet: a note, not an error.
	if !strings.Contains(r.stderr, "cannot read the token file yet") {
		t.Errorf("no note about the missing token file: %q", r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(home, node.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`driver = "http"`, "[http_driver]", `url = "https://cloud.example:8443"`,
		`token_file = "` + tok + `"`, `gateway_url = "http://10.0.0.5:8081"`, `timeout = "30s"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config.toml lacks %s:\n%s", want, b)
		}
	}
	cfg, err := node.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	want := node.HTTPDriverConfig{URL: "https://cloud.example:8443", TokenFile: tok, GatewayURL: "http://10.0.0.5:8081", Timeout: node.Duration(30 * time.Second)}
	if cfg.Driver != node.DriverHTTP || cfg.HTTPDriver != want {
		t.Fatalf("loaded driver %q, %+v; want http, %+v", cfg.Driver, cfg.HTTPDriver, want)
	}

	// Re-init: a new URL and no gateway URL; the token file stays. With
	// the token file present, no note.
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = spotmesh(t, nil, "init", "--home", home, "--driver-url", "http://127.0.0.1:9000", "--driver-gateway-url", "")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("re-init: %+v", r)
	}
	cfg, _ = node.LoadConfig(home)
	want.URL, want.GatewayURL = "http://127.0.0.1:9000", ""
	if cfg.Driver != node.DriverHTTP || cfg.HTTPDriver != want {
		t.Fatalf("after re-init: driver %q, %+v; want http, %+v", cfg.Driver, cfg.HTTPDriver, want)
	}

	// Back to process: the table stays, unused.
	if r := spotmesh(t, nil, "init", "--home", home, "--driver", "process"); r.code != 0 {
		t.Fatalf("init --driver process: %+v", r)
	}
	cfg, _ = node.LoadConfig(home)
	if cfg.Driver != node.DriverProcess || cfg.HTTPDriver != want {
		t.Fatalf("after --driver process: driver %q, %+v", cfg.Driver, cfg.HTTPDriver)
	}

	// A relative token file is taken from the working directory.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if r := spotmesh(t, nil, "init", "--home", home, "--driver", "http", "--driver-token-file", "rel.token"); r.code != 0 {
		t.Fatalf("relative token file: %+v", r)
	}
	cfg, _ = node.LoadConfig(home)
	if cfg.HTTPDriver.TokenFile != filepath.Join(wd, "rel.token") {
		t.Fatalf("token_file %q, want %s", cfg.HTTPDriver.TokenFile, filepath.Join(wd, "rel.token"))
	}
}

// TestInitDriverUsage: bad driver flags are usage errors (exit 2) that
// name the flag, and write no home.
func TestInitDriverUsage(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"http without url", []string{"--driver", "http"}, "--driver http needs --driver-url"},
		{"http without url but a token", []string{"--driver", "http", "--driver-token-file", "/etc/t"}, "--driver-url"},
		{"unknown driver", []string{"--driver", "docker"}, `--driver "docker": want process`},
		{"url without scheme", []string{"--driver", "http", "--driver-url", "cloud.example:8443"}, "--driver-url"},
		{"ftp url", []string{"--driver", "http", "--driver-url", "ftp://cloud.example"}, "want http:// or https://"},
		{"empty url", []string{"--driver", "http", "--driver-url", ""}, "--driver-url"},
		{"url with credentials", []string{"--driver", "http", "--driver-url", "https://u:p@cloud.example"}, "--driver-token-file"},
		{"bad gateway url", []string{"--driver", "http", "--driver-url", "https://cloud.example", "--driver-gateway-url", "10.0.0.5:8081"}, "--driver-gateway-url"},
		{"url without driver http", []string{"--driver-url", "https://cloud.example"}, "add --driver http"},
		{"url with driver process", []string{"--driver", "process", "--driver-url", "https://cloud.example"}, "--driver-url is for --driver http"},
		{"token file with driver none", []string{"--driver", "none", "--driver-token-file", "/etc/t"}, "--driver-token-file is for --driver http"},
	} {
		t.Run(c.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "h")
			r := spotmesh(t, nil, append([]string{"init", "--home", home}, c.args...)...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d (usage); %+v", r.code, exitUsage, r)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("stderr %q does not say %q", r.stderr, c.want)
			}
			if _, err := os.Stat(filepath.Join(home, node.ConfigFile)); err == nil {
				t.Fatal("a refused init wrote a config")
			}
		})
	}
}

// TestInitDriverHelp: init's help lists the driver flags; run takes the
// driver from the config and has none.
func TestInitDriverHelp(t *testing.T) {
	r := spotmesh(t, nil, "help", "init")
	for _, f := range []string{"--driver ", "--driver-url URL", "--driver-token-file FILE", "--driver-gateway-url URL"} {
		if !strings.Contains(r.stdout, f) {
			t.Errorf("help init lacks %s:\n%s", f, r.stdout)
		}
	}
	if r := spotmesh(t, nil, "help", "run"); strings.Contains(r.stdout, "--driver") {
		t.Errorf("help run lists driver flags:\n%s", r.stdout)
	}
	home := filepath.Join(t.TempDir(), "h")
	if r := spotmesh(t, nil, "run", "--home", home, "--driver", "http"); r.code != exitUsage {
		t.Errorf("run --driver: exit %d, want %d; %+v", r.code, exitUsage, r)
	}
}
