package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// TestTestnetUsageErrors: bad sub-verbs, flags and values exit 2 before
// anything is started or written.
func TestTestnetUsageErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"testnet"}, "want a sub-verb: up, status, scenario, kill, start, logs, partition, heal or down"},
		{[]string{"testnet", "frob"}, `unknown sub-verb "frob"`},
		{[]string{"testnet", "up"}, "--dir is required"},
		{[]string{"testnet", "up", "--dir", dir, "--sellers", "0"}, "--sellers 0: want 1 to 64"},
		{[]string{"testnet", "up", "--dir", dir, "--sellers", "65"}, "--sellers 65: want 1 to 64"},
		{[]string{"testnet", "up", "--dir", dir, "--sellers", "many"}, `--sellers "many": want a whole number`},
		{[]string{"testnet", "up", "--dir", dir, "--buyers", "0"}, "--buyers 0: want 1 to 64"},
		{[]string{"testnet", "up", "--dir", dir, "--sellers", "40", "--buyers", "40"}, "--sellers 40 --buyers 40: want at most 64 nodes in all"},
		{[]string{"testnet", "up", "--dir", dir, "--offers", "9"}, "--offers 9: want 1 to 8"},
		{[]string{"testnet", "up", "--dir", dir, "--timeout", "0s"}, "--timeout 0s"},
		{[]string{"testnet", "up", "--dir", dir, "extra"}, `unexpected argument "extra"`},
		{[]string{"testnet", "status"}, "--dir is required"},
		{[]string{"testnet", "kill", "--dir", dir}, "want one node name"},
		{[]string{"testnet", "kill", "--dir", dir, "a", "b"}, "want one node name"},
		{[]string{"testnet", "logs", "--dir", dir}, "want one node name"},
		{[]string{"testnet", "start", "--dir", dir}, "want node names, like seller-3, or --all"},
		{[]string{"testnet", "start", "--dir", dir, "--all", "seller-1"}, "(not both)"},
		{[]string{"testnet", "down", "--dir", dir, "--grace", "soon"}, `--grace "soon"`},
		{[]string{"testnet", "partition", "--dir", dir}, "want the names of the nodes to cut off"},
		{[]string{"testnet", "partition", "seller-1"}, "--dir is required"},
		{[]string{"testnet", "heal"}, "--dir is required"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got := spotmesh(t, nil, tc.args...)
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
	if _, err := os.Stat(dir); err == nil {
		t.Error("a usage error created the testnet's directory")
	}
}

// stoppedTestnet writes the manifest of a testnet whose processes are
// all gone (PIDs that cannot exist), with a log for seller-1.
func stoppedTestnet(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	m := procnet.Manifest{Version: procnet.ManifestVersion, Dir: dir, Binary: filepath.Join(dir, "bin", "spotmesh"), Created: time.Now().UTC(),
		Offers: []procnet.Offer{{Seller: "seller-1", Key: "c4m8-eu-de-1", OfferID: "x/c4m8-eu-de-1"}}}
	for _, name := range []string{"boot", "seller-1", "buyer-1"} {
		role, _, _ := strings.Cut(name, "-")
		home := filepath.Join(dir, name)
		if err := os.MkdirAll(home, 0o700); err != nil {
			t.Fatal(err)
		}
		m.Nodes = append(m.Nodes, procnet.Node{Name: name, Role: role, Home: home, PID: 1 << 30, StartTime: 1})
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, procnet.ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seller-1", procnet.LogFile), []byte("one\ntwo\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTestnetVerbsOnAStoppedTestnet(t *testing.T) {
	dir := stoppedTestnet(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"testnet", "status", "--dir", dir}, exitOK, "0 of 3 nodes alive", ""},
		{[]string{"testnet", "kill", "--dir", dir, "seller-1"}, exitFailed, "", "seller-1: not running (pid 1073741824 has exited)"},
		{[]string{"testnet", "kill", "--dir", dir, "seller-9"}, exitUsage, "", `"seller-9": no such node`},
		{[]string{"testnet", "start", "--dir", dir, "seller-9"}, exitUsage, "", "its nodes are boot, seller-1, buyer-1"},
		{[]string{"testnet", "logs", "--dir", dir, "seller-1"}, exitOK, "one\ntwo\nthree\n", ""},
		{[]string{"testnet", "logs", "--dir", dir, "seller-1", "-n", "2"}, exitOK, "two\nthree\n", ""},
		{[]string{"testnet", "logs", "--dir", dir, "buyer-1"}, exitFailed, "", "buyer-1 has no log yet"},
		{[]string{"testnet", "up", "--dir", dir}, exitFailed, "", "stopped testnet"},
		{[]string{"testnet", "down", "--dir", dir}, exitOK, "0 stopped, 0 killed, 3 not running", ""},
		{[]string{"testnet", "status", "--dir", t.TempDir()}, exitFailed, "", "no testnet in"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			got := spotmesh(t, nil, tc.args...)
			if got.code != tc.code || !strings.Contains(got.stdout, tc.stdout) || !strings.Contains(got.stderr, tc.stderr) {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					tc.args, got.code, got.stdout, got.stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}

	got := spotmesh(t, nil, "testnet", "status", "--dir", dir, "--json")
	var st testnetStatus
	if err := json.Unmarshal([]byte(got.stdout), &st); err != nil || got.code != 0 {
		t.Fatalf("status --json: exit %d, %v\n%s", got.code, err, got.stdout)
	}
	if len(st.Nodes) != 3 || len(st.Offers) != 1 || st.Nodes[1].Alive || st.Nodes[1].Note == "" || st.Nodes[1].Missing == nil {
		t.Fatalf("status --json: %+v", st)
	}
}

func TestTestnetHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"help"}, []string{"testnet"}},
		{[]string{"help", "testnet"}, []string{"spotmesh testnet up", "spotmesh testnet kill --dir DIR NAME", "testnet.json"}},
		{[]string{"help", "testnet", "up"}, []string{"--sellers", "--buyers", "--timeout"}},
		{[]string{"testnet", "logs", "-h"}, []string{"-f", "-n COUNT"}},
		{[]string{"help", "testnet", "status"}, []string{"--dir"}},
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
