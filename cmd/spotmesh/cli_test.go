package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary != "" {
		os.RemoveAll(filepath.Dir(builtBinary))
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testNow is the CLI's clock in tests: one minute after the fake's.
var testNow = time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
}

// spotmesh runs the CLI in-process with env as its environment.
func spotmesh(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, now: func() time.Time { return testNow },
		getenv: func(k string) string { return env[k] }}
	code := c.main(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

// newHome initialises a home in a temp dir.
func newHome(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	cfg := node.DefaultConfig()
	cfg.Home = home
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	return home
}

// serveHome starts an API server over a fake with the home's token and
// writes its address into the home, as a running daemon does.
func serveHome(t *testing.T, home string) (*apitest.Fake, *api.Server) {
	t.Helper()
	tok, err := node.ReadToken(home)
	if err != nil {
		t.Fatal(err)
	}
	f := apitest.NewFake(t)
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: tok}, f)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := os.WriteFile(filepath.Join(home, node.APIAddrFile), []byte(s.Addr()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, s
}

// apiGet fetches a route's raw JSON, to compare with the CLI's --json.
func apiGet(t *testing.T, home, path string) any {
	t.Helper()
	addr, _ := node.ReadAPIAddr(home)
	tok, _ := node.ReadToken(home)
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return decodeAny(t, string(b))
}

func decodeAny(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return v
}

var offerAddArgs = []string{"offer", "add", "--profile", "c4m8", "--vcpu", "4", "--mem", "8GiB", "--disk", "40GiB",
	"--slots", "10", "--price", "0.04USD/h", "--region", "eu-de", "--max", "72h"}

func with(base []string, extra ...string) []string {
	return append(append([]string(nil), base...), extra...)
}

func TestGlobalFlagsAnywhere(t *testing.T) {
	home := newHome(t)
	f, _ := serveHome(t, home)
	if _, err := f.AddOffer(context.Background(), apitest.Spec("k1", "eu-de", 4, 40000)); err != nil {
		t.Fatal(err)
	}
	want := spotmesh(t, nil, "--home", home, "--json", "offer", "ls")
	if want.code != 0 || !strings.Contains(want.stdout, `"key": "k1"`) {
		t.Fatalf("baseline: %+v", want)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"after the verb", nil, []string{"offer", "ls", "--home", home, "--json"}},
		{"between verb and sub-verb", nil, []string{"offer", "--home", home, "ls", "--json"}},
		{"with =", nil, []string{"--home=" + home, "offer", "ls", "--json=true"}},
		{"single dash", nil, []string{"-home", home, "offer", "ls", "-json"}},
		{"log level too", nil, []string{"offer", "ls", "--log-level", "debug", "--home", home, "--json"}},
		{"home from the environment", map[string]string{"SPOTMESH_HOME": home}, []string{"offer", "ls", "--json"}},
		{"flag beats environment", map[string]string{"SPOTMESH_HOME": "/nonexistent"}, []string{"offer", "ls", "--json", "--home", home}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := spotmesh(t, tc.env, tc.args...)
			if got != want {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestUsageErrors: every bad verb, flag or value exits 2 with a message
// that names what was wrong and the form wanted, before any daemon is
// asked.
func TestUsageErrors(t *testing.T) {
	home := t.TempDir() // no daemon, not even a home: usage is checked first
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "usage: spotmesh"},
		{[]string{"frobnicate"}, `unknown verb "frobnicate"`},
		{[]string{"--frob", "id"}, "unknown flag --frob"},
		{[]string{"--log-level", "loud", "id"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"id", "--home"}, "--home needs a value"},
		{[]string{"--json=maybe", "id"}, `--json="maybe": want true or false`},
		{[]string{"id", "extra"}, `unexpected argument "extra"`},
		{[]string{"peers", "--verbose"}, "flag provided but not defined: --verbose"},
		{[]string{"version", "now"}, `unexpected argument "now"`},
		{[]string{"help", "frob"}, `unknown verb "frob"`},

		{with(offerAddArgs[:len(offerAddArgs)-2], "--price", "4cents", "--max", "72h"),
			`spotmesh offer add: --price "4cents": want an amount and unit like 0.04USD/h`},
		{with(offerAddArgs, "--mem", "8"), `--mem "8": give a unit: want a size like 8GiB`},
		{with(offerAddArgs, "--disk", "lots"), `--disk "lots": want a size like 8GiB`},
		{with(offerAddArgs, "--vcpu", "four"), `--vcpu "four": want a whole number like 10`},
		{with(offerAddArgs, "--slots", "-1"), `--slots "-1": want a whole number`},
		{with(offerAddArgs, "--max", "3days"), `--max "3days": want a Go duration like 72h`},
		{with(offerAddArgs, "--grace", "-5m"), `--grace "-5m": want a Go duration`},
		{with(offerAddArgs, "--vcpu", "0"), "--vcpu 0: want 1 or more"},
		{offerAddArgs[:len(offerAddArgs)-4], "--region is required"},
		{with(offerAddArgs[:2], "--region", "eu"), "--profile is required"},
		{with(offerAddArgs, "--region", "EU-DE"), `--region "EU-DE": want lower-case words joined by dashes`},
		{with(offerAddArgs, "--profile", "c4 m8"), `--profile "c4 m8": want 1 to 64 characters`},
		{with(offerAddArgs, "--key", "a/b"), `--key "a/b"`},
		{with(offerAddArgs, "--gpus", "1"), `--gpus 1 --gpu-model "": give both`},
		{with(offerAddArgs, "--gpu-model", "A100"), "give both"},
		{with(offerAddArgs, "--arch", "x86 64"), `--arch "x86 64"`},
		{with(offerAddArgs, "--min", "100h"), "--min 100h is longer than --max 72h"},
		{with(offerAddArgs, "--until", "yesterday"), `--until "yesterday": want an RFC 3339 time`},
		{with(offerAddArgs, "--until", "2020-01-01T00:00:00Z"), "--until 2020-01-01T00:00:00Z is in the past"},
		{with(offerAddArgs, "--formats", ","), `--formats ",": want a comma-separated list`},
		{with(offerAddArgs, "--formats", "bundle,q cow"), `--formats: "q cow"`},
		{with(offerAddArgs, "--colour", "red"), "flag provided but not defined: --colour"},
		{with(offerAddArgs, "--price"), "flag needs an argument: --price"},
		{with(offerAddArgs, "extra"), `unexpected argument "extra"`},
		{[]string{"offer"}, "want a sub-verb: add, ls, rm, pause or resume"},
		{[]string{"offer", "frob"}, `unknown sub-verb "frob"`},
		{[]string{"offer", "rm"}, "want one offer key"},
		{[]string{"offer", "rm", "a", "b"}, "want one offer key"},
		{[]string{"offer", "rm", "a b"}, `"a b": want an offer key`},
		{[]string{"offer", "ls", "x"}, `unexpected argument "x"`},

		{[]string{"connect"}, "want one multiaddr ending in /p2p/<peer id>"},
		{[]string{"connect", "127.0.0.1:4001"}, `"127.0.0.1:4001": want a multiaddr ending in /p2p/<peer id>`},
		{[]string{"connect", "/ip4/127.0.0.1/tcp/4001"}, "want a multiaddr ending in /p2p/<peer id>"},

		{[]string{"book", "--vcpu", "lots"}, `spotmesh book: --vcpu "lots": want a count or range like 4, >=4`},
		{[]string{"book", "--vcpu", "16-4"}, "lower bound is above the upper one"},
		{[]string{"book", "--mem", ">=8"}, `--mem ">=8": give a unit`},
		{[]string{"book", "--disk", "huge"}, `--disk "huge": want a size or range`},
		{[]string{"book", "--gpus", "0"}, "upper bound of 0 is not supported"},
		{[]string{"book", "--max-price", "cheap"}, `--max-price "cheap": want an amount and unit like 0.05USD/h`},
		{[]string{"book", "--max-price", "1EUR/h", "--currency", "USD"}, "not USD"},
		{[]string{"book", "--currency", "$"}, `--currency "$"`},
		{[]string{"book", "--sort", "cheapest"}, `--sort "cheapest": want price, vcpu, mem, expires or newest`},
		{[]string{"book", "--limit", "0"}, `--limit "0": want a whole number of 1 or more`},
		{[]string{"book", "--limit", "5000"}, `--limit "5000": want a whole number from 1 to 1000`},
		{[]string{"book", "--min-slots", "-1"}, `--min-slots "-1": want a whole number`},
		{[]string{"book", "--seller", "bob"}, `--seller "bob": want a peer ID`},
		{[]string{"book", "--region", "Europe"}, `--region "Europe"`},
		{[]string{"book", "--include-paused=maybe"}, "--include-paused"},

		{[]string{"init", "--listen", "nonsense"}, `--listen "nonsense": want a multiaddr like /ip4/127.0.0.1/tcp/4001`},
		{[]string{"init", "--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, "want a multiaddr ending in /p2p/<peer id>"},
		{[]string{"init", "--api", "0.0.0.0:5001"}, "is not on loopback"},
		{[]string{"init", "--api", "5001"}, "want host:port on loopback"},
		{[]string{"init", "--dht-mode", "fast"}, `--dht-mode "fast": want auto, server or client`},
		{[]string{"init", "somewhere"}, `unexpected argument "somewhere"`},
		{[]string{"run", "--dht-mode", "fast"}, `--dht-mode "fast"`},
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

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"help"}, []string{"init", "run", "offer", "book", "version", "Exit codes"}},
		{[]string{"--help"}, []string{"verbs:"}},
		{[]string{"help", "book"}, []string{"--max-price", "--vcpu", "--home DIR"}},
		{[]string{"book", "-h"}, []string{"--max-price"}},
		{[]string{"help", "init"}, []string{"--listen", "--dht-mode"}},
		{[]string{"help", "offer"}, []string{"spotmesh offer add", "spotmesh offer rm KEY"}},
		{[]string{"help", "offer", "add"}, []string{"--price", "--receipt-interval", "--until"}},
		{[]string{"offer", "add", "--help"}, []string{"--price"}},
		{[]string{"offer", "-h"}, []string{"spotmesh offer ls"}},
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

func TestVerbsAgainstAPI(t *testing.T) {
	home := newHome(t)
	f, s := serveHome(t, home)
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

	ok(h("id"), f.ID.String(), s.Addr(), "version:  test", "up 1m", "/p2p/"+f.ID.String())
	sameJSON(h("id", "--json"), "/v1/id")
	ok(h("peers"), "PEER", "3ms", "/ip4/127.0.0.1/tcp/4002")
	sameJSON(h("peers", "--json"), "/v1/peers")
	ok(h("connect", "/ip4/127.0.0.1/tcp/4002/p2p/"+f.ID.String()), "connected to "+f.ID.String())
	f.SetConnectErr(errors.New("dial backoff"))
	if r := h("connect", "/ip4/127.0.0.1/tcp/4002/p2p/"+f.ID.String()); r.code != exitFailed || !strings.Contains(r.stderr, "dial backoff") {
		t.Errorf("connect to a dead peer: %+v", r)
	}

	ok(h("offer", "ls"), "no offers")
	ok(h(with(offerAddArgs, "--key", "small", "--renewable", "--formats", "bundle,raw", "--max-appliance", "10GiB",
		"--receipt-interval", "30s", "--grace", "2m", "--per-buyer", "2", "--ttl", "5m", "--until", "24h", "--min", "10m")...),
		"added offer small (cid b")
	st := f.Offers()
	if len(st) != 1 {
		t.Fatalf("offers %+v", st)
	}
	sp := st[0].Spec
	if sp.Hardware.Memory != 8<<30 || sp.Hardware.Disk != 40<<30 || sp.Price.Micro != 40000 || sp.MaxLease != 72*time.Hour ||
		sp.MinLease != 10*time.Minute || !sp.Renewable || len(sp.Formats) != 2 || sp.MaxApplianceSize != 10<<30 ||
		sp.ReceiptInterval != 30*time.Second || sp.PaymentGrace != 2*time.Minute || sp.PerBuyerCap != 2 || sp.TTL != 5*time.Minute ||
		!sp.Until.Equal(testNow.Add(24*time.Hour)) || sp.Hardware.Arch == "" {
		t.Errorf("spec %+v", sp)
	}
	add := h(with(offerAddArgs, "--json")...)
	if add.code != 0 || decodeAny(t, add.stdout).(map[string]any)["key"] != "c4m8" {
		t.Errorf("offer add --json: %+v", add)
	}
	ok(h("offer", "ls"), "KEY", "small", "c4m8", "eu-de", "0.04USD/h", "in 9m", "no")
	sameJSON(h("offer", "ls", "--json"), "/v1/offers")
	ok(h("offer", "rm", "small"), "withdrew offer small")
	if r := h("offer", "ls"); !strings.Contains(r.stdout, "yes") {
		t.Errorf("withdrawn offer not shown as such:\n%s", r.stdout)
	}
	if r := h("offer", "rm", "small"); r.code != exitFailed || !strings.Contains(r.stderr, "already withdrawn") {
		t.Errorf("withdraw twice: %+v", r)
	}
	if r := h("offer", "rm", "nope"); r.code != exitFailed || !strings.Contains(r.stderr, `spotmesh offer rm: no offer with key "nope"`) {
		t.Errorf("withdraw unknown: %+v", r)
	}
	f.SetAddErr(errors.New("disk full"))
	if r := h(offerAddArgs...); r.code != exitFailed || !strings.Contains(r.stderr, "disk full") {
		t.Errorf("refused offer: %+v", r)
	}

	ok(h("book"), "SELLER", "eu-de", "c4m8", "8GiB", "40GiB", "0.04USD/h", "in 9m", "3 shown, 3 in the book")
	ok(h("book", "--vcpu", ">=4", "--mem", ">=8GiB", "--region", "eu", "--max-price", "0.1USD/h", "--sort", "vcpu", "--limit", "5",
		"--min-slots", "1", "--include-paused", "--gpu-model", "A100", "--gpus", ">=1", "--disk", "<=1TB", "--profile", "p", "--arch", "arm64",
		"--seller", f.ID.String()), "2 shown, 3 in the book")
	q := f.LastQuery()
	if q.VCPU.Min != 4 || q.Memory.Min != 8<<30 || q.RegionPrefix != "eu" || q.MaxPrice.Micro != 100000 || q.Sort != "vcpu" || q.Limit != 5 ||
		q.MinSlots != 1 || !q.IncludePaused || q.GPUModel != "A100" || q.GPUs.Min != 1 || q.Disk.Max != 1e12 || q.Seller != f.ID {
		t.Errorf("query %+v", q)
	}
	ok(h("book", "--vcpu", "100"), "no offers match (3 in the book)")
	sameJSON(h("book", "--json"), "/v1/book")
	sameJSON(h("book", "--json", "--vcpu", "4"), "/v1/book?vcpu=4")
}

func TestUnreachable(t *testing.T) {
	home := newHome(t)

	// No daemon ever ran: no api file.
	r := spotmesh(t, nil, "id", "--home", home)
	if r.code != exitUnreachable || !strings.Contains(r.stderr, "no spotmesh daemon is running for home "+home+": start it with 'spotmesh run --home "+home+"'") {
		t.Errorf("id without daemon: %+v", r)
	}
	if !strings.Contains(r.stdout, "peer id:") || !strings.Contains(r.stdout, "12D3KooW") {
		t.Errorf("id without daemon does not print the peer ID: %q", r.stdout)
	}
	r = spotmesh(t, nil, "id", "--home", home, "--json")
	if r.code != exitUnreachable || !strings.HasPrefix(decodeAny(t, r.stdout).(map[string]any)["peer_id"].(string), "12D3KooW") {
		t.Errorf("id --json without daemon: %+v", r)
	}

	// A daemon ran and died: its address is stale.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := os.WriteFile(filepath.Join(home, node.APIAddrFile), []byte(addr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "no spotmesh daemon answers at " + addr + " for home " + home + ": start it with 'spotmesh run --home " + home + "'"
	for _, args := range [][]string{{"id"}, {"peers"}, {"offer", "ls"}, {"book"}, {"offer", "rm", "k"}, with(offerAddArgs),
		{"connect", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"}} {
		r := spotmesh(t, nil, with(args, "--home", home)...)
		if r.code != exitUnreachable || !strings.Contains(r.stderr, want) {
			t.Errorf("%v: exit %d, stderr %q; want 3 and %q", args, r.code, r.stderr, want)
		}
	}
}

func TestNoHomeAndWrongToken(t *testing.T) {
	empty := t.TempDir()
	r := spotmesh(t, nil, "offer", "ls", "--home", empty)
	if r.code != exitFailed || !strings.Contains(r.stderr, "create one with 'spotmesh init --home "+empty+"'") {
		t.Errorf("no home: %+v", r)
	}
	if r := spotmesh(t, nil, "id", "--home", empty); r.code != exitFailed {
		t.Errorf("id without a home: %+v", r)
	}

	// A daemon of another home answers at this home's address.
	home, other := newHome(t), newHome(t)
	_, s := serveHome(t, other)
	if err := os.WriteFile(filepath.Join(home, node.APIAddrFile), []byte(s.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}
	r = spotmesh(t, nil, "offer", "ls", "--home", home)
	if r.code != exitFailed || !strings.Contains(r.stderr, "refused the token of home "+home) {
		t.Errorf("wrong token: %+v", r)
	}
}

func TestInit(t *testing.T) {
	home := filepath.Join(t.TempDir(), "a")
	r := spotmesh(t, nil, "init", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--mdns", "--dht-mode", "server",
		"--bootstrap", "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx", "--log-level", "debug")
	if r.code != 0 || !strings.Contains(r.stdout, "created home "+home) || !strings.Contains(r.stdout, "peer id: 12D3KooW") {
		t.Fatalf("init: %+v", r)
	}
	key1, err := os.ReadFile(filepath.Join(home, node.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 1 || !cfg.MDNS || cfg.DHTMode != "server" || len(cfg.Bootstrap) != 1 || cfg.LogLevel != "debug" {
		t.Errorf("config %+v", cfg)
	}

	// Again, changing only the API: the key stays, so do the other settings.
	r = spotmesh(t, nil, "--json", "init", "--home", home, "--api", "127.0.0.1:5999")
	if r.code != 0 {
		t.Fatalf("init again: %+v", r)
	}
	var res initResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || !res.KeptKey || res.Home != home {
		t.Errorf("init again: %s (%v)", r.stdout, err)
	}
	key2, _ := os.ReadFile(filepath.Join(home, node.KeyFile))
	if !bytes.Equal(key1, key2) {
		t.Error("init replaced the key")
	}
	cfg, _ = node.LoadConfig(home)
	if cfg.API != "127.0.0.1:5999" || !cfg.MDNS || cfg.DHTMode != "server" || len(cfg.Listen) != 1 {
		t.Errorf("config after re-init %+v", cfg)
	}
	r = spotmesh(t, nil, "init", "--home", home)
	if r.code != 0 || !strings.Contains(r.stdout, "kept its key") || !strings.Contains(r.stdout, res.PeerID.String()) {
		t.Errorf("init a third time: %+v", r)
	}

	// Defaults pick free ports.
	home2 := filepath.Join(t.TempDir(), "b")
	if r := spotmesh(t, map[string]string{"SPOTMESH_HOME": home2}, "init"); r.code != 0 {
		t.Fatalf("init from env: %+v", r)
	}
	cfg, _ = node.LoadConfig(home2)
	if cfg.API != "127.0.0.1:0" || !strings.HasSuffix(cfg.Listen[0], "/tcp/0") {
		t.Errorf("default config %+v", cfg)
	}
}

func TestVersion(t *testing.T) {
	r := spotmesh(t, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "spotmesh "+node.Version) || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("version: %+v", r)
	}
	r = spotmesh(t, nil, "version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version == "" || v.Go == "" {
		t.Errorf("version --json: %+v (%v)", r, err)
	}
}
