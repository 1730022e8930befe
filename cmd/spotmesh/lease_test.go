package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
)

const (
	testCID  = "bafybeiebfcbqf7vj2r2ynzhxchgauzcwnkluaw3mudoivox35akwtzowcm"
	testPeer = "12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"
)

func TestLeaseUsageErrors(t *testing.T) {
	home := t.TempDir()
	newArgs := []string{"lease", "new", "--offer", testCID, "--appliance", testCID, "--for", "2h"}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"lease"}, "want a sub-verb: new, ls, show, renew or end"},
		{[]string{"lease", "frob"}, `unknown sub-verb "frob"`},
		{[]string{"lease", "new", "--appliance", testCID, "--for", "2h"}, "give --offer CID or --best"},
		{with(newArgs, "--best"), "give --offer CID or --best"},
		{newArgs[:6], "--for is required"},
		{[]string{"lease", "new", "--offer", testCID, "--for", "2h"}, "--appliance is required"},
		{with(newArgs, "--for", "2 hours"), `--for "2 hours"`},
		{with(newArgs, "--for", "-1h"), "--for"},
		{with(newArgs, "--appliance", "nope"), `--appliance "nope": not a CID`},
		{with(newArgs, "--offer", "nope"), `--offer "nope": not a CID`},
		{with(newArgs, "--region", "eu"), "the book's filters go with --best"},
		{[]string{"lease", "new", "--best", "--vcpu", "lots", "--appliance", testCID, "--for", "1h"}, `--vcpu "lots"`},
		{with(newArgs, "--slots", "many"), `--slots "many"`},
		{with(newArgs, "--ssh-key", filepath.Join(home, "missing.pub")), "--ssh-key"},
		{with(newArgs, "extra"), `unexpected argument "extra"`},
		{[]string{"lease", "show"}, "want one lease ID"},
		{[]string{"lease", "show", "xyz"}, `"xyz": not a lease ID`},
		{[]string{"lease", "renew", testCID}, "want --for DURATION"},
		{[]string{"lease", "end", "a", "b"}, "want one lease ID"},
		{[]string{"lease", "ls", "--role", "owner"}, `--role "owner"`},
		{[]string{"instances"}, "want a sub-verb: ls"},
		{[]string{"instances", "ls", "x"}, `unexpected argument "x"`},
		{[]string{"offer", "pause"}, "want one offer key"},
		{[]string{"offer", "resume", "a/b"}, `"a/b": want an offer key`},
		{[]string{"deny", "add"}, "want one peer ID"},
		{[]string{"deny", "rm", "nobody"}, `"nobody": not a peer ID`},
		{[]string{"deny", "frob"}, "want add, ls or rm"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := spotmesh(t, nil, with([]string{"--home", home}, tc.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.says) {
				t.Errorf("stderr %q does not say %q", r.stderr, tc.says)
			}
		})
	}
}

func TestLeaseVerbsAgainstAPI(t *testing.T) {
	home := newHome(t)
	f, _ := serveHome(t, home)
	h := func(args ...string) result {
		t.Helper()
		return spotmesh(t, nil, with([]string{"--home", home}, args...)...)
	}
	ok := func(r result, says ...string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		for _, w := range says {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("output does not show %q:\n%s", w, r.stdout)
			}
		}
	}
	sameJSON := func(r result, path string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if got, want := decodeAny(t, r.stdout), apiGet(t, home, path); !reflect.DeepEqual(got, want) {
			t.Errorf("--json differs from GET %s:\n%s\nwant %v", path, r.stdout, want)
		}
	}
	book := f.Book(market.Query{})
	key := filepath.Join(t.TempDir(), "id.pub")
	if err := os.WriteFile(key, []byte("ssh-ed25519 AAAA test\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ok(h("lease", "ls"), "no leases")
	r := h("lease", "new", "--offer", book[0].CID.String(), "--appliance", testCID, "--for", "2h", "--ssh-key", key, "--wait")
	ok(r, "running", "endpoint "+apitest.FakeEndpoint, "/a")
	id := protocol.CIDOf([]byte("lease 1")).String()
	ok(h("lease", "ls"), id, "running", apitest.FakeEndpoint)
	sameJSON(h("lease", "ls", "--json"), "/v1/leases")
	ok(h("lease", "show", id), "state:", "running", "endpoint:")
	sameJSON(h("lease", "show", id, "--json"), "/v1/leases/"+id)
	ok(h("lease", "renew", id, "--for", "1h"), "renewed")
	ok(h("lease", "end", id), "ended (ended_by_buyer)")

	f.Leases.Refuse("a")
	r = h("lease", "new", "--offer", book[0].CID.String(), "--appliance", testCID, "--for", "2h")
	if r.code != exitFailed || !strings.Contains(r.stderr, protocol.ReasonNoCapacity.Words()) {
		t.Errorf("refused lease: %+v", r)
	}
	r = h("lease", "new", "--best", "--appliance", testCID, "--for", "1h")
	ok(r, "/b")
	if !strings.Contains(r.stderr, "/a refused: "+protocol.ReasonNoCapacity.Words()+", trying the next") {
		t.Errorf("fallback not said: %q", r.stderr)
	}
	f.Leases.Refuse("b")
	f.Leases.Refuse("c")
	r = h("lease", "new", "--best", "--appliance", testCID, "--for", "1h")
	if r.code != exitFailed || strings.Count(r.stderr, "trying the next") != 3 || !strings.Contains(r.stderr, "no offer granted a lease") {
		t.Errorf("best with none: %+v", r)
	}

	ok(h("instances", "ls"), "running", apitest.FakeEndpoint, "vcpu:rlimit")
	sameJSON(h("instances", "ls", "--json"), "/v1/instances")

	if _, err := f.AddOffer(context.Background(), apitest.Spec("k1", "eu-de", 4, 40000)); err != nil {
		t.Fatal(err)
	}
	ok(h("offer", "pause", "k1"), "paused offer k1")
	if !f.Leases.Paused("k1") {
		t.Error("not paused")
	}
	ok(h("offer", "resume", "k1"), "resumed offer k1")
	if r := h("offer", "pause", "nope"); r.code != exitFailed || !strings.Contains(r.stderr, `no offer with key "nope"`) {
		t.Errorf("pause unknown: %+v", r)
	}

	ok(h("deny", "ls"), "no buyer denied")
	ok(h("deny", "add", testPeer, "--note", "spam"), "denied "+testPeer)
	ok(h("deny", "ls"), testPeer, "spam")
	sameJSON(h("deny", "ls", "--json"), "/v1/deny")
	ok(h("deny", "rm", testPeer), "allowed")
	ok(h("deny", "ls"), "no buyer denied")
}
