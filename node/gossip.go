package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/protocol"
)

// Protocol names. The DHT runs under DHTPrefix so the market's DHT stays
// apart from the public IPFS network.
const (
	OffersTopic  = "/spotmesh/offers/1"
	DHTPrefix    = "/spotmesh"
	BookSyncProt = "/spotmesh/book-sync/1.0.0"
)

// Peer score thresholds. A peer that sends ten forged offers reaches
// 10² × InvalidMessageDeliveriesWeight(-1) = -100, below the graylist
// threshold, after which its messages are dropped before validation; nine
// (-81) leave it above, so its tenth forgery is still read and counted.
const (
	gossipThreshold   = -10
	publishThreshold  = -50
	graylistThreshold = -90
)

func peerScoreParams() (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	topic := &pubsub.TopicScoreParams{
		SkipAtomicValidation: true,
		TopicWeight:          1,
		// P1: time in the mesh earns a little, up to +1 after 100 s. The
		// quantum must be set whatever the weight: pubsub divides by it.
		TimeInMeshWeight:  0.01,
		TimeInMeshQuantum: time.Second,
		TimeInMeshCap:     100,
		// P2: first deliveries of valid offers earn a little credit.
		FirstMessageDeliveriesWeight: 0.5,
		FirstMessageDeliveriesDecay:  0.9,
		FirstMessageDeliveriesCap:    20,
		// P4: invalid offers cost quadratically and are forgotten slowly
		// (0.997 per second: about four minutes to halve).
		InvalidMessageDeliveriesWeight: -1,
		InvalidMessageDeliveriesDecay:  0.997,
	}
	params := &pubsub.PeerScoreParams{
		SkipAtomicValidation: true,
		Topics:               map[string]*pubsub.TopicScoreParams{OffersTopic: topic},
		AppSpecificScore:     func(peer.ID) float64 { return 0 },
		// All testnet peers share 127.0.0.1, so IP colocation is no signal.
		IPColocationFactorWeight:  0,
		BehaviourPenaltyWeight:    -1,
		BehaviourPenaltyDecay:     0.99,
		BehaviourPenaltyThreshold: 6,
		DecayInterval:             time.Second,
		DecayToZero:               0.01,
		RetainScore:               10 * time.Minute,
	}
	thr := &pubsub.PeerScoreThresholds{
		SkipAtomicValidation:        true,
		GossipThreshold:             gossipThreshold,
		PublishThreshold:            publishThreshold,
		GraylistThreshold:           graylistThreshold,
		AcceptPXThreshold:           10,
		OpportunisticGraftThreshold: 3,
	}
	return params, thr
}

// msgID names a pubsub message by the hash of the record it carries, the
// multihash of its CID: the same record relayed twice is one message.
func msgID(m *pb.Message) string { return string(protocol.CIDOf(m.Data).Hash()) }

// checked is an offer that passed validation, handed from the validator to
// the delivery loop.
type checked struct {
	offer *protocol.Offer
	cid   cid.Cid
}

// checkOffer runs the full receive check on raw bytes from a peer: decode,
// fields and times, signature, and freshness against the book. It returns
// the pubsub verdict and a reason for the metrics.
func (n *Node) checkOffer(raw []byte, from peer.ID) (*checked, pubsub.ValidationResult, string) {
	o, err := protocol.ReceiveOffer(raw, n.clk.Now(), n.lim)
	if errors.Is(err, protocol.ErrBadSignature) && from != "" && from != n.id {
		// Tell a forger who signed as someone else from mere corruption.
		if pub, perr := from.ExtractPublicKey(); perr == nil && protocol.SignedBy(o, pub) {
			err = protocol.ErrAuthorMismatch
		}
	}
	if err != nil {
		return nil, pubsub.ValidationReject, reasonOf(err)
	}
	c := protocol.CIDOf(raw)
	if err := n.book.Check(o, c); err != nil {
		return nil, pubsub.ValidationIgnore, reasonOf(err)
	}
	return &checked{o, c}, pubsub.ValidationAccept, "ok"
}

func reasonOf(err error) string {
	for _, k := range []struct {
		err    error
		reason string
	}{
		{protocol.ErrTooLarge, "too_large"},
		{protocol.ErrUnknownVersion, "unknown_version"},
		{protocol.ErrAuthorMismatch, "author_mismatch"},
		{protocol.ErrBadSignature, "bad_signature"},
		{protocol.ErrExpired, "expired"},
		{protocol.ErrFarFuture, "far_future"},
		{protocol.ErrInvalid, "invalid"},
		{protocol.ErrMalformed, "malformed"},
		{protocol.ErrStale, "stale"},
		{protocol.ErrDuplicate, "duplicate"},
	} {
		if errors.Is(err, k.err) {
			return k.reason
		}
	}
	return "other"
}

var verdictNames = map[pubsub.ValidationResult]string{
	pubsub.ValidationAccept: "accept",
	pubsub.ValidationReject: "reject",
	pubsub.ValidationIgnore: "ignore",
}

// validateOffer is the topic's validator.
func (n *Node) validateOffer(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	c, res, reason := n.checkOffer(msg.Data, msg.ReceivedFrom)
	n.metrics.verdicts.WithLabelValues(verdictNames[res], reason).Inc()
	if res == pubsub.ValidationReject {
		n.log.Debug("offer rejected", "from", from, "reason", reason)
	}
	if c != nil {
		msg.ValidatorData = c
	}
	return res
}

// deliver reads validated offers off the subscription into the book.
func (n *Node) deliver(ctx context.Context, sub *pubsub.Subscription) {
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		c, ok := msg.ValidatorData.(*checked)
		if !ok {
			continue
		}
		if err := n.book.Add(c.offer, c.cid, msg.Data); err != nil && !errors.Is(err, protocol.ErrStale) && !errors.Is(err, protocol.ErrDuplicate) {
			n.log.Warn("book add", "offer", c.offer.ID(), "err", err)
		}
	}
}

// IngestOffer takes one encoded offer from outside gossip (book sync, a
// benchmark) through the same checks as gossip and into the book.
func (n *Node) IngestOffer(raw []byte, from peer.ID) error {
	c, res, reason := n.checkOffer(raw, from)
	n.metrics.verdicts.WithLabelValues(verdictNames[res], reason).Inc()
	if c == nil {
		return fmt.Errorf("offer from %s: %s", from, reason)
	}
	return n.book.Add(c.offer, c.cid, raw)
}

// PublishOffer implements offers.Publisher.
func (n *Node) PublishOffer(ctx context.Context, raw []byte) error {
	n.metrics.published.Inc()
	return n.topic.Publish(ctx, raw)
}

// Book sync: on connect, a node that has just started asks a few peers for
// the offers they hold, so its book fills without waiting for the next
// republish. The answer is a stream of uvarint-length-prefixed signed
// offers; each goes through the same checks as gossip.

const (
	maxSyncPeers   = 3
	maxSyncOffers  = 1 << 20
	syncTimeout    = 30 * time.Second
	syncWriteBatch = 256
)

func (n *Node) serveBookSync(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(syncTimeout)) // network deadlines are real time, whatever the node's clock
	w := bufio.NewWriter(s)
	var lenBuf [binary.MaxVarintLen64]byte
	write := func(raw []byte) error {
		k := binary.PutUvarint(lenBuf[:], uint64(len(raw)))
		if _, err := w.Write(lenBuf[:k]); err != nil {
			return err
		}
		_, err := w.Write(raw)
		return err
	}
	own, err := n.offers.Live()
	if err != nil {
		n.log.Warn("book sync: own offers", "err", err)
	}
	for _, raw := range own {
		if write(raw) != nil {
			s.Reset()
			return
		}
	}
	for _, e := range n.book.Query(marketAll()) {
		raw, err := protocol.Marshal(e.Offer)
		if err != nil || write(raw) != nil {
			s.Reset()
			return
		}
	}
	if err := w.Flush(); err != nil {
		s.Reset()
	}
}

func (n *Node) syncFrom(ctx context.Context, p peer.ID) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	s, err := n.host.NewStream(ctx, p, BookSyncProt)
	if err != nil {
		n.log.Debug("book sync: open", "peer", p, "err", err)
		return
	}
	defer s.Close()
	_ = s.CloseWrite()
	_ = s.SetDeadline(time.Now().Add(syncTimeout)) // network deadlines are real time, whatever the node's clock
	r := bufio.NewReader(s)
	got := 0
	for got < maxSyncOffers {
		l, err := binary.ReadUvarint(r)
		if err == io.EOF {
			break
		}
		if err != nil || l > uint64(n.lim.MaxOfferSize) {
			n.log.Debug("book sync: bad frame", "peer", p, "len", l, "err", err)
			s.Reset()
			break
		}
		raw := make([]byte, l)
		if _, err := io.ReadFull(r, raw); err != nil {
			s.Reset()
			break
		}
		if n.IngestOffer(raw, p) == nil {
			n.metrics.synced.Inc()
		}
		got++
	}
	n.log.Debug("book sync done", "peer", p, "offers", got)
}
