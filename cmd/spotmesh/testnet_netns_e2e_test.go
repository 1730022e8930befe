package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// ipList is what 'ip netns list' and 'ip -o link' print.
func ipList(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for _, args := range [][]string{{"netns", "list"}, {"-o", "link"}} {
		b, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, b)
		}
		sb.Write(b)
	}
	return sb.String()
}

// TestTestnetNetnsThroughCLI boots a testnet whose nodes run in network
// namespaces, cuts two nodes off, heals, and takes it down, as an
// operator would: the CLI reaches each node at its namespace's address,
// and down leaves no namespace or bridge.
func TestTestnetNetnsThroughCLI(t *testing.T) {
	if err := procnet.CheckNetns(); err != nil {
		t.Skip(err)
	}
	binary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() {
		killTestnet(t, dir)
		m, _ := testnetPIDs(t, dir)
		if m.Network == nil {
			return
		}
		// Whatever a failed test left of the network, by the names
		// testnet.json records.
		for _, n := range m.Nodes {
			_ = exec.Command("ip", "link", "del", n.Veth).Run()
			_ = exec.Command("ip", "netns", "del", n.Netns).Run()
		}
		for _, p := range m.Network.Partitions {
			_ = exec.Command("ip", "link", "del", p.Bridge).Run()
		}
		_ = exec.Command("ip", "link", "del", m.Network.Bridge).Run()
	})

	t0 := time.Now()
	out := mustCLI(t, "testnet", "up", "--dir", dir, "--sellers", "2", "--buyers", "1", "--netns", "--timeout", "30s")
	t.Logf("testnet up --netns of 2 sellers and 1 buyer (and boot): %v\n%s", time.Since(t0), out)
	m, _ := testnetPIDs(t, dir)
	if m.Network == nil || !m.Network.Made || !strings.Contains(out, m.Network.Bridge) || !strings.Contains(out, "testnet partition") {
		t.Fatalf("up --netns: network %+v\n%s", m.Network, out)
	}
	for _, n := range m.Nodes {
		if host, _, _ := net.SplitHostPort(n.APIAddr); host != n.IP || n.Netns == "" || !strings.Contains(ipList(t), n.Netns) {
			t.Fatalf("%s: API %s, address %s, namespace %q", n.Name, n.APIAddr, n.IP, n.Netns)
		}
		if !runsNode(n.PID, m.Binary, n.Home) {
			t.Fatalf("%s: pid %d does not run %s --home %s", n.Name, n.PID, m.Binary, n.Home)
		}
	}
	// The CLI on this host reaches a node in its namespace.
	if b := bookOf(t, filepath.Join(dir, "buyer-1")); b.Total != 4 {
		t.Fatalf("buyer-1's book through 'book': %d offers", b.Total)
	}

	out = mustCLI(t, "testnet", "partition", "--dir", dir, "seller-2", "buyer-1")
	if !strings.Contains(out, "cut off seller-2, buyer-1 from boot, seller-1") {
		t.Fatalf("partition:\n%s", out)
	}
	if _, err := runCLI(t, "testnet", "partition", "--dir", dir, "seller-9"); err == nil || !strings.Contains(err.Error(), "no such node") {
		t.Fatalf("partition of an unknown node: %v", err)
	}
	st := testnetStatusOf(t, dir)
	for _, name := range []string{"boot", "seller-1", "seller-2", "buyer-1"} {
		if !st[name].Alive {
			t.Fatalf("%s not alive while partitioned: %+v", name, st[name])
		}
	}
	if text := mustCLI(t, "testnet", "status", "--dir", dir); !strings.Contains(text, "Cut off from the rest: seller-2, buyer-1") {
		t.Fatalf("status while partitioned:\n%s", text)
	}
	if out := mustCLI(t, "testnet", "heal", "--dir", dir); !strings.Contains(out, "healed seller-2, buyer-1: every node reaches every other again") {
		t.Fatalf("heal:\n%s", out)
	}
	if out := mustCLI(t, "testnet", "heal", "--dir", dir); !strings.Contains(out, "nothing to heal") {
		t.Fatalf("heal again:\n%s", out)
	}

	// Down stops the daemons and removes the namespaces and the bridge.
	if _, err := runCLI(t, "testnet", "partition", "--dir", dir, "seller-1"); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, "testnet", "down", "--dir", dir)
	if !strings.Contains(out, "4 stopped") || !strings.Contains(out, m.Network.Bridge+" are removed") {
		t.Fatalf("down:\n%s", out)
	}
	list := ipList(t)
	for _, n := range m.Nodes {
		if runsNode(n.PID, m.Binary, n.Home) {
			t.Errorf("%s: pid %d runs after down", n.Name, n.PID)
		}
		if strings.Contains(list, n.Netns) || strings.Contains(list, n.Veth+"@") || strings.Contains(list, n.Veth+":") {
			t.Errorf("%s: its namespace or link is left after down", n.Name)
		}
	}
	if strings.Contains(list, m.Network.Bridge) || strings.Contains(list, "smp-"+strings.TrimPrefix(m.Network.Bridge, "smb-")) {
		t.Errorf("a bridge is left after down:\n%s", list)
	}
	if _, err := runCLI(t, "testnet", "partition", "--dir", dir, "seller-1"); err == nil || !strings.Contains(err.Error(), "network is down") {
		t.Fatalf("partition after down: %v", err)
	}
}
