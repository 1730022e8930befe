package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// testnetPIDs reads the PIDs testnet.json records, by node name.
func testnetPIDs(t *testing.T, dir string) (procnet.Manifest, map[string]int) {
	t.Helper()
	var m procnet.Manifest
	b, err := os.ReadFile(filepath.Join(dir, procnet.ManifestFile))
	if err != nil {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("testnet.json: %v", err)
	}
	pids := map[string]int{}
	for _, n := range m.Nodes {
		pids[n.Name] = n.PID
	}
	return m, pids
}

// runsNode reports whether pid runs the testnet's binary for home: its
// command line names both (a zombie's is empty).
func runsNode(pid int, bin, home string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte(bin+"\x00")) && bytes.Contains(b, []byte("--home\x00"+home+"\x00"))
}

// killTestnet kills, by PID, every daemon testnet.json records that
// still runs: the cleanup of a test that booted a testnet.
func killTestnet(t *testing.T, dir string) {
	m, _ := testnetPIDs(t, dir)
	for _, n := range m.Nodes {
		if runsNode(n.PID, m.Binary, n.Home) {
			t.Errorf("%s (pid %d) still runs at the end of the test: killed", n.Name, n.PID)
			_ = syscall.Kill(n.PID, syscall.SIGKILL)
		}
	}
}

func testnetStatusOf(t *testing.T, dir string) map[string]procnet.NodeStatus {
	t.Helper()
	var st testnetStatus
	out := mustCLI(t, "testnet", "status", "--dir", dir, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	byName := map[string]procnet.NodeStatus{}
	for _, n := range st.Nodes {
		byName[n.Name] = n
	}
	return byName
}

// TestTestnetThroughCLI boots a testnet of real daemons, kills a seller,
// starts it again and takes the testnet down, as an operator would.
func TestTestnetThroughCLI(t *testing.T) {
	binary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() { killTestnet(t, dir) })

	t0 := time.Now()
	out := mustCLI(t, "testnet", "up", "--dir", dir, "--sellers", "2", "--buyers", "1", "--timeout", "30s")
	t.Logf("testnet up of 2 sellers and 1 buyer (and boot): %v\n%s", time.Since(t0), out)
	for _, s := range []string{"every book holds all 4 offers", "boot", "seller-1", "seller-2", "buyer-1", "127.0.0.1:", "12D3KooW"} {
		if !strings.Contains(out, s) {
			t.Fatalf("up does not print %q:\n%s", s, out)
		}
	}
	m, pids := testnetPIDs(t, dir)
	if m.Binary != filepath.Join(dir, "bin", "spotmesh") || len(pids) != 4 {
		t.Fatalf("testnet.json: binary %s, nodes %v", m.Binary, pids)
	}
	for _, n := range m.Nodes {
		if !runsNode(n.PID, m.Binary, n.Home) {
			t.Fatalf("%s: pid %d does not run %s --home %s", n.Name, n.PID, m.Binary, n.Home)
		}
	}

	st := testnetStatusOf(t, dir)
	for _, name := range []string{"boot", "seller-1", "seller-2", "buyer-1"} {
		if !st[name].Alive || st[name].Peers < 1 {
			t.Fatalf("%s after up: %+v", name, st[name])
		}
	}
	if b := st["buyer-1"]; b.Book != 4 || len(b.Missing) != 0 {
		t.Fatalf("buyer-1's book after up: %d offers, missing %v", b.Book, b.Missing)
	}
	if st["seller-1"].Offers != 2 || st["seller-2"].Offers != 2 {
		t.Fatalf("sellers' own offers: %d and %d, want 2 each", st["seller-1"].Offers, st["seller-2"].Offers)
	}
	// The CLI pointed at a node's home talks to that node.
	if b := bookOf(t, filepath.Join(dir, "buyer-1")); b.Total != 4 {
		t.Fatalf("buyer-1's book through 'book': %d offers", b.Total)
	}
	if _, err := runCLI(t, "testnet", "up", "--dir", dir); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("up on a running testnet: %v", err)
	}

	// A crash, then the node back from its home.
	mustCLI(t, "testnet", "kill", "--dir", dir, "seller-2")
	if runsNode(pids["seller-2"], m.Binary, filepath.Join(dir, "seller-2")) {
		t.Fatal("seller-2 still runs after kill")
	}
	st = testnetStatusOf(t, dir)
	if st["seller-2"].Alive || !st["seller-1"].Alive || !st["buyer-1"].Alive || !st["boot"].Alive {
		t.Fatalf("status after kill seller-2: %+v", st)
	}
	peer := st["seller-2"].PeerID
	mustCLI(t, "testnet", "start", "--dir", dir, "seller-2")
	st = testnetStatusOf(t, dir)
	if s := st["seller-2"]; !s.Alive || s.PeerID != peer || s.PID == pids["seller-2"] || s.Offers != 2 {
		t.Fatalf("seller-2 after start: %+v (peer was %s, pid %d)", s, peer, pids["seller-2"])
	}
	if logs := mustCLI(t, "testnet", "logs", "--dir", dir, "seller-2", "-n", "50"); !strings.Contains(logs, "spotmesh running") {
		t.Fatalf("logs of seller-2 do not show the daemon running:\n%s", logs)
	}

	// Down stops every process it started and leaves the directory.
	m, _ = testnetPIDs(t, dir)
	out = mustCLI(t, "testnet", "down", "--dir", dir)
	if !strings.Contains(out, "4 stopped") {
		t.Fatalf("down:\n%s", out)
	}
	for _, n := range m.Nodes {
		if runsNode(n.PID, m.Binary, n.Home) {
			t.Errorf("%s: pid %d runs after down", n.Name, n.PID)
		}
	}
	for _, f := range []string{"testnet.json", "bin/spotmesh", "seller-2/daemon.log", "buyer-1/key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("down removed %s: %v", f, err)
		}
	}
	st = testnetStatusOf(t, dir)
	for name, s := range st {
		if s.Alive {
			t.Errorf("%s alive after down", name)
		}
	}
}
