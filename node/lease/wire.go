package lease

import (
	"bufio"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/spotmesh/spotmesh/node/internal/frame"
	proto "github.com/spotmesh/spotmesh/protocol"
)

// ProtocolID is the lease negotiation protocol.
const ProtocolID protocol.ID = "/spotmesh/lease/1.0.0"

// Frame tags. A request is one frame (a propose request two: the proposal,
// then the offer copy it names, possibly empty); the answer is one frame.
const (
	tagPropose byte = 0x01 // LeaseProposal
	tagOffer   byte = 0x02 // the Offer copy the proposal names; empty body: none
	tagRenew   byte = 0x03 // LeaseRenewal
	tagEnd     byte = 0x04 // LeaseEnd
	tagStatus  byte = 0x05 // the binary CID of a lease or proposal

	tagLease     byte = 0x10 // Lease
	tagRejection byte = 0x11 // LeaseRejection
	tagExtension byte = 0x12 // LeaseExtension
	tagLeaseStat byte = 0x13 // LeaseStatus
)

// maxCIDBytes bounds a binary CID in a status request.
const maxCIDBytes = 128

// maxBody is the largest body a frame of the tag may carry; 0 for an
// unknown tag.
func maxBody(tag byte, lim proto.Limits) int {
	switch tag {
	case tagPropose:
		return proto.MaxProposalSize
	case tagOffer:
		return lim.MaxOfferSize
	case tagRenew:
		return proto.MaxRenewalSize
	case tagEnd:
		return proto.MaxLeaseEndSize
	case tagStatus:
		return maxCIDBytes
	case tagLease:
		return proto.MaxLeaseSize
	case tagRejection:
		return proto.MaxRejectionSize
	case tagExtension:
		return proto.MaxExtensionSize
	case tagLeaseStat:
		return proto.MaxLeaseStatusSize
	}
	return 0
}

// appendFrame appends tag, uvarint length and body.
func appendFrame(b []byte, tag byte, body []byte) []byte { return frame.Append(b, tag, body) }

// readFrame reads one frame whose tag is one of want, refusing bodies
// over the tag's bound before reading them.
func readFrame(r *bufio.Reader, lim proto.Limits, want ...byte) (byte, []byte, error) {
	return frame.Read(r, func(tag byte) int { return maxBody(tag, lim) }, want...)
}
