package api

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/protocol"
)

// LeaseRequest is the body of POST /v1/leases: either OfferCID (lease that
// offer) or Best (lease the first offer of the book that grants one).
type LeaseRequest struct {
	// OfferCID is the CID of a copy of the offer to lease.
	OfferCID string `json:"offer_cid,omitempty"`
	// Best holds book filters by their GET /v1/book parameter names
	// (region, vcpu, max_price, ...); an empty object matches any offer.
	Best map[string]string `json:"best,omitzero"`
	// Appliance is the CID of the appliance to run, held by this node.
	Appliance string `json:"appliance"`
	// For is the lease's length.
	For Duration `json:"for"`
	// Slots of the offer to lease; 0 means 1.
	Slots uint32 `json:"slots,omitempty"`
	// SSHKey is the buyer's access key, such as an SSH public key line.
	SSHKey string `json:"ssh_key,omitempty"`
}

// RenewRequest is the body of POST /v1/leases/{id}/renew.
type RenewRequest struct {
	For Duration `json:"for"`
}

// Lease is a lease, or a pending proposal, as a node holds it.
type Lease struct {
	// ID is the lease ID; empty while the proposal is unanswered.
	ID       string  `json:"id,omitempty"`
	Proposal string  `json:"proposal"`
	Role     string  `json:"role"`
	Buyer    peer.ID `json:"buyer"`
	Seller   peer.ID `json:"seller"`
	OfferID  string  `json:"offer_id"`
	State    string  `json:"state"`
	// Cause is why it ended, once ended.
	Cause    string `json:"cause,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Slots    uint32 `json:"slots"`
	// Price is per slot and hour.
	Price      protocol.Price `json:"price"`
	PriceText  string         `json:"price_text"`
	Start      time.Time      `json:"start,omitzero"`
	Ends       time.Time      `json:"ends,omitzero"`
	Extensions int            `json:"extensions"`
	Appliance  string         `json:"appliance,omitempty"`
	// Attempts are, for a lease just made with best, the offers that
	// refused or were skipped before one granted it.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Ref is the lease's ID, or its proposal's CID while it has none.
func (l Lease) Ref() string {
	if l.ID != "" {
		return l.ID
	}
	return l.Proposal
}

// LeasesResponse is the body of GET /v1/leases.
type LeasesResponse struct {
	Leases []Lease `json:"leases"`
}

// Attempt is an offer that POST /v1/leases with best tried or skipped.
type Attempt struct {
	OfferID string `json:"offer_id"`
	CID     string `json:"cid"`
	// Reason is the refusal's code (protocol reason), Words the same for
	// people; both empty when the seller could not be asked.
	Reason string `json:"reason,omitempty"`
	Words  string `json:"words,omitempty"`
	// Error is the whole story in words.
	Error string `json:"error"`
}

// Instance is one instance of the seller's runtime.
type Instance struct {
	LeaseID  string    `json:"lease_id"`
	State    string    `json:"state"`
	Endpoint string    `json:"endpoint,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	Ends     time.Time `json:"ends,omitzero"`
	// Limits asked for; Enforced how each was enforced; LimitNotes what
	// could not be and why.
	Limits     InstanceLimits `json:"limits"`
	Enforced   []Enforcement  `json:"enforced"`
	LimitNotes []string       `json:"limit_notes,omitempty"`
	Usage      Usage          `json:"usage"`
}

// InstanceLimits are an instance's limits; sizes in bytes.
type InstanceLimits struct {
	VCPU   uint32 `json:"vcpu"`
	Memory uint64 `json:"memory"`
	Disk   uint64 `json:"disk"`
}

// Enforcement is one limit as the driver enforces it.
type Enforcement struct {
	Limit     string `json:"limit"`
	Mechanism string `json:"mechanism"`
	Control   string `json:"control,omitempty"`
	Value     string `json:"value,omitempty"`
}

// Usage are an instance's counters.
type Usage struct {
	CPU        Duration `json:"cpu"`
	Wall       Duration `json:"wall"`
	MemoryPeak uint64   `json:"memory_peak"`
	BytesIn    uint64   `json:"bytes_in"`
	BytesOut   uint64   `json:"bytes_out"`
	// Network: the byte counters are measured.
	Network bool `json:"network"`
}

// InstancesResponse is the body of GET /v1/instances.
type InstancesResponse struct {
	Instances []Instance `json:"instances"`
}

// DenyRequest is the body of POST /v1/deny.
type DenyRequest struct {
	Peer peer.ID `json:"peer"`
	Note string  `json:"note,omitempty"`
}

// Denied is a buyer on the deny list.
type Denied struct {
	Peer peer.ID   `json:"peer"`
	Note string    `json:"note,omitempty"`
	At   time.Time `json:"at,omitzero"`
}

// DeniedResponse is the body of GET /v1/deny.
type DeniedResponse struct {
	Denied []Denied `json:"denied"`
}

// PauseResponse answers POST /v1/offers/{key}/pause and /resume.
type PauseResponse struct {
	Key    string `json:"key"`
	Paused bool   `json:"paused"`
}

func leaseJSON(in *lease.Info) Lease {
	l := Lease{
		Proposal: cidString(in.Proposal), Role: string(in.Role), Buyer: in.Buyer, Seller: in.Seller,
		State: string(in.State), Cause: string(in.Cause), Endpoint: in.Endpoint, Detail: in.Detail,
		Slots: in.Slots, Price: in.Price, PriceText: in.Price.String(), Start: utc(in.Start), Ends: utc(in.Ends),
		Extensions: in.Extensions, Appliance: cidString(in.Appliance),
	}
	if in.ID.Defined() {
		l.ID = in.ID.String()
	}
	if in.Offer.Key != "" {
		l.OfferID = in.Offer.String()
	}
	return l
}

func instanceJSON(in runtime.Instance) Instance {
	out := Instance{
		LeaseID: in.LeaseID, State: string(in.State), Endpoint: in.Endpoint, Reason: in.Reason, PID: in.PID,
		Created: utc(in.Created), Started: utc(in.Started), Ended: utc(in.Ended), Ends: utc(in.Ends),
		Limits:     InstanceLimits{VCPU: in.Limits.VCPU, Memory: in.Limits.Memory, Disk: in.Limits.Disk},
		Enforced:   make([]Enforcement, 0, len(in.Enforced)),
		LimitNotes: in.LimitNotes,
		Usage: Usage{CPU: Duration(in.Usage.CPU), Wall: Duration(in.Usage.Wall), MemoryPeak: in.Usage.MemoryPeak,
			BytesIn: in.Usage.BytesIn, BytesOut: in.Usage.BytesOut, Network: in.Usage.Network},
	}
	for _, e := range in.Enforced {
		out.Enforced = append(out.Enforced, Enforcement(e))
	}
	return out
}
