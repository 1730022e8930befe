package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// The verbs and words of testnets whose nodes run in network namespaces
// ('testnet up --netns'): partition, heal, and what up, status and down
// say of the network.

// netnsFlag is up's --netns.
func netnsFlag(f *flags) *bool {
	return f.boolean("netns", false, "run each node in a network namespace of its own, joined by a bridge, as if each were a host, so that "+
		"'testnet partition' can cut nodes off (Linux, as root, with the ip command; otherwise it says so and runs on loopback)")
}

// netnsOrLoopback tells whether up runs in namespaces: when asked and
// this machine can, or it says why not on stderr and runs on loopback.
func netnsOrLoopback(c *cli, asked bool) bool {
	if !asked {
		return false
	}
	if err := procnet.CheckNetns(); err != nil {
		fmt.Fprintf(c.stderr, "spotmesh testnet up: --netns: %v; running on loopback instead (no 'testnet partition' there)\n", err)
		return false
	}
	return true
}

// printNetwork says, after up's table, where the nodes run.
func printNetwork(w io.Writer, m procnet.Manifest) {
	if nw := m.Network; nw != nil {
		fmt.Fprintf(w, "\nEach node runs in its own network namespace (%s, ...), on bridge %s, subnet %s; this host is %s there.\n",
			m.Nodes[0].Netns, nw.Bridge, nw.Subnet, nw.Host)
	}
}

// printNetnsHints adds partition and heal to up's hints.
func printNetnsHints(w io.Writer, m procnet.Manifest, dir string) {
	if m.Network != nil {
		fmt.Fprintf(w, "cut off: spotmesh testnet partition --dir %s %s   (and back: spotmesh testnet heal --dir %s)\n", dir, m.Nodes[1].Name, dir)
	}
}

// printPartitions says, after status's table, which nodes are cut off.
func printPartitions(w io.Writer, m procnet.Manifest) {
	nw := m.Network
	if nw == nil {
		return
	}
	if !nw.Made {
		fmt.Fprintf(w, "Its network of namespaces (bridge %s) is down; 'testnet start' makes it again.\n", nw.Bridge)
		return
	}
	for _, p := range nw.Partitions {
		fmt.Fprintf(w, "Cut off from the rest: %s (on bridge %s); heal with 'spotmesh testnet heal --dir %s'.\n",
			strings.Join(p.Nodes, ", "), p.Bridge, m.Dir)
	}
}

// downNetworkNote is what down adds when it removed the network that
// before (the manifest before down) had.
func downNetworkNote(before procnet.Manifest) string {
	if before.Network == nil || !before.Network.Made {
		return ""
	}
	return fmt.Sprintf("; its namespaces (sm-%s...) and bridge %s are removed", strings.TrimPrefix(before.Network.Bridge, "smb-"), before.Network.Bridge)
}

// netnsError puts the errors of partition and heal in words for people.
func netnsError(err error) error {
	if errors.Is(err, procnet.ErrUnknownNode) {
		return usageError{err}
	}
	return err
}

func cmdTestnetPartition(ctx context.Context, c *cli, args []string) error {
	f := newFlags("testnet partition")
	dir := testnetDir(f)
	names, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return usagef("want the names of the nodes to cut off, like seller-2 buyer-1; 'spotmesh testnet status --dir DIR' lists them")
	}
	net, err := openTestnet(f, *dir)
	if err != nil {
		return err
	}
	p, err := net.Partition(ctx, names...)
	if err != nil {
		return netnsError(err)
	}
	if c.json {
		return c.printJSON(p)
	}
	var rest []string
	for _, nd := range net.Manifest().Nodes {
		if !slices.Contains(p.Nodes, nd.Name) {
			rest = append(rest, nd.Name)
		}
	}
	fmt.Fprintf(c.stdout, "cut off %s from %s (bridge %s): they reach each other, not the rest; this host still reaches every node\n",
		strings.Join(p.Nodes, ", "), strings.Join(rest, ", "), p.Bridge)
	fmt.Fprintf(c.stdout, "heal with: spotmesh testnet heal --dir %s\n", *dir)
	return nil
}

// testnetHealResult is what heal prints with --json.
type testnetHealResult struct {
	Healed []string `json:"healed"`
	// Partitions are those left.
	Partitions []procnet.Partition `json:"partitions"`
}

func cmdTestnetHeal(ctx context.Context, c *cli, args []string) error {
	f := newFlags("testnet heal")
	dir := testnetDir(f)
	names, err := f.parse(args)
	if err != nil {
		return err
	}
	net, err := openTestnet(f, *dir)
	if err != nil {
		return err
	}
	healed, err := net.Heal(ctx, names...)
	if err != nil {
		return netnsError(err)
	}
	var left []procnet.Partition
	if nw := net.Manifest().Network; nw != nil {
		left = nw.Partitions
	}
	if c.json {
		return c.printJSON(testnetHealResult{Healed: orEmpty(healed), Partitions: orEmpty(left)})
	}
	switch {
	case len(healed) == 0 && len(names) == 0:
		fmt.Fprintln(c.stdout, "nothing to heal: no node is cut off")
	case len(healed) == 0:
		fmt.Fprintf(c.stdout, "nothing to heal: %s not cut off\n", strings.Join(names, ", "))
	case len(left) == 0:
		fmt.Fprintf(c.stdout, "healed %s: every node reaches every other again\n", strings.Join(healed, ", "))
	default:
		var still []string
		for _, p := range left {
			still = append(still, strings.Join(p.Nodes, ", "))
		}
		fmt.Fprintf(c.stdout, "healed %s; still cut off: %s\n", strings.Join(healed, ", "), strings.Join(still, "; "))
	}
	return nil
}
