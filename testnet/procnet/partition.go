package procnet

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Partition cuts the named nodes off from the rest of the testnet: their
// links move to a bridge of their own, so they still talk among
// themselves, and the host (status, the CLI) still reaches them, but no
// packet passes between them and the other nodes. Connections between
// them stay open, silent, until Heal or their timeouts. The testnet must
// run in network namespaces (Config.Netns); a node may be in one
// partition at a time, and some node must stay out of it.
func (n *Net) Partition(ctx context.Context, names ...string) (Partition, error) {
	unlock, err := n.lock()
	if err != nil {
		return Partition{}, err
	}
	defer unlock()
	m := n.Manifest()
	if err := networkUp(m); err != nil {
		return Partition{}, err
	}
	if len(names) == 0 {
		return Partition{}, fmt.Errorf("want the names of the nodes to cut off, like seller-2 buyer-1; its nodes are %s", nameList(m.Nodes))
	}
	seen := map[string]bool{}
	for _, name := range names {
		if _, err := m.node(name); err != nil {
			return Partition{}, err
		}
		if seen[name] {
			return Partition{}, fmt.Errorf("%s is named twice", name)
		}
		seen[name] = true
		if g := m.Network.partitionOf(name); g >= 0 {
			return Partition{}, fmt.Errorf("%s is cut off already, in partition %s: heal it first with 'spotmesh testnet heal --dir %s %s'",
				name, strings.Join(m.Network.Partitions[g].Nodes, ", "), m.Dir, name)
		}
	}
	if len(seen) == len(m.Nodes) {
		return Partition{}, fmt.Errorf("%s are every node of the testnet: leave some out, from which to cut these off", strings.Join(names, ", "))
	}
	if err := CheckNetns(); err != nil {
		return Partition{}, err
	}
	// In the manifest's order.
	p := Partition{Bridge: partitionBridge(m)}
	for _, nd := range m.Nodes {
		if seen[nd.Name] {
			p.Nodes = append(p.Nodes, nd.Name)
		}
	}
	// Recorded before made, so that Heal and Down find it after a crash.
	n.mu.Lock()
	n.m.Network.Partitions = append(n.m.Network.Partitions, p)
	n.mu.Unlock()
	if err := n.save(); err != nil {
		return Partition{}, err
	}
	if err := cutOff(ctx, n.Manifest(), p); err != nil {
		return p, fmt.Errorf("partition %s: %w (heal with 'spotmesh testnet heal --dir %s')", strings.Join(p.Nodes, ", "), err, m.Dir)
	}
	n.log.Info("partitioned", "nodes", p.Nodes, "bridge", p.Bridge)
	return p, nil
}

// Heal brings the named nodes, or with no names every node cut off, back
// onto the testnet's bridge: a partition's bridge goes when its last node
// has left it. It returns the nodes it brought back; a node that was not
// cut off is left as it is.
func (n *Net) Heal(ctx context.Context, names ...string) ([]string, error) {
	unlock, err := n.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	m := n.Manifest()
	if m.Network == nil {
		return nil, networkUp(m)
	}
	for _, name := range names {
		if _, err := m.node(name); err != nil {
			return nil, err
		}
	}
	healed := []string{}
	var keep []Partition
	for j, p := range m.Network.Partitions {
		var back, stay []string
		for _, x := range p.Nodes {
			if len(names) == 0 || slices.Contains(names, x) {
				back = append(back, x)
			} else {
				stay = append(stay, x)
			}
		}
		if len(stay) > 0 {
			keep = append(keep, Partition{Bridge: p.Bridge, Nodes: stay})
		}
		if len(back) == 0 {
			continue
		}
		if m.Network.Made {
			if err := CheckNetns(); err != nil {
				return healed, err
			}
			if err := rejoin(ctx, m, p, back, len(stay) == 0); err != nil {
				return healed, fmt.Errorf("heal %s: %w", strings.Join(back, ", "), err)
			}
		}
		healed = append(healed, back...)
		// Saved as soon as made: the partitions done, then those to do.
		n.mu.Lock()
		n.m.Network.Partitions = append(slices.Clone(keep), m.Network.Partitions[j+1:]...)
		n.mu.Unlock()
		if err := n.save(); err != nil {
			return healed, err
		}
	}
	if len(healed) > 0 {
		n.log.Info("healed", "nodes", healed)
	}
	return healed, nil
}
