package procnet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// netnsLockFile serializes, across testnets, the choice of a subnet and
// the making of a network: two 'up --netns' at once never pick one /24.
const netnsLockFile = "/run/spotmesh-testnet-netns.lock"

// netnsDirs are where 'ip netns add' puts its namespaces' names.
var netnsDirs = []string{"/run/netns", "/var/run/netns"}

func checkNetns() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%w: they need root, and this runs as uid %d", ErrNetnsUnavailable, uid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: they need the ip command of iproute2 (apt-get install iproute2), which is not on $PATH", ErrNetnsUnavailable)
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("%w: this kernel has no network namespaces (%v)", ErrNetnsUnavailable, err)
	}
	return nil
}

// ipCmd runs the ip command: args, and lines on its standard input for
// -batch. Its error holds what ip said.
func ipCmd(ctx context.Context, lines []string, args ...string) error {
	path, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("%w: no ip command on $PATH", ErrNetnsUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if lines != nil {
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		what := "ip " + strings.Join(args, " ")
		if lines != nil {
			what += " <<< " + strings.Join(first(lines, 4), "; ")
		}
		return fmt.Errorf("%s: %v: %s", what, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipBatch runs lines through 'ip [-n ns] -batch -', if there are any.
func ipBatch(ctx context.Context, ns string, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return ipCmd(ctx, lines, args...)
}

func netnsExists(name string) bool {
	for _, d := range netnsDirs {
		if _, err := os.Lstat(filepath.Join(d, name)); err == nil {
			return true
		}
	}
	return false
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// existing lists the namespaces and links of m's network that exist now.
func existing(m Manifest) []string {
	var out []string
	nw := m.Network
	if linkExists(nw.Bridge) {
		out = append(out, "bridge "+nw.Bridge)
	}
	for _, p := range nw.Partitions {
		if linkExists(p.Bridge) {
			out = append(out, "bridge "+p.Bridge)
		}
	}
	for _, nd := range m.Nodes {
		if nd.Netns != "" && netnsExists(nd.Netns) {
			out = append(out, "namespace "+nd.Netns)
		}
		if nd.Veth != "" && linkExists(nd.Veth) {
			out = append(out, "link "+nd.Veth)
		}
	}
	return out
}

// takenError says that names of m's network exist that m did not make.
func takenError(m Manifest, there []string) error {
	var cmds []string
	for _, t := range there {
		kind, name, _ := strings.Cut(t, " ")
		if kind == "namespace" {
			cmds = append(cmds, "ip netns del "+name)
		} else {
			cmds = append(cmds, "ip link del "+name)
		}
	}
	return fmt.Errorf("%w: %s exist(s) already, left by an earlier testnet in %s that was removed without 'spotmesh testnet down'? If nothing uses them, remove them with: %s",
		ErrNetnsTaken, strings.Join(first(there, 4), ", "), m.Dir, strings.Join(cmds, "; "))
}

// hostPrefixes are the IPv4 addresses and routes of this machine, which a
// testnet's subnet must not overlap.
func hostPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	path, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("%w: no ip command on $PATH", ErrNetnsUnavailable)
	}
	b, err := exec.CommandContext(ctx, path, "-4", "-o", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route show: %w", err)
	}
	return append(out, parseRoutes(b)...), nil
}

// setupNetwork makes the testnet's network. fresh (at Up): it picks a
// subnet, names everything, checks no such names exist, records them in
// the manifest and then makes them. Otherwise (at Start) it makes what
// is missing of the recorded network, after a 'down', a crash or a
// namespace removed by hand.
func (n *Net) setupNetwork(ctx context.Context, fresh bool) error {
	if err := checkNetns(); err != nil {
		return err
	}
	unlock, err := lockDir(netnsLockFile, 30*time.Second)
	if err != nil {
		return err
	}
	defer unlock()
	if fresh {
		taken, err := hostPrefixes(ctx)
		if err != nil {
			return err
		}
		m := n.Manifest()
		subnet, err := pickSubnet(m.Dir, taken)
		if err != nil {
			return err
		}
		n.mu.Lock()
		planNetwork(&n.m, subnet)
		n.mu.Unlock()
	}
	m := n.Manifest()
	if m.Network == nil {
		return fmt.Errorf("%s: %w", m.Dir, ErrNoNetwork)
	}
	if !m.Network.Made {
		if there := existing(m); len(there) > 0 {
			return takenError(m, there)
		}
		n.mu.Lock()
		n.m.Network.Made = true
		n.mu.Unlock()
	}
	// Recorded before made.
	if err := n.save(); err != nil {
		return err
	}
	return makeNetwork(ctx, n.Manifest())
}

// makeNetwork makes what is missing of m's network: bridges first, then
// each node's namespace and link, on its partition's bridge if it is in
// one.
func makeNetwork(ctx context.Context, m Manifest) error {
	nw := m.Network
	plen := nw.prefixLen()
	var host []string
	bridge := func(name string) {
		if !linkExists(name) {
			host = append(host, "link add "+name+" address "+bridgeMAC(m.Dir)+" type bridge", "link set "+name+" addrgenmode none")
		}
		host = append(host, "link set "+name+" up")
	}
	bridge(nw.Bridge)
	host = append(host, "addr replace "+nw.Host+"/"+plen+" dev "+nw.Bridge)
	for _, p := range nw.Partitions {
		bridge(p.Bridge)
	}
	var inside []Node
	for _, nd := range m.Nodes {
		if nd.Netns == "" {
			continue
		}
		nsThere, vethThere := netnsExists(nd.Netns), linkExists(nd.Veth)
		if !nsThere {
			host = append(host, "netns add "+nd.Netns)
		}
		if !vethThere {
			host = append(host, "link add "+nd.Veth+" type veth peer name eth0 netns "+nd.Netns,
				"link set "+nd.Veth+" addrgenmode none")
		}
		master := nw.Bridge
		if g := nw.partitionOf(nd.Name); g >= 0 {
			master = nw.Partitions[g].Bridge
			host = append(host, "route replace "+nd.IP+"/32 dev "+master+" src "+nw.Host)
		}
		host = append(host, "link set "+nd.Veth+" master "+master, "link set "+nd.Veth+" up")
		if !nsThere || !vethThere {
			inside = append(inside, nd)
		}
	}
	if err := ipBatch(ctx, "", host); err != nil {
		return fmt.Errorf("make the testnet's network: %w", err)
	}
	for _, nd := range inside {
		err := ipBatch(ctx, nd.Netns, []string{
			"link set lo up",
			"link set eth0 addrgenmode none",
			"addr replace " + nd.IP + "/" + plen + " dev eth0",
			"link set eth0 up",
		})
		if err != nil {
			return fmt.Errorf("%s: set up namespace %s: %w", nd.Name, nd.Netns, err)
		}
	}
	links := []string{nw.Bridge}
	for _, p := range nw.Partitions {
		links = append(links, p.Bridge)
	}
	for _, nd := range m.Nodes {
		links = append(links, nd.Veth)
	}
	return waitUp(ctx, links)
}

// waitUp waits until the links named are operationally up. A link that
// has just got its carrier (a bridge its first port, a veth its peer)
// drops what it is given to send until the kernel has activated it,
// which it does in batches, up to a second later: a partition's bridge
// would lose the host's first ARP request to the nodes moved onto it.
func waitUp(ctx context.Context, links []string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var down string
	err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		for _, l := range links {
			b, err := os.ReadFile(filepath.Join("/sys/class/net", l, "operstate"))
			if err != nil || strings.TrimSpace(string(b)) != "up" {
				down = l
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%s is not up: %w", down, err)
	}
	return nil
}

// removeNetwork removes the namespaces, links and bridges of m's network
// that exist, and waits until none does: each node's link (both ends go),
// its namespace, the partitions' bridges, the bridge. The processes in
// the namespaces must have ended.
func removeNetwork(ctx context.Context, m Manifest) error {
	nw := m.Network
	var lines []string
	for _, nd := range m.Nodes {
		if nd.Veth != "" && linkExists(nd.Veth) {
			lines = append(lines, "link del "+nd.Veth)
		}
		if nd.Netns != "" && netnsExists(nd.Netns) {
			lines = append(lines, "netns del "+nd.Netns)
		}
	}
	for _, p := range nw.Partitions {
		if linkExists(p.Bridge) {
			lines = append(lines, "link del "+p.Bridge)
		}
	}
	if linkExists(nw.Bridge) {
		lines = append(lines, "link del "+nw.Bridge)
	}
	var batchErr error
	if len(lines) > 0 {
		// -force: try every line, whatever failed before.
		batchErr = ipCmd(ctx, lines, "-force", "-batch", "-")
	}
	// A namespace's links go once its last process has; that may lag.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var left []string
	_ = poll(wctx, 20*time.Millisecond, func() (bool, error) {
		left = existing(m)
		return len(left) == 0, nil
	})
	if len(left) > 0 {
		err := fmt.Errorf("could not remove %s", strings.Join(left, ", "))
		if batchErr != nil {
			err = fmt.Errorf("%w (%v)", err, batchErr)
		}
		return err
	}
	return nil
}

// cutOff makes partition p's bridge and moves its nodes' links onto it,
// with a route from the host to each, so that the host still reaches
// them.
func cutOff(ctx context.Context, m Manifest, p Partition) error {
	nw := m.Network
	lines := []string{"link add " + p.Bridge + " address " + bridgeMAC(m.Dir) + " type bridge", "link set " + p.Bridge + " addrgenmode none", "link set " + p.Bridge + " up"}
	if linkExists(p.Bridge) {
		lines = lines[2:]
	}
	for _, name := range p.Nodes {
		i, err := m.node(name)
		if err != nil {
			return err
		}
		nd := m.Nodes[i]
		lines = append(lines, "link set "+nd.Veth+" master "+p.Bridge,
			"route replace "+nd.IP+"/32 dev "+p.Bridge+" src "+nw.Host)
	}
	if err := ipBatch(ctx, "", lines); err != nil {
		return err
	}
	return waitUp(ctx, []string{p.Bridge})
}

// rejoin moves the named nodes of partition p back onto the testnet's
// bridge, without their routes through p's bridge, and, when drop,
// removes p's bridge.
func rejoin(ctx context.Context, m Manifest, p Partition, names []string, drop bool) error {
	nw := m.Network
	var moves, routes []string
	var ips []string
	for _, name := range names {
		i, err := m.node(name)
		if err != nil {
			return err
		}
		nd := m.Nodes[i]
		if linkExists(nd.Veth) {
			moves = append(moves, "link set "+nd.Veth+" master "+nw.Bridge)
		}
		routes = append(routes, "route del "+nd.IP+"/32 dev "+p.Bridge)
		ips = append(ips, nd.IP)
	}
	if err := ipBatch(ctx, "", moves); err != nil {
		return err
	}
	if err := waitUp(ctx, []string{nw.Bridge}); err != nil {
		return err
	}
	if drop && linkExists(p.Bridge) {
		// The bridge takes its routes with it.
		return ipCmd(ctx, nil, "link", "del", p.Bridge)
	}
	if linkExists(p.Bridge) {
		// -force: every line is tried; a route already gone fails, and
		// that is fine. The check below says whether any is left.
		_ = ipCmd(ctx, routes, "-force", "-batch", "-")
	}
	for _, ip := range ips {
		path, err := exec.LookPath("ip")
		if err != nil {
			return err
		}
		out, err := exec.CommandContext(ctx, path, "-4", "-o", "route", "show", "exact", ip+"/32").Output()
		if err != nil {
			return fmt.Errorf("ip route show exact %s/32: %w", ip, err)
		}
		if len(bytes.TrimSpace(out)) > 0 {
			return fmt.Errorf("the host's route to %s through %s is still there: %s", ip, p.Bridge, bytes.TrimSpace(out))
		}
	}
	return nil
}
