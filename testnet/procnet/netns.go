package procnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spotmesh/spotmesh/node"
)

// A testnet of network namespaces (Config.Netns) runs each node in a
// namespace of its own, as if each were a host, all joined by a bridge on
// this machine. Every name it makes holds a short hash of the testnet's
// directory, so that two testnets, or a testnet and the leftovers of a
// crashed one elsewhere, never share one:
//
//	smb-<h>         the bridge; the host's side of it holds <subnet>.1
//	sm-<h>-<node>   a node's namespace, its link to the bridge named eth0
//	                inside and smv-<h>-<i> on the host (i: the node's index)
//	smp-<h>-<g>     the bridge of partition g, while it lasts
//
// The subnet is a /24 of 198.18.0.0/15, the range RFC 2544 reserves for
// tests of networks, which real networks (10/8, 100.64/10 behind carrier
// NAT and VPNs, 192.168/16) rarely use: the first free one from a place
// the hash picks. Node i has <subnet>.(i+2). The namespaces have no
// default route: a node reaches the other nodes and the host, nothing
// else.

// Errors of testnets of network namespaces, checked with errors.Is.
var (
	// ErrNetnsUnavailable: network namespaces need Linux, root and the ip
	// command of iproute2.
	ErrNetnsUnavailable = errors.New("network namespaces unavailable")
	// ErrNoNetwork: the testnet runs on loopback, or its network is down.
	ErrNoNetwork = errors.New("no network of namespaces")
	// ErrNetnsTaken: a namespace or link with one of the testnet's names
	// exists already, and the testnet did not make it.
	ErrNetnsTaken = errors.New("network name taken")
)

// Network is a testnet's network of namespaces, as testnet.json records
// it. Up records every name before it makes the thing named, so that Down
// (and a Down after a crash) removes what this testnet made and nothing
// else.
type Network struct {
	// Bridge joins the nodes' namespaces; the host's side of it holds
	// Host, in Subnet (an IPv4 /24 of 198.18.0.0/15).
	Bridge string `json:"bridge"`
	Subnet string `json:"subnet"`
	Host   string `json:"host"`
	// Made: the bridge, namespaces and links named here were made by this
	// testnet (or are about to be). Down clears it once it has removed
	// them, and Start sets it again.
	Made bool `json:"made"`
	// Partitions are the groups of nodes cut off from the rest.
	Partitions []Partition `json:"partitions,omitempty"`
}

// Partition is a group of nodes cut off from the rest of the testnet:
// their links hang on a bridge of their own, which the host also reaches,
// so the group's nodes talk among themselves and to the host (the CLI,
// status), not to other nodes.
type Partition struct {
	Bridge string   `json:"bridge"`
	Nodes  []string `json:"nodes"`
}

// CheckNetns tells whether this machine can run a testnet of network
// namespaces: Linux, root, and the ip command. Its error wraps
// ErrNetnsUnavailable and says what is missing.
func CheckNetns() error { return checkNetns() }

// netnsID is the short hash of a testnet's directory that its names hold.
func netnsID(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:3])
}

// bridgeMAC is the hardware address of every bridge of the testnet in
// dir, locally administered. A bridge left to itself takes the lowest of
// its ports' addresses, which changes as a partition moves links between
// bridges; then a node's cached address for the host goes stale and the
// host stops reaching it. One fixed address for the bridge and every
// partition's keeps those caches right.
func bridgeMAC(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return fmt.Sprintf("02:73:6d:%02x:%02x:%02x", sum[0], sum[1], sum[2])
}

// testRange is where subnets come from: 512 /24s.
var testRange = netip.MustParsePrefix("198.18.0.0/15")

// pickSubnet picks the /24 of 198.18.0.0/15 for the testnet in dir: the
// first, from a place the hash of dir picks, that overlaps none of taken
// (the host's addresses and routes).
func pickSubnet(dir string, taken []netip.Prefix) (netip.Prefix, error) {
	sum := sha256.Sum256([]byte(dir))
	const count = 512
	start := int(binary.BigEndian.Uint16(sum[3:5])) % count
	base := testRange.Addr().As4()
	for k := 0; k < count; k++ {
		c := (start + k) % count
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1] + byte(c/256), byte(c % 256), 0}), 24)
		free := true
		for _, t := range taken {
			if t.Bits() > 0 && t.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: every /24 of %s is in use on this machine", ErrNetnsUnavailable, testRange)
}

// routeTypes are the words that may stand before a route's destination
// in 'ip route show'.
var routeTypes = map[string]bool{"unicast": true, "local": true, "broadcast": true, "multicast": true,
	"unreachable": true, "blackhole": true, "prohibit": true, "throw": true, "nat": true, "anycast": true}

// parseRoutes reads the destinations of 'ip -4 -o route show' output,
// leaving out default routes.
func parseRoutes(b []byte) []netip.Prefix {
	var out []netip.Prefix
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) > 1 && routeTypes[f[0]] {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		if p, err := netip.ParsePrefix(f[0]); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(f[0]); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// planNetwork names the network of the testnet in m.Dir, in subnet, and
// fills each node's namespace, link and address. It makes nothing.
func planNetwork(m *Manifest, subnet netip.Prefix) {
	id := netnsID(m.Dir)
	host := subnet.Addr().Next()
	m.Network = &Network{Bridge: "smb-" + id, Subnet: subnet.String(), Host: host.String()}
	ip := host
	for i := range m.Nodes {
		ip = ip.Next()
		m.Nodes[i].Netns = "sm-" + id + "-" + m.Nodes[i].Name
		m.Nodes[i].Veth = "smv-" + id + "-" + strconv.Itoa(i)
		m.Nodes[i].IP = ip.String()
	}
}

// partitionBridge names the bridge of a new partition of m: the first of
// smp-<h>-1, smp-<h>-2, ... no partition of m holds.
func partitionBridge(m Manifest) string {
	used := map[string]bool{}
	for _, p := range m.Network.Partitions {
		used[p.Bridge] = true
	}
	for g := 1; ; g++ {
		b := "smp-" + netnsID(m.Dir) + "-" + strconv.Itoa(g)
		if !used[b] {
			return b
		}
	}
}

// partitionOf returns the index of the partition that holds the node
// named name, or -1.
func (nw *Network) partitionOf(name string) int {
	for i, p := range nw.Partitions {
		for _, x := range p.Nodes {
			if x == name {
				return i
			}
		}
	}
	return -1
}

// prefixLen is the subnet's length, for an address on a link.
func (nw *Network) prefixLen() string {
	p, err := netip.ParsePrefix(nw.Subnet)
	if err != nil {
		return "24"
	}
	return strconv.Itoa(p.Bits())
}

// networkUp fails unless m's network of namespaces is made.
func networkUp(m Manifest) error {
	if m.Network == nil {
		return fmt.Errorf("%s: %w: the testnet runs on loopback; partitions need one booted with 'spotmesh testnet up --netns'", m.Dir, ErrNoNetwork)
	}
	if !m.Network.Made {
		return fmt.Errorf("%s: %w: its network is down, after 'testnet down': start its nodes again with 'spotmesh testnet start --dir %s --all'", m.Dir, ErrNoNetwork, m.Dir)
	}
	return nil
}

// dropNetwork removes the testnet's network, if it made one and none of
// its daemons runs, with the address files the daemons left in their
// homes (a SIGKILL leaves them), which name addresses that go with it.
// The manifest keeps the names, for Start to make them again.
func (n *Net) dropNetwork(ctx context.Context) error {
	m := n.Manifest()
	if m.Network == nil || !m.Network.Made {
		return nil
	}
	if err := CheckNetns(); err != nil {
		return fmt.Errorf("%w: its namespaces and bridge %s stay until 'spotmesh testnet down --dir %s' runs as root", err, m.Network.Bridge, m.Dir)
	}
	for _, nd := range m.Nodes {
		if st, _ := probe(m.Binary, nd); st == procOurs {
			return fmt.Errorf("%s (pid %d) still runs in namespace %s: the network stays", nd.Name, nd.PID, nd.Netns)
		}
	}
	if err := removeNetwork(ctx, m); err != nil {
		return err
	}
	for _, nd := range m.Nodes {
		for _, f := range []string{node.APIAddrFile, node.PeerAddrFile, node.GatewayFile} {
			_ = os.Remove(filepath.Join(nd.Home, f))
		}
	}
	n.mu.Lock()
	n.m.Network.Made = false
	n.m.Network.Partitions = nil
	n.mu.Unlock()
	return n.save()
}
