package lease

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spotmesh/spotmesh/protocol"
)

// Error kinds, checked with errors.Is.
var (
	// ErrNotFound: this node holds no such lease or proposal.
	ErrNotFound = errors.New("no such lease")
	// ErrRejected: the seller refused; errors.As gives the *RejectedError.
	ErrRejected = errors.New("refused by the seller")
	// ErrUnreachable: the seller could not be reached, or did not answer
	// in time.
	ErrUnreachable = errors.New("seller unreachable")
	// ErrBadAnswer: the seller answered with something that is not a valid
	// answer to the request (a bad signature, another proposal, garbage).
	ErrBadAnswer = errors.New("bad answer from the seller")
	// ErrNoOffer: Best found no offer that granted a lease.
	ErrNoOffer = errors.New("no offer granted a lease")
	// ErrEnded: the lease has ended; it cannot change any more.
	ErrEnded = errors.New("lease ended")
	// ErrNotRenewable: the offer does not allow this renewal (checked
	// locally before asking the seller).
	ErrNotRenewable = errors.New("lease not renewable")
	// ErrInvalid: a bad argument, with what to change in the message.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotStarted: the service was not started (no host yet).
	ErrNotStarted = errors.New("lease service not started")
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("lease service closed")
)

// RejectedError is a seller's refusal: its reason code and detail. It
// matches ErrRejected with errors.Is.
type RejectedError struct {
	// Seller refused; Offer is the offer proposed against, when known.
	Seller peer.ID
	Offer  protocol.OfferID
	// Subject is the CID of the request refused.
	Subject cid.Cid
	Reason  protocol.Reason
	Detail  string
	// Local: this node refused on the seller's behalf from the offer's
	// published terms, without asking (Best skips such offers).
	Local bool
	// Rejection is the seller's signed record (nil when Local).
	Rejection *protocol.LeaseRejection
}

// Error says who refused and why, in words.
func (e *RejectedError) Error() string {
	who := "seller " + e.Seller.String()
	if e.Offer.Key != "" {
		who = "offer " + e.Offer.String()
	}
	s := fmt.Sprintf("%s refused: %s", who, e.Reason.Words())
	if e.Local {
		s = fmt.Sprintf("%s refused by its published terms (not asked): %s", who, e.Reason.Words())
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is matches ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// ReasonOf returns the reason code of a refusal, or "" when err is none.
func ReasonOf(err error) protocol.Reason {
	var r *RejectedError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}
