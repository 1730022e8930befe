package settle

import (
	"bufio"
	"fmt"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/spotmesh/spotmesh/node/internal/frame"
	proto "github.com/spotmesh/spotmesh/protocol"
)

// Protocols: receipts flow from seller to buyer and the answers back on
// ReceiptProtocol; settlements and claims on SettleProtocol.
const (
	ReceiptProtocol protocol.ID = "/spotmesh/receipt/1.0.0"
	SettleProtocol  protocol.ID = "/spotmesh/settle/1.0.0"
)

// maxBatch bounds the receipts of one message.
const maxBatch = 1024

// Frame tags. A request is one frame, its answer one frame.
const (
	tagReceipts   byte = 0x01 // CBOR array of receipts as signed
	tagSettlement byte = 0x02 // Settlement signed by the seller
	tagClaim      byte = 0x03 // Claim

	tagAnswers byte = 0x10 // CBOR array of answer
	tagSettled byte = 0x11 // Settlement signed by both
	tagRefused byte = 0x12 // refusal
	tagClaimed byte = 0x13 // the claim is stored
)

// answer is the buyer's answer to one receipt: its ack or dispute as
// signed, or why it did not take the receipt (nothing was stored).
type answer struct {
	Ack     []byte `cbor:"ack,omitempty"`
	Dispute []byte `cbor:"dispute,omitempty"`
	Refused string `cbor:"refused,omitempty"`
}

// refusal is the buyer's refusal of a settlement or claim, with its view
// of the chain so that the seller can tell what to send.
type refusal struct {
	Reason   string `cbor:"reason"`
	Seq      uint64 `cbor:"seq"`
	AckedSeq uint64 `cbor:"acked_seq"`
}

func maxBody(tag byte) int {
	switch tag {
	case tagReceipts:
		return maxBatch * (proto.MaxReceiptSize + 8)
	case tagAnswers:
		return maxBatch * (proto.MaxDisputeSize + 16)
	case tagSettlement, tagSettled:
		return proto.MaxSettlementSize
	case tagClaim:
		return proto.MaxClaimSize
	case tagRefused:
		return 1024
	case tagClaimed:
		return 0
	}
	return -1
}

func appendFrame(b []byte, tag byte, body []byte) []byte { return frame.Append(b, tag, body) }

// readFrame reads one frame whose tag is one of want, refusing a body
// over the tag's bound before reading it.
func readFrame(r *bufio.Reader, want ...byte) (byte, []byte, error) {
	return frame.Read(r, maxBody, want...)
}

func encodeMsg(v any) ([]byte, error) { return storedEnc.Marshal(v) }

func decodeReceipts(b []byte) ([][]byte, error) {
	var rs [][]byte
	if err := storedDec.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("receipts message: %w", err)
	}
	if len(rs) == 0 || len(rs) > maxBatch {
		return nil, fmt.Errorf("receipts message of %d receipts: want 1 to %d", len(rs), maxBatch)
	}
	for i, r := range rs {
		if len(r) > proto.MaxReceiptSize {
			return nil, fmt.Errorf("receipt %d of %d bytes: %w (limit %d)", i, len(r), proto.ErrTooLarge, proto.MaxReceiptSize)
		}
	}
	return rs, nil
}

func protocolID(s string) protocol.ID { return protocol.ID(s) }
