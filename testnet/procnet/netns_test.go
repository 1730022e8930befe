package procnet

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNetnsPickSubnet(t *testing.T) {
	dir := "/srv/testnets/a"
	p, err := pickSubnet(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Bits() != 24 || !testRange.Contains(p.Addr()) || p.Masked() != p {
		t.Fatalf("subnet %v: want a /24 of %v", p, testRange)
	}
	// The same directory, the same subnet; another, likely another.
	if again, _ := pickSubnet(dir, nil); again != p {
		t.Fatalf("subnet of %s: %v, then %v", dir, p, again)
	}
	// A subnet in use on the host is passed over, and so is one inside a
	// wider route; a default route takes none.
	taken := []netip.Prefix{p, netip.MustParsePrefix("0.0.0.0/0")}
	next, err := pickSubnet(dir, taken)
	if err != nil || next == p || !testRange.Contains(next.Addr()) {
		t.Fatalf("with %v taken: %v %v", p, next, err)
	}
	wide := netip.PrefixFrom(next.Addr(), 20).Masked()
	after, err := pickSubnet(dir, append(taken, wide))
	if err != nil || wide.Overlaps(after) || after == p {
		t.Fatalf("with %v and %v taken: %v %v", p, wide, after, err)
	}
	if _, err := pickSubnet(dir, []netip.Prefix{testRange}); !errors.Is(err, ErrNetnsUnavailable) {
		t.Fatalf("with all of %v taken: %v", testRange, err)
	}
}

func TestNetnsPlan(t *testing.T) {
	m := Manifest{Dir: "/srv/testnets/a"}
	m.Nodes = append(m.Nodes, Node{Name: "boot", Role: RoleBoot})
	for i := 1; i <= MaxNodes; i++ {
		m.Nodes = append(m.Nodes, Node{Name: "seller-" + strconv.Itoa(i), Role: RoleSeller})
	}
	subnet := netip.MustParsePrefix("198.19.7.0/24")
	planNetwork(&m, subnet)
	nw := m.Network
	if nw.Subnet != "198.19.7.0/24" || nw.Host != "198.19.7.1" || nw.Made || !strings.HasPrefix(nw.Bridge, "smb-") {
		t.Fatalf("network %+v", nw)
	}
	names := map[string]bool{nw.Bridge: true}
	ips := map[string]bool{nw.Host: true}
	for _, nd := range m.Nodes {
		for _, name := range []string{nd.Netns, nd.Veth} {
			if names[name] {
				t.Fatalf("%s: name %s twice", nd.Name, name)
			}
			names[name] = true
		}
		// Links' names fit IFNAMSIZ (15 bytes and a NUL).
		if len(nd.Veth) > 15 || !strings.Contains(nd.Netns, nd.Name) {
			t.Fatalf("%s: link %q, namespace %q", nd.Name, nd.Veth, nd.Netns)
		}
		a, err := netip.ParseAddr(nd.IP)
		if err != nil || !subnet.Contains(a) || ips[nd.IP] || a == subnet.Addr() || a.As4()[3] == 255 {
			t.Fatalf("%s: address %q", nd.Name, nd.IP)
		}
		ips[nd.IP] = true
	}
	if m.Nodes[0].IP != "198.19.7.2" {
		t.Fatalf("boot at %s, want 198.19.7.2", m.Nodes[0].IP)
	}
	// Another directory, other names.
	o := Manifest{Dir: "/srv/testnets/b", Nodes: []Node{{Name: "boot"}}}
	planNetwork(&o, subnet)
	if o.Network.Bridge == nw.Bridge || o.Nodes[0].Netns == m.Nodes[0].Netns {
		t.Fatalf("two testnets share names: %s %s", o.Network.Bridge, o.Nodes[0].Netns)
	}
	// Partitions' bridges.
	m.Network.Partitions = []Partition{{Bridge: partitionBridge(m)}}
	second := partitionBridge(m)
	if m.Network.Partitions[0].Bridge == second || len(second) > 15 {
		t.Fatalf("partition bridges %s, %s", m.Network.Partitions[0].Bridge, second)
	}
}

func TestNetnsParseRoutes(t *testing.T) {
	out := []byte(`default via 192.0.2.1 dev eth0
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
198.18.4.9 dev smp-abc-1 scope link src 198.18.4.1
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.2
unreachable 198.18.0.0/16 table 7
`)
	var got []string
	for _, p := range parseRoutes(out) {
		got = append(got, p.String())
	}
	want := "192.0.2.0/24 198.18.4.9/32 127.0.0.0/8 192.0.2.255/32 198.18.0.0/16"
	if strings.Join(got, " ") != want {
		t.Fatalf("routes %v, want %s", got, want)
	}
}

func TestNetnsRuns(t *testing.T) {
	const bin, home = "/tn/bin/spotmesh", "/tn/seller-1"
	nul := func(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }
	for _, tc := range []struct {
		name    string
		cmdline []byte
		want    bool
	}{
		{"ip before its exec", nul("/usr/sbin/ip", "netns", "exec", "sm-1-seller-1", bin, "run", "--home", home), true},
		{"ip from $PATH", nul("ip", "netns", "exec", "sm-1-seller-1", bin, "run", "--home", home), true},
		{"ip with another binary", nul("/usr/sbin/ip", "netns", "exec", "sm-1-seller-1", "/bin/sh", "--home", home), false},
		{"ip with another home", nul("/usr/sbin/ip", "netns", "exec", "sm-1-seller-1", bin, "run", "--home", "/tn/seller-2"), false},
		{"ip doing something else", nul("/usr/sbin/ip", "netns", "add", "x", bin, "--home", home), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runs(tc.cmdline, bin, home); got != tc.want {
				t.Fatalf("runs = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestNetnsPartitionRefuses: what Partition and Heal refuse, before they
// touch any network.
func TestNetnsPartitionRefuses(t *testing.T) {
	ctx := context.Background()
	// On loopback.
	n := fakeNet(t, "term", "term")
	if _, err := n.Partition(ctx, "seller-1"); !errors.Is(err, ErrNoNetwork) || !strings.Contains(err.Error(), "--netns") {
		t.Fatalf("partition of a loopback testnet: %v", err)
	}
	if _, err := n.Heal(ctx); !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("heal of a loopback testnet: %v", err)
	}
	// With a network recorded (not made: nothing is touched).
	n.mu.Lock()
	planNetwork(&n.m, netip.MustParsePrefix("198.18.9.0/24"))
	n.mu.Unlock()
	if err := n.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Partition(ctx, "seller-1"); !errors.Is(err, ErrNoNetwork) || !strings.Contains(err.Error(), "start") {
		t.Fatalf("partition of a testnet whose network is down: %v", err)
	}
	n.mu.Lock()
	n.m.Network.Made = true
	n.m.Network.Partitions = []Partition{{Bridge: "smp-x-1", Nodes: []string{"seller-2"}}}
	n.mu.Unlock()
	if err := n.save(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, "want the names"},
		{[]string{"seller-9"}, "no such node"},
		{[]string{"seller-1", "seller-1"}, "twice"},
		{[]string{"seller-2"}, "cut off already"},
		{[]string{"seller-1", "seller-3"}, "no such node"},
	} {
		if _, err := n.Partition(ctx, tc.names...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("partition %v: %v, want %q", tc.names, err, tc.want)
		}
	}
	one := fakeNet(t, "term")
	one.mu.Lock()
	planNetwork(&one.m, netip.MustParsePrefix("198.18.9.0/24"))
	one.m.Network.Made = true
	one.mu.Unlock()
	if err := one.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := one.Partition(ctx, "seller-1"); err == nil || !strings.Contains(err.Error(), "every node") {
		t.Errorf("partition of every node: %v", err)
	}
	if _, err := n.Heal(ctx, "seller-7"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("heal of an unknown node: %v", err)
	}
}

func TestNetnsUpWithoutNetns(t *testing.T) {
	if CheckNetns() == nil {
		t.Skip("this machine can run network namespaces")
	}
	cfg := DefaultConfig(filepath.Join(t.TempDir(), "tn"))
	cfg.Netns, cfg.Timeout = true, 5*time.Second
	if _, err := Up(context.Background(), cfg); !errors.Is(err, ErrNetnsUnavailable) {
		t.Fatalf("up --netns without root: %v", err)
	}
}
