package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/node/runtime"
	proto "github.com/spotmesh/spotmesh/protocol"
)

// leaseOffers is the lease service's view of the node's own offers.
type leaseOffers struct{ s *offers.Service }

var _ lease.OfferSource = leaseOffers{}

// Offer implements lease.OfferSource: the capacity is the spec's slots,
// the published copy states the free ones.
func (o leaseOffers) Offer(key string) (lease.OwnOffer, error) {
	st, err := o.s.Get(key)
	if err != nil {
		return lease.OwnOffer{}, err
	}
	return lease.OwnOffer{Current: st.Current, CID: st.CID, Capacity: st.Spec.Slots, Withdrawn: st.Withdrawn}, nil
}

// SetFree implements lease.OfferSource: it publishes a copy now, whose
// slots the offers service takes from the lease service's count (the
// hook node sets with SetFreeSlots). A withdrawn offer publishes nothing.
func (o leaseOffers) SetFree(ctx context.Context, key string, free uint32) error {
	_, err := o.s.Update(ctx, key, func(*offers.Spec) {})
	if errors.Is(err, offers.ErrWithdrawn) || errors.Is(err, offers.ErrEnded) {
		return nil
	}
	return err
}

// SetPaused implements lease.OfferSource.
func (o leaseOffers) SetPaused(ctx context.Context, key string, paused bool) error {
	_, err := o.s.Update(ctx, key, func(s *offers.Spec) { s.Paused = paused })
	return err
}

// leaseRuntime provisions the instances of the leases the node sells
// through its runtime, with appliances fetched from their buyers. It reads
// the node's appliance service, host and gateway address, which exist
// once Start has run; the lease service calls it only after that.
type leaseRuntime struct{ n *Node }

var _ lease.Provisioner = leaseRuntime{}

// Provision implements lease.Provisioner. The lease service calls it on a
// goroutine of its own, so it does the slow part here: it fetches the
// appliance from the buyer (pinned for the lease), then asks the runtime
// for the instance. The runtime's events report its states (notify). An
// instance that exists already is adopted.
func (p leaseRuntime) Provision(ctx context.Context, id cid.Cid, l *proto.Lease) error {
	n := p.n
	leaseID := id.String()
	if in, ok := n.rt.Instance(leaseID); ok {
		n.log.Debug("lease instance exists already", "lease", leaseID, "state", in.State)
		return nil
	}
	prop := &l.Proposal
	own, err := n.offers.Get(prop.OfferKey)
	if err != nil {
		return fmt.Errorf("provision lease %s: offer %q: %w", leaseID, prop.OfferKey, err)
	}
	maxSize := prop.ApplianceSize
	if maxSize == 0 {
		maxSize = own.Spec.MaxApplianceSize
	}
	ends := l.EndsAt().Std()
	if in, err := n.leases.Get(id); err == nil && !in.Ends.IsZero() {
		ends = in.Ends // after renewals
	}
	if err := n.leases.SetState(ctx, id, lease.Report{State: proto.StateProvisioning, Detail: "fetching the appliance from the buyer"}); err != nil {
		return fmt.Errorf("provision lease %s: %w", leaseID, err)
	}
	appl := prop.Appliance.Cid
	buyer := n.host.Peerstore().PeerInfo(prop.Buyer)
	info, err := n.appl.Fetch(ctx, appl, appliance.FetchOptions{
		Peers:   []peer.AddrInfo{buyer},
		MaxSize: maxSize,
		Pin:     appliance.LeaseReason(leaseID),
		Meta:    appliance.Meta{Format: prop.ApplianceFormat},
	})
	if err != nil {
		return fmt.Errorf("provision lease %s: %w", leaseID, err)
	}
	slots := uint64(max(prop.Slots, 1))
	hw := own.Spec.Hardware
	spec := runtime.Spec{
		LeaseID: leaseID,
		Appliance: runtime.Appliance{
			CID:    appl,
			Size:   info.Size,
			Format: prop.ApplianceFormat,
			Open: func(ctx context.Context) (io.ReadCloser, error) {
				return n.appl.Open(ctx, appl)
			},
			GatewayURL: "http://" + n.gwAddr,
		},
		Limits: runtime.Limits{
			VCPU:   hw.VCPU * uint32(slots),
			Memory: hw.Memory * slots,
			Disk:   hw.Disk * slots,
		},
		AccessKey: prop.AccessKey,
		Ends:      ends,
	}
	if _, err := n.rt.Provision(ctx, spec); err != nil && !errors.Is(err, runtime.ErrExists) {
		return fmt.Errorf("provision lease %s: %w", leaseID, err)
	}
	return nil
}

var _ lease.Extender = leaseRuntime{}

// Extend implements lease.Extender: the lease's instance takes its new
// end. A lease without an instance yet is no error: Provision reads the
// end after renewals.
func (p leaseRuntime) Extend(ctx context.Context, id cid.Cid, ends time.Time) error {
	if _, err := p.n.rt.Extend(ctx, id.String(), ends); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fmt.Errorf("extend lease %s: %w", id, err)
	}
	return nil
}

// Terminate implements lease.Provisioner: the instance goes (one already
// gone is no error) and the lease's pin of its appliance with it.
func (p leaseRuntime) Terminate(ctx context.Context, id cid.Cid, cause proto.EndCause) error {
	n := p.n
	leaseID := id.String()
	if _, err := n.rt.Terminate(ctx, leaseID); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fmt.Errorf("terminate lease %s (%s): %w", leaseID, cause, err)
	}
	in, err := n.leases.Get(id)
	if err != nil {
		return fmt.Errorf("terminate lease %s: %w", leaseID, err)
	}
	if n.appl != nil && in.Appliance.Defined() {
		if _, err := n.appl.Unpin(ctx, in.Appliance, appliance.LeaseReason(leaseID)); err != nil && !errors.Is(err, appliance.ErrNotPinned) {
			return fmt.Errorf("terminate lease %s: %w", leaseID, err)
		}
	}
	return nil
}

// instanceEvent forwards the runtime's instance changes to the lease
// service (the runtime's notify callback). Instances not named by a lease
// CID, or of leases this node does not hold, are logged and left alone.
func (n *Node) instanceEvent(ev runtime.Event) {
	if ev.Kind != runtime.InstanceChanged {
		return
	}
	in := ev.Instance
	id, err := cid.Decode(in.LeaseID)
	if err != nil {
		n.log.Warn("instance not named by a lease", "instance", in.LeaseID)
		return
	}
	r, ok := reportOf(in)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = n.leases.SetState(ctx, id, r)
	switch {
	case err == nil:
	case errors.Is(err, lease.ErrEnded), errors.Is(err, lease.ErrNotFound):
		n.log.Debug("instance state not recorded", "lease", in.LeaseID, "state", in.State, "err", err)
	default:
		n.log.Warn("record instance state", "lease", in.LeaseID, "state", in.State, "err", err)
	}
}

// reportOf maps an instance's state to the lease state it means. An
// instance that ended by itself or could not start fails its lease; one
// the driver terminated (its backstop, or Terminate after the lease
// ended, when the report changes nothing) ends it by the seller.
func reportOf(in runtime.Instance) (lease.Report, bool) {
	switch in.State {
	case runtime.StateProvisioning:
		return lease.Report{State: proto.StateProvisioning, Detail: "starting the instance"}, true
	case runtime.StateRunning:
		return lease.Report{State: proto.StateRunning, Endpoint: in.Endpoint}, true
	case runtime.StateExited, runtime.StateFailed:
		detail := in.Reason
		if detail == "" {
			detail = "the instance " + string(in.State)
		}
		return lease.Report{State: proto.StateEnded, Cause: proto.CauseFailed, Detail: detail}, true
	case runtime.StateTerminated:
		return lease.Report{State: proto.StateEnded, Cause: proto.CauseEndedBySeller, Detail: in.Reason}, true
	}
	return lease.Report{}, false
}
