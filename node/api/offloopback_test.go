package api_test

import (
	"strings"
	"testing"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
)

// TestOffLoopback: OffLoopback lets the API take one IP address off
// loopback, never every interface or a name.
func TestOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"198.18.3.2:0", true},
		{"10.1.2.3:5001", true},
		{"127.0.0.1:0", true},
		{"[fd00::2]:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"[::]:0", false},
		{"example.com:80", false},
		{"224.0.0.1:5001", false},
		{"198.18.3.2", false},
	} {
		err := api.Config{Addr: tc.addr, OffLoopback: true, Token: apitest.Token}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q, off loopback) = %v, want ok %v", tc.addr, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), tc.addr) {
			t.Errorf("Validate(%q): %v: does not name the address", tc.addr, err)
		}
		// Without OffLoopback, only loopback.
		if err := (api.Config{Addr: tc.addr, Token: apitest.Token}).Validate(); err == nil && !strings.HasPrefix(tc.addr, "127.") {
			t.Errorf("Validate(%q) without OffLoopback passes", tc.addr)
		}
	}
}
