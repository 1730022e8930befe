package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestHTTPDriverConfigFromTable: the [http_driver] table becomes the
// driver's config: URL, gateway URL (empty: the Spec's, the node's own
// gateway), timeout (zero: the default) and the token file's token.
func TestHTTPDriverConfigFromTable(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "cloud.token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name      string
		h         HTTPDriverConfig
		gw, token string
		timeout   time.Duration
	}{
		{"defaults", HTTPDriverConfig{URL: "https://cloud.example:8443"}, "", "", DefaultHTTPDriverTimeout},
		{"all set", HTTPDriverConfig{URL: "https://cloud.example:8443", GatewayURL: "http://10.0.0.5:8081", TokenFile: "cloud.token", Timeout: Duration(5 * time.Second)},
			"http://10.0.0.5:8081", "tok", 5 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Home = home
			cfg.Driver = DriverHTTP
			cfg.HTTPDriver = c.h
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := cfg.httpDriverConfig(log)
			if err != nil {
				t.Fatal(err)
			}
			if got.URL != c.h.URL || got.GatewayURL != c.gw || got.Token != c.token || got.Timeout != c.timeout {
				t.Fatalf("driver config %+v; want URL %s, gateway %q, token %q, timeout %v", got, c.h.URL, c.gw, c.token, c.timeout)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("the driver refuses the config made from a valid table: %v", err)
			}
		})
	}
}
