package node

import (
	"strings"
	"testing"
)

// TestConfigInstanceHost: instance_host is one IP address, or empty for
// 127.0.0.1.
func TestConfigInstanceHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"", true},
		{"198.18.0.3", true},
		{"fd00::3", true},
		{"0.0.0.0", false},
		{"::", false},
		{"seller.example", false},
		{"224.0.0.1", false},
	} {
		c := DefaultConfig()
		c.InstanceHost = tc.host
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("instance_host %q: %v, want ok %v", tc.host, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "instance_host") {
			t.Errorf("instance_host %q: %v: does not name the field", tc.host, err)
		}
	}
}
