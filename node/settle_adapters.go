package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/settle"
)

// settleLeases is the settle service's view of the node's leases.
type settleLeases struct{ n *Node }

var _ settle.Leases = settleLeases{}

func settleView(in *lease.Info) *settle.Lease {
	return &settle.Lease{
		ID: in.ID, Sold: in.Role == lease.RoleSeller, Lease: in.Lease,
		State: in.State, Cause: in.Cause, Ends: in.Ends, Ended: in.Ended, Endpoint: in.Endpoint,
	}
}

// Lease implements settle.Leases.
func (a settleLeases) Lease(id cid.Cid, sold bool) (*settle.Lease, error) {
	in, err := a.n.leases.Get(id)
	if errors.Is(err, lease.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", settle.ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	if in.Lease == nil || (in.Role == lease.RoleSeller) != sold {
		return nil, fmt.Errorf("lease %s: %w", id, settle.ErrNotFound)
	}
	return settleView(in), nil
}

// List implements settle.Leases.
func (a settleLeases) List(sold bool) ([]*settle.Lease, error) {
	role := lease.RoleBuyer
	if sold {
		role = lease.RoleSeller
	}
	ins, err := a.n.leases.List(role)
	if err != nil {
		return nil, err
	}
	out := make([]*settle.Lease, 0, len(ins))
	for _, in := range ins {
		if in.Lease != nil && in.Role == role {
			out = append(out, settleView(in))
		}
	}
	return out, nil
}

// End implements settle.Leases.
func (a settleLeases) End(ctx context.Context, id cid.Cid, detail string) error {
	_, err := a.n.leases.EndLease(ctx, id, detail)
	return err
}

// settleMeter reads the usage of the node's instances from its runtime.
type settleMeter struct{ n *Node }

// Usage implements settle.Meter.
func (m settleMeter) Usage(_ context.Context, id cid.Cid) (settle.Usage, bool) {
	in, ok := m.n.rt.Instance(id.String())
	if !ok {
		return settle.Usage{}, false
	}
	u := in.Usage
	return settle.Usage{CPU: u.CPU, MemoryPeak: u.MemoryPeak, BytesIn: u.BytesIn, BytesOut: u.BytesOut, Network: u.Network}, true
}

// leaseChanged is the lease service's OnChange hook: billing follows.
func (n *Node) leaseChanged(role lease.Role, id cid.Cid) {
	if n.settle != nil {
		n.settle.LeaseChanged(role == lease.RoleSeller, id)
	}
}

// newSettle builds the settle service over the node's leases and runtime.
func (n *Node) newSettle() error {
	cfg := settle.DefaultConfig()
	if n.opts.scfg != nil {
		cfg = *n.opts.scfg
	}
	d := settle.Deps{DB: n.db, Queue: n.queue, Key: n.key, Leases: settleLeases{n},
		Clock: n.clk, Limits: n.lim, Logger: n.log, Registerer: n.metrics.reg,
		FindPeer: func(ctx context.Context, p peer.ID) (peer.AddrInfo, error) {
			if n.dht == nil {
				return peer.AddrInfo{}, fmt.Errorf("find %s: no DHT", p)
			}
			return n.dht.FindPeer(ctx, p)
		}}
	if n.rt != nil {
		d.Meter = settleMeter{n}
	}
	s, err := settle.New(cfg, d)
	if err != nil {
		return err
	}
	n.settle = s
	return nil
}

// Settle is the node's settle service: receipts, settlements, the ledger.
func (n *Node) Settle() *settle.Service { return n.settle }
