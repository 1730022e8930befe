package appliance

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"ChunkSize", func(c *Config) { c.ChunkSize = 1000 }},
		{"ChunkSize", func(c *Config) { c.ChunkSize = 2 << 20 }},
		{"MaxSize", func(c *Config) { c.MaxSize = 0 }},
		{"IdleTimeout", func(c *Config) { c.IdleTimeout = 0 }},
		{"ConnectTimeout", func(c *Config) { c.ConnectTimeout = -time.Second }},
		{"FindProvidersTimeout", func(c *Config) { c.FindProvidersTimeout = 0 }},
		{"MaxProviders", func(c *Config) { c.MaxProviders = 0 }},
		{"WindowBytes", func(c *Config) { c.WindowBytes = 1000 }},
		{"WindowBytes", func(c *Config) { c.WindowBytes = 2 << 30 }},
		{"WriteBatchBytes", func(c *Config) { c.WriteBatchBytes = 1 }},
		{"SyncBytes", func(c *Config) { c.SyncBytes = c.WriteBatchBytes - 1 }},
		{"MaxStreams", func(c *Config) { c.MaxStreams = 0 }},
		{"ProvideTimeout", func(c *Config) { c.ProvideTimeout = 0 }},
		{"ReprovideInterval", func(c *Config) { c.ReprovideInterval = 0 }},
		{"BitswapMinDontHaveTimeout", func(c *Config) { c.BitswapMinDontHaveTimeout = 0 }},
		{"BitswapMaxOutstandingBytesPerPeer", func(c *Config) { c.BitswapMaxOutstandingBytesPerPeer = 10 }},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field+" =") {
			t.Errorf("%s: %v; want ErrInvalid naming the field", tc.field, err)
		}
	}
	// Off switches make their knobs irrelevant.
	c := DefaultConfig()
	c.Stream, c.MaxStreams = false, 0
	c.Provide, c.ProvideTimeout, c.ReprovideInterval = false, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("stream and provide off: %v", err)
	}
}
