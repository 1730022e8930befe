package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/node/appliance"
)

const someCID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"

// TestApplianceUsageErrors: bad sub-verbs, arguments and flags exit 2
// with words that name what was wrong, before any daemon is asked.
func TestApplianceUsageErrors(t *testing.T) {
	home := t.TempDir()
	file := filepath.Join(t.TempDir(), "web.qcow2")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"appliance"}, "want a sub-verb: add, ls, get, pin, rm or gc"},
		{[]string{"appliance", "frob"}, `unknown sub-verb "frob"`},
		{[]string{"appliance", "add"}, "want one FILE to import"},
		{[]string{"appliance", "add", "a", "b"}, "want one FILE to import"},
		{[]string{"appliance", "add", file, "--format", "QCOW2"}, `--format "QCOW2": want at most 32 characters of a-z`},
		{[]string{"appliance", "add", file, "--name", "a/b"}, `--name "a/b": want a file name`},
		{[]string{"appliance", "add", t.TempDir()}, "is a directory: an appliance is one file"},
		{[]string{"appliance", "add", file, "--colour", "red"}, "flag provided but not defined: --colour"},
		{[]string{"appliance", "add", file, "--progress=maybe"}, "--progress"},
		{[]string{"appliance", "ls", "x"}, `unexpected argument "x"`},
		{[]string{"appliance", "get"}, "want one appliance CID"},
		{[]string{"appliance", "get", "web.qcow2"}, `"web.qcow2" is not a CID: want a CID like bafy`},
		{[]string{"appliance", "get", "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"}, "codec dag-cbor"},
		{[]string{"appliance", "get", someCID, "--from", "127.0.0.1:4001"}, `--from "127.0.0.1:4001": want a multiaddr ending in /p2p/<peer id>`},
		{[]string{"appliance", "get", someCID, "--from", "/ip4/127.0.0.1/tcp/4001"}, "want a multiaddr ending in /p2p/<peer id>"},
		{[]string{"appliance", "get", someCID, "--max-size", "20"}, `--max-size "20": give a unit: want a size like 8GiB`},
		{[]string{"appliance", "get", someCID, "--max-size", "lots"}, `--max-size "lots": want a size`},
		{[]string{"appliance", "get", someCID, "--max-size", "0GiB"}, "--max-size 0B: want a size like 20GiB"},
		{[]string{"appliance", "get", someCID, "--transport", "pigeon"}, `--transport "pigeon": want auto, bitswap or stream`},
		{[]string{"appliance", "get", someCID, "-o", "-", "--json"}, "-o - and --json both write to stdout"},
		{[]string{"appliance", "get", someCID, "-o", t.TempDir()}, "is a directory: give a file name"},
		{[]string{"appliance", "get", someCID, "-o"}, "flag needs an argument: --o"},
		{[]string{"appliance", "pin"}, "want one appliance CID"},
		{[]string{"appliance", "pin", "Qm"}, `"Qm" is not a CID`},
		{[]string{"appliance", "rm", someCID, someCID}, "want one appliance CID"},
		{[]string{"appliance", "gc", "now"}, `unexpected argument "now"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got := spotmesh(t, nil, with([]string{"--home", home}, tc.args...)...)
			if got.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", got.code, exitUsage, got.stderr)
			}
			if !strings.Contains(got.stderr, tc.says) {
				t.Errorf("stderr %q does not say %q", got.stderr, tc.says)
			}
			if got.stdout != "" {
				t.Errorf("stdout %q, want nothing", got.stdout)
			}
		})
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("usage errors wrote into the home: %v", entries)
	}
}

// TestApplianceFlags: the flags land in the request.
func TestApplianceFlags(t *testing.T) {
	f, g := applianceGetFlags()
	pos, err := f.parse([]string{someCID, "-o", "out.img", "--from", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx",
		"--from", "/ip4/127.0.0.1/tcp/2/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx", "--max-size", "20GiB", "--transport", "bitswap", "--progress"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pos, []string{someCID}) || *g.out != "out.img" || len(*g.from) != 2 || *g.maxSize != 20<<30 ||
		*g.transport != "bitswap" || !*g.progress {
		t.Errorf("get flags: pos %v out %q from %v max %d transport %q progress %v", pos, *g.out, *g.from, *g.maxSize, *g.transport, *g.progress)
	}
	f, g = applianceGetFlags()
	if _, err := f.parse([]string{"--output=x", someCID}); err != nil || *g.out != "x" || *g.transport != "auto" || *g.maxSize != 0 {
		t.Errorf("--output: %v %q %q %d", err, *g.out, *g.transport, *g.maxSize)
	}
	fa, a := applianceAddFlags()
	pos, err = fa.parse([]string{"--name", "n.img", "f", "--format", "raw"})
	if err != nil || !reflect.DeepEqual(pos, []string{"f"}) || *a.name != "n.img" || *a.format != "raw" || *a.progress {
		t.Errorf("add flags: %v %v %q %q", err, pos, *a.name, *a.format)
	}
}

func TestApplianceHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"help"}, []string{"appliance"}},
		{[]string{"help", "appliance"}, []string{"spotmesh appliance add FILE", "spotmesh appliance get CID", "spotmesh appliance gc", "--progress forces it"}},
		{[]string{"help", "appliance", "get"}, []string{"-o FILE", "--from MULTIADDR", "--max-size SIZE", "--transport"}},
		{[]string{"appliance", "add", "--help"}, []string{"--name NAME", "--format FORMAT", "--progress"}},
		{[]string{"appliance", "-h"}, []string{"spotmesh appliance rm CID"}},
		{[]string{"help", "appliance", "fetch"}, []string{"usage: spotmesh appliance get"}},
	} {
		got := spotmesh(t, nil, tc.args...)
		if got.code != 0 {
			t.Errorf("%v: exit %d: %s", tc.args, got.code, got.stderr)
		}
		for _, s := range tc.says {
			if !strings.Contains(got.stdout, s) {
				t.Errorf("%v: help does not mention %q:\n%s", tc.args, s, got.stdout)
			}
		}
	}
}

// serveAppliances starts an API server for home over a fake with a real
// appliance service on mn, as a running daemon does; the idle timeout of
// fetches is short.
func serveAppliances(t *testing.T, home string, mn mocknet.Mocknet) (*apitest.Fake, host.Host) {
	t.Helper()
	tok, err := node.ReadToken(home)
	if err != nil {
		t.Fatal(err)
	}
	f := apitest.NewFake(t)
	var h host.Host
	f.Appl, h = apitest.NewAppliances(t, mn, func(c *appliance.Config) { c.IdleTimeout = 500 * time.Millisecond })
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: tok}, f)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := os.WriteFile(filepath.Join(home, node.APIAddrFile), []byte(s.Addr()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, h
}

func randomFile(t *testing.T, dir, name string, seed byte, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestApplianceVerbsAgainstAPI(t *testing.T) {
	mn := apitest.NewMocknet(t)
	homeA, homeB := newHome(t), newHome(t)
	_, _ = serveAppliances(t, homeA, mn)
	_, hb := serveAppliances(t, homeB, mn)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	bAddr := hb.Addrs()[0].String() + "/p2p/" + hb.ID().String()
	on := func(home string) func(args ...string) result {
		return func(args ...string) result {
			t.Helper()
			return spotmesh(t, nil, with([]string{"--home", home}, args...)...)
		}
	}
	a, b := on(homeA), on(homeB)
	ok := func(r result, says ...string) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		for _, w := range says {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("output does not show %q:\n%s", w, r.stdout)
			}
		}
		return r
	}
	failed := func(r result, code int, says string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stderr, says) {
			t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, code, says)
		}
	}
	dir := t.TempDir()
	file, data := randomFile(t, dir, "web.qcow2", 7, 3<<20+12345)

	ok(b("appliance", "ls"), "no appliances")
	add := ok(b("appliance", "add", file))
	id := strings.TrimSpace(add.stdout)
	if !strings.HasPrefix(id, "bafy") || strings.Contains(id, "\n") {
		t.Fatalf("add printed %q, want the CID", add.stdout)
	}
	if !strings.HasPrefix(add.stderr, "added 3MiB in ") || strings.Contains(add.stderr, "\r") {
		t.Errorf("add without a terminal: stderr %q, want one final line", add.stderr)
	}
	ok(b("appliance", "ls"), "CID", "NAME", id, "web.qcow2", "qcow2", "3MiB", "yes (add)")
	r := ok(b("appliance", "ls", "--json"))
	if got, want := decodeAny(t, r.stdout), apiGet(t, homeB, "/v1/appliances"); !reflect.DeepEqual(got, want) {
		t.Errorf("ls --json differs from the API:\n%s\nwant %v", r.stdout, want)
	}
	// The same file again, under another name and with --json and a bar.
	r = ok(b("appliance", "add", file, "--name", "copy.img", "--json", "--progress"))
	info := decodeAny(t, r.stdout).(map[string]any)
	if info["cid"] != id || info["size"] != float64(len(data)) || info["name"] != "copy.img" {
		t.Errorf("add --json: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "\r") || !strings.Contains(r.stderr, "100%") || !strings.Contains(r.stderr, "added 3MiB") {
		t.Errorf("add --progress drew no bar: %q", r.stderr)
	}

	// A gets it from B, into a file, and the bytes match.
	out := filepath.Join(dir, "out.qcow2")
	r = ok(a("appliance", "get", id, "--from", bAddr, "-o", out), "wrote "+out+" (3MiB, "+id+"), pinned")
	if !strings.Contains(r.stderr, "fetched 3MiB in ") || !strings.Contains(r.stderr, "wrote 3MiB in ") {
		t.Errorf("get: stderr %q", r.stderr)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get -o: %d bytes, equal %v (%v)", len(got), bytes.Equal(got, data), err)
	}
	if _, err := os.Stat(out + ".part"); !os.IsNotExist(err) {
		t.Errorf("the partial file stayed: %v", err)
	}
	ok(a("appliance", "ls"), id, "out.qcow2", "yes (get)")
	// Again, to stdout: the node has it already.
	r = ok(a("appliance", "get", id, "-o", "-"))
	if r.stdout != string(data) || r.stderr != "already on this node: 3MiB\n" {
		t.Errorf("get -o -: %d bytes on stdout, stderr %q", len(r.stdout), r.stderr)
	}
	r = ok(a("appliance", "get", id, "--json"))
	if info := decodeAny(t, r.stdout).(map[string]any); info["cid"] != id || info["pinned"] != true {
		t.Errorf("get --json: %s", r.stdout)
	}
	ok(a("appliance", "get", id), "pinned "+id+" (3MiB)")

	// Pins, rm, gc.
	ok(a("appliance", "pin", id), "pinned "+id+" (3MiB; pins: get)")
	ok(a("appliance", "rm", id), "removed "+id+": 'spotmesh appliance gc' frees its 3MiB")
	r = ok(a("appliance", "gc"))
	if !strings.HasPrefix(r.stdout, "freed 3MiB") {
		t.Errorf("gc: %q", r.stdout)
	}
	ok(a("appliance", "gc", "--json"), `"freed": 0`)
	ok(a("appliance", "ls"), "no appliances")
	failed(a("appliance", "rm", id), exitFailed, "no appliance "+id+" on this node: 'spotmesh appliance ls' lists them")
	failed(a("appliance", "pin", id), exitFailed, "is not (wholly) on this node: fetch it with 'spotmesh appliance get "+id+"'")
	// B's copy stays pinned by its import: gc there frees nothing.
	ok(b("appliance", "gc"), "freed 0B")

	// Failures of a fetch, in words.
	failed(a("appliance", "get", someCID, "--from", bAddr, "--transport", "bitswap"), exitFailed, "transfer stalled")
	failed(a("appliance", "get", id, "--from", bAddr, "--max-size", "1MiB"), exitFailed, "fetch a larger one with --max-size")
	if _, err := os.Stat(filepath.Join(dir, "never")); !os.IsNotExist(err) {
		t.Error("a failed get wrote a file")
	}
}

func TestApplianceUnreachable(t *testing.T) {
	home := newHome(t)
	if err := os.WriteFile(filepath.Join(home, node.APIAddrFile), []byte(deadAddr(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, _ := randomFile(t, t.TempDir(), "a.img", 1, 10)
	for _, args := range [][]string{{"appliance", "ls"}, {"appliance", "add", file}, {"appliance", "get", someCID},
		{"appliance", "pin", someCID}, {"appliance", "rm", someCID}, {"appliance", "gc"}} {
		r := spotmesh(t, nil, with(args, "--home", home)...)
		if r.code != exitUnreachable || !strings.Contains(r.stderr, "no spotmesh daemon answers at") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

func TestProgressBar(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var buf bytes.Buffer
	p := newProgress(&buf, "web.qcow2", true, clock)
	for i := 1; i <= 4; i++ {
		now = now.Add(time.Second)
		p.update(uint64(i)*10<<20, 100<<20)
	}
	last := buf.String()[strings.LastIndex(buf.String(), "\r")+1:]
	for _, want := range []string{"web.qcow2", "[======  ", " 40%", "40MiB/100MiB", "10MiB/s", "6s left", "\x1b[K"} {
		if !strings.Contains(last, want) {
			t.Errorf("bar %q lacks %q", last, want)
		}
	}
	now = now.Add(time.Second)
	p.update(100<<20, 100<<20)
	p.finish("added")
	if end := buf.String(); !strings.HasSuffix(end, "\r\x1b[Kadded 100MiB in 5s (20MiB/s)\n") {
		t.Errorf("end %q", end[max(0, len(end)-80):])
	}

	// Unknown total, not live: nothing until the final line.
	buf.Reset()
	p = newProgress(&buf, "x", false, clock)
	p.update(5<<20, 0)
	if buf.Len() != 0 {
		t.Errorf("a bar off a terminal: %q", buf.String())
	}
	now = now.Add(2 * time.Second)
	p.finish("fetched")
	if buf.String() != "fetched 5MiB in 2s (2.5MiB/s)\n" {
		t.Errorf("final line %q", buf.String())
	}
	if label("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi") != "bafybe…qy55fbzdi" {
		t.Errorf("label %q", label("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"))
	}
	if isTerminal(&buf, os.Getenv) {
		t.Error("a buffer is a terminal")
	}
}

// deadAddr is a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
