package lease

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// Job kinds.
const (
	// JobExpire ends a lease at its end; ID "sold/<lease id>" or
	// "bought/<lease id>".
	JobExpire = "lease.expire"
	// JobTerminate terminates a seller's ended lease through the
	// Provisioner and releases its slots; ID "<lease id>".
	JobTerminate = "lease.terminate"
	// JobSendEnd delivers a buyer's end to the seller; ID
	// "bought/<lease id>" or "pending/<proposal cid>".
	JobSendEnd = "lease.sendend"
	// JobForget drops the seller's memory of a proposal the buyer ended
	// before it arrived, once it can no longer arrive; ID "<proposal cid>".
	JobForget = "lease.forget"
	// JobExtend moves a renewed lease's instance to the lease's new end
	// through the Provisioner's Extend; ID "<lease id>".
	JobExtend = "lease.extend"
)

func soldKey(id cid.Cid) []byte   { return store.Key("lease", "sold", id.String()) }
func boughtKey(id cid.Cid) []byte { return store.Key("lease", "bought", id.String()) }
func pendingKey(p cid.Cid) []byte { return store.Key("lease", "pending", p.String()) }
func propKey(p cid.Cid) []byte    { return store.Key("lease", "prop", p.String()) }
func bpropKey(p cid.Cid) []byte   { return store.Key("lease", "bprop", p.String()) }
func activeKey(id cid.Cid) []byte { return store.Key("lease", "active", id.String()) }
func denyKey(p peer.ID) []byte    { return store.Key("lease", "deny", p.String()) }
func roleKey(r Role, id cid.Cid) []byte {
	if r == RoleSeller {
		return soldKey(id)
	}
	return boughtKey(id)
}

var (
	soldPrefix    = store.Prefix("lease", "sold")
	boughtPrefix  = store.Prefix("lease", "bought")
	pendingPrefix = store.Prefix("lease", "pending")
	activePrefix  = store.Prefix("lease", "active")
	denyPrefix    = store.Prefix("lease", "deny")
)

// tombstonePrefix marks a prop index entry of a proposal its buyer ended
// before the seller granted it: "end:<buyer>".
const tombstonePrefix = "end:"

// record is a lease as stored by either side.
type record struct {
	// Raw is the signed lease.
	Raw      []byte              `cbor:"raw"`
	State    protocol.LeaseState `cbor:"state"`
	Cause    protocol.EndCause   `cbor:"cause,omitempty"`
	Endpoint string              `cbor:"endpoint,omitempty"`
	Detail   string              `cbor:"detail,omitempty"`
	// Ends is the end after extensions, in wire time.
	Ends protocol.Time `cbor:"ends"`
	// Exts are the signed extensions, in order.
	Exts [][]byte `cbor:"exts,omitempty"`
	// Terminated (seller): the instance is gone and the slots released.
	Terminated bool `cbor:"terminated,omitempty"`
	// Renewable and MaxLease (buyer) are the offer's terms for renewals,
	// as leased; Addrs where the seller was reached.
	Renewable bool            `cbor:"renewable,omitempty"`
	MaxLease  protocol.Millis `cbor:"max_lease,omitempty"`
	Addrs     []string        `cbor:"addrs,omitempty"`
	// End is the signed LeaseEnd that ended it early, if any.
	End []byte `cbor:"end,omitempty"`
	// Ended is when the lease ended: the buyer's signed end's time when
	// the buyer ended it, the lease's end when it expired, else when this
	// node ended it or learnt that it had.
	Ended   protocol.Time `cbor:"ended,omitempty"`
	Updated int64         `cbor:"updated"`

	lease *protocol.Lease // decoded Raw, not stored
}

// pending is a buyer's proposal without an answer yet.
type pending struct {
	Proposal []byte   `cbor:"proposal"`
	Offer    []byte   `cbor:"offer,omitempty"`
	Seller   peer.ID  `cbor:"seller"`
	Addrs    []string `cbor:"addrs,omitempty"`
	Created  int64    `cbor:"created"`
	// End is set once the buyer gave the proposal up: the signed LeaseEnd
	// to deliver.
	End []byte `cbor:"end,omitempty"`
}

// active is a seller's slot hold, kept until the lease's instance is
// terminated.
type active struct {
	Proposal string  `cbor:"proposal"`
	Key      string  `cbor:"key"`
	Buyer    peer.ID `cbor:"buyer"`
	Slots    uint32  `cbor:"slots"`
}

func (r *record) decode(lim protocol.Limits) (*protocol.Lease, error) {
	if r.lease != nil {
		return r.lease, nil
	}
	l, err := protocol.DecodeLease(r.Raw, lim)
	if err != nil {
		return nil, fmt.Errorf("stored lease: %w", err)
	}
	r.lease = l
	return l, nil
}

// Stored values are CBOR maps (binary records inside stay binary), with
// the field names of the struct tags.
var (
	storedEnc cbor.EncMode
	storedDec cbor.DecMode
)

func init() {
	var err error
	if storedEnc, err = (cbor.EncOptions{Time: cbor.TimeRFC3339Nano}).EncMode(); err != nil {
		panic(err)
	}
	if storedDec, err = (cbor.DecOptions{MaxArrayElements: 1 << 20}).DecMode(); err != nil {
		panic(err)
	}
}

func encodeStored(v any) ([]byte, error) { return storedEnc.Marshal(v) }

func getRec(t *store.Txn, key []byte, v any) error {
	b, err := t.Get(key)
	if err != nil {
		return err
	}
	if err := storedDec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("stored %s: %w", key, err)
	}
	return nil
}

func setRec(t *store.Txn, key []byte, v any) error {
	b, err := encodeStored(v)
	if err != nil {
		return err
	}
	return t.Set(key, b)
}

// getRecord reads a lease record, mapping a missing one to ErrNotFound.
func getRecord(t *store.Txn, role Role, id cid.Cid) (*record, error) {
	var r record
	err := getRec(t, roleKey(role, id), &r)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("lease %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// info builds the public view of a record.
func (r *record) info(role Role, id cid.Cid, lim protocol.Limits) (*Info, error) {
	l, err := r.decode(lim)
	if err != nil {
		return nil, err
	}
	pc, _ := l.Proposal.CID()
	p := &l.Proposal
	return &Info{
		ID:         id,
		Proposal:   pc,
		Role:       role,
		Buyer:      p.Buyer,
		Seller:     l.Seller,
		Offer:      p.OfferID(),
		State:      r.State,
		Cause:      r.Cause,
		Endpoint:   r.Endpoint,
		Detail:     r.Detail,
		Slots:      p.Slots,
		Price:      p.Price,
		Start:      p.Start.Std(),
		Ends:       r.Ends.Std(),
		AcceptedAt: l.AcceptedAt.Std(),
		Extensions: len(r.Exts),
		Appliance:  p.Appliance.Cid,
		Lease:      l,
		Raw:        r.Raw,
		Ended:      endedTime(r.Ended),
		Updated:    time.Unix(0, r.Updated).UTC(),
	}, nil
}

// info builds the public view of a pending proposal.
func (pd *pending) info(pc cid.Cid, lim protocol.Limits) (*Info, error) {
	p, err := protocol.DecodeLeaseProposal(pd.Proposal, lim)
	if err != nil {
		return nil, fmt.Errorf("stored proposal: %w", err)
	}
	in := &Info{
		Proposal:  pc,
		Role:      RoleBuyer,
		Buyer:     p.Buyer,
		Seller:    p.Seller,
		Offer:     p.OfferID(),
		State:     protocol.StateProposed,
		Slots:     p.Slots,
		Price:     p.Price,
		Start:     p.Start.Std(),
		Ends:      p.EndsAt().Std(),
		Appliance: p.Appliance.Cid,
		Updated:   time.Unix(0, pd.Created).UTC(),
	}
	if pd.End != nil {
		in.State, in.Cause = protocol.StateEnded, protocol.CauseEndedByBuyer
	}
	return in, nil
}

// cidFromKey parses the CID at the end of a key.
func cidFromKey(k []byte) (cid.Cid, error) {
	s := string(k)
	return cid.Decode(s[strings.LastIndexByte(s, '/')+1:])
}

func decodeStored(b []byte, v any) error {
	if err := storedDec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("stored lease record: %w", err)
	}
	return nil
}

func endedTime(t protocol.Time) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return t.Std()
}
