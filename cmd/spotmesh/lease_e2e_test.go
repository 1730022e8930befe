package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
)

// TestLeaseThroughCLI: B leases A's offer for a few seconds through the
// CLI; A fetches the appliance from B and runs it; B reaches the endpoint;
// the lease ends on its own when its time is up.
func TestLeaseThroughCLI(t *testing.T) {
	binary(t) // skips under -short
	dir := t.TempDir()
	a, b := filepath.Join(dir, "A"), filepath.Join(dir, "B")
	mustCLI(t, "init", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0")
	daemon(t, a)
	var idA api.IDResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "id", "--home", a, "--json")), &idA); err != nil || len(idA.Addrs) == 0 {
		t.Fatalf("id of A: %v %+v", err, idA)
	}
	mustCLI(t, "init", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", idA.Addrs[0])
	daemon(t, b)

	mustCLI(t, "--home", a, "offer", "add", "--profile", "c1m1", "--vcpu", "1", "--mem", "1GiB", "--disk", "1GiB",
		"--slots", "2", "--price", "0.01USD/h", "--region", "eu-de", "--min", "1s", "--max", "1h", "--formats", "bundle", "--key", "echo")
	var offerCID string
	eventually(t, 20*time.Second, func() error {
		for _, o := range bookOf(t, b).Offers {
			if o.Key == "echo" {
				offerCID = o.CID
				return nil
			}
		}
		return errors.New("offer not in B's book")
	})

	echo, err := drivertest.BuildEcho(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var appl api.Appliance
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", b, "appliance", "add", echo, "--format", "bundle", "--json")), &appl); err != nil {
		t.Fatal(err)
	}

	var l api.Lease
	out := mustCLI(t, "--home", b, "lease", "new", "--offer", offerCID, "--appliance", appl.CID, "--for", "5s", "--wait", "--json")
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("lease new --json: %v\n%s", err, out)
	}
	if l.State != "running" || l.Endpoint == "" || l.ID == "" {
		t.Fatalf("lease new --wait: %+v", l)
	}
	resp, err := http.Get("http://" + l.Endpoint + "/")
	if err != nil {
		t.Fatalf("GET the endpoint: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "lease " + l.ID; !strings.Contains(string(body), want) {
		t.Errorf("the endpoint says %q, want %q", body, want)
	}
	if table := mustCLI(t, "--home", b, "lease", "ls"); !strings.Contains(table, l.ID) || !strings.Contains(table, "running") {
		t.Errorf("lease ls:\n%s", table)
	}
	if table := mustCLI(t, "--home", a, "instances", "ls"); !strings.Contains(table, l.ID) {
		t.Errorf("A's instances ls:\n%s", table)
	}

	// It ends on its own when its 5s are up.
	eventually(t, 30*time.Second, func() error {
		var got api.Lease
		if err := json.Unmarshal([]byte(mustCLI(t, "--home", b, "lease", "show", l.ID, "--json")), &got); err != nil {
			return err
		}
		if got.State != "ended" {
			return fmt.Errorf("lease %s: %s", l.ID, got.State)
		}
		if got.Cause != "expired" {
			t.Errorf("ended with cause %q, want expired", got.Cause)
		}
		return nil
	})
}
