package settle

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// Keys (store's versioned key space):
//
//	settle/sold/<lease>            -> state (the seller's side)
//	settle/bought/<lease>          -> state (the buyer's side)
//	settle/rcpt/<lease>/<seq>      -> a receipt as signed (seq: 16 hex digits)
//	settle/ans/<lease>/<seq>       -> the buyer's answer: tagAck or tagDispute, then the record
//
// A receipt, the state that counts it and the job that sends it (or the
// answer, the state and nothing else) are written in one synced
// transaction.
func stateKey(sold bool, id cid.Cid) []byte {
	if sold {
		return store.Key("settle", "sold", id.String())
	}
	return store.Key("settle", "bought", id.String())
}

func rcptKey(id cid.Cid, seq uint64) []byte {
	return store.Key("settle", "rcpt", id.String(), fmt.Sprintf("%016x", seq))
}

func ansKey(id cid.Cid, seq uint64) []byte {
	return store.Key("settle", "ans", id.String(), fmt.Sprintf("%016x", seq))
}

func rcptPrefix(id cid.Cid) []byte { return store.Prefix("settle", "rcpt", id.String()) }
func ansPrefix(id cid.Cid) []byte  { return store.Prefix("settle", "ans", id.String()) }

var (
	soldPrefix   = store.Prefix("settle", "sold")
	boughtPrefix = store.Prefix("settle", "bought")
)

// Answer tags in stored answers.
const (
	ansAck     byte = 'a'
	ansDispute byte = 'd'
)

// state is one lease's billing on one side.
type state struct {
	Sold bool `cbor:"sold"`
	// Lease terms, copied from the lease for the ledger.
	Counterparty string `cbor:"peer"`
	Currency     string `cbor:"currency"`
	Interval     int64  `cbor:"interval"` // ms
	Grace        int64  `cbor:"grace"`    // ms

	// The chain: the seller's last receipt issued, or the last receipt
	// the buyer received that links to the one before it.
	Seq    uint64          `cbor:"seq"`
	Head   []byte          `cbor:"head,omitempty"`
	To     protocol.Time   `cbor:"to"`
	Billed protocol.Millis `cbor:"billed"`
	Total  int64           `cbor:"total"`
	Final  bool            `cbor:"final,omitempty"`
	// Since (seller) is when billing started: the first receipt's From.
	Since protocol.Time `cbor:"since,omitempty"`
	// Meter readings at the last receipt (seller), to bill usage per period.
	CPU int64  `cbor:"cpu,omitempty"` // ms
	In  uint64 `cbor:"in,omitempty"`
	Out uint64 `cbor:"out,omitempty"`

	// Answers: the buyer acknowledged the chain up to AckedSeq; Answered
	// counts receipts answered either way (seller's view).
	AckedSeq   uint64 `cbor:"acked_seq"`
	Acked      []byte `cbor:"acked,omitempty"`
	AckedTotal int64  `cbor:"acked_total"`
	Answered   uint64 `cbor:"answered"`
	// Waiting (seller) is when the oldest receipt without an ack was
	// issued: the grace runs from it. 0 when all are acked.
	Waiting protocol.Time `cbor:"waiting,omitempty"`
	// Unacked (seller) is when a delivery last ended with receipts still
	// unacknowledged (the buyer unreachable, refusing or disputing). The
	// grace counts only once the buyer had the receipts' chance: a seller
	// that itself stalled does not end its buyer's lease.
	Unacked protocol.Time `cbor:"unacked,omitempty"`
	// Disputes are the CIDs of the buyer's disputes (the records are
	// stored as answers).
	Disputes [][]byte `cbor:"disputes,omitempty"`
	// Past (buyer) counts the receipts kept after the first dispute.
	Past uint32 `cbor:"past,omitempty"`

	// Ended (seller): the lease ended at this time.
	Ended protocol.Time `cbor:"ended,omitempty"`

	Status     Status `cbor:"status"`
	Settlement []byte `cbor:"settlement,omitempty"`
	Claim      []byte `cbor:"claim,omitempty"`
	Updated    int64  `cbor:"updated"`
}

func (st *state) disputed() bool { return len(st.Disputes) > 0 }

func (st *state) headCID() cid.Cid {
	if len(st.Head) == 0 {
		return cid.Undef
	}
	c, _ := cid.Cast(st.Head)
	return c
}

func (st *state) ackedCID() cid.Cid {
	if len(st.Acked) == 0 {
		return cid.Undef
	}
	c, _ := cid.Cast(st.Acked)
	return c
}

var (
	storedEnc cbor.EncMode
	storedDec cbor.DecMode
)

func init() {
	var err error
	if storedEnc, err = (cbor.EncOptions{}).EncMode(); err != nil {
		panic(err)
	}
	if storedDec, err = (cbor.DecOptions{}).DecMode(); err != nil {
		panic(err)
	}
}

// getState reads a lease's state; ok is false when there is none.
func getState(t *store.Txn, sold bool, id cid.Cid) (*state, bool, error) {
	b, err := t.Get(stateKey(sold, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var st state
	if err := storedDec.Unmarshal(b, &st); err != nil {
		return nil, false, fmt.Errorf("stored billing of lease %s: %w", id, err)
	}
	return &st, true, nil
}

func putState(t *store.Txn, id cid.Cid, st *state) error {
	b, err := storedEnc.Marshal(st)
	if err != nil {
		return err
	}
	return t.Set(stateKey(st.Sold, id), b)
}

// getReceipt reads receipt seq of a lease; nil when there is none.
func getReceipt(t *store.Txn, id cid.Cid, seq uint64) (*protocol.UsageReceipt, []byte, error) {
	raw, err := t.Get(rcptKey(id, seq))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	r, err := protocol.DecodeUsageReceipt(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("stored receipt %d of lease %s: %w", seq, id, err)
	}
	return r, raw, nil
}

// getAnswer reads the buyer's stored answer to receipt seq: the ack or
// the dispute record as signed, tagged.
func getAnswer(t *store.Txn, id cid.Cid, seq uint64) (byte, []byte, error) {
	v, err := t.Get(ansKey(id, seq))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	if len(v) < 2 || v[0] != ansAck && v[0] != ansDispute {
		return 0, nil, fmt.Errorf("stored answer %d of lease %s: unknown form", seq, id)
	}
	return v[0], v[1:], nil
}

func putAnswer(t *store.Txn, id cid.Cid, seq uint64, tag byte, raw []byte) error {
	v := make([]byte, 0, 1+len(raw))
	return t.Set(ansKey(id, seq), append(append(v, tag), raw...))
}

type peerID = peer.ID

// peerOf reads a stored peer ID.
func peerOf(s string) (peer.ID, error) {
	p, err := peer.Decode(s)
	if err != nil {
		return "", fmt.Errorf("stored peer ID %q: %w", s, err)
	}
	return p, nil
}
