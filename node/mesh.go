package node

import (
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// meshTracer follows the offers topic's gossipsub mesh, so that a node can
// tell (and export) how many peers it relays offers to. A message that
// arrives before a node's mesh has formed reaches only the peers it was sent
// to directly; testnets wait for meshes before measuring.
type meshTracer struct {
	// mu guards mesh.
	mu   sync.Mutex
	mesh map[peer.ID]struct{}
}

var _ pubsub.RawTracer = (*meshTracer)(nil)

func newMeshTracer() *meshTracer { return &meshTracer{mesh: map[peer.ID]struct{}{}} }

func (m *meshTracer) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.mesh)
}

func (m *meshTracer) Graft(p peer.ID, topic string) {
	if topic == OffersTopic {
		m.mu.Lock()
		m.mesh[p] = struct{}{}
		m.mu.Unlock()
	}
}

func (m *meshTracer) Prune(p peer.ID, topic string) {
	if topic == OffersTopic {
		m.mu.Lock()
		delete(m.mesh, p)
		m.mu.Unlock()
	}
}

func (m *meshTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (m *meshTracer) OnClosedOutboundStream(peer.ID)                       {}
func (m *meshTracer) Join(string)                                          {}
func (m *meshTracer) Leave(string)                                         {}
func (m *meshTracer) ValidateMessage(*pubsub.Message)                      {}
func (m *meshTracer) DeliverMessage(*pubsub.Message)                       {}
func (m *meshTracer) RejectMessage(*pubsub.Message, string)                {}
func (m *meshTracer) DuplicateMessage(*pubsub.Message)                     {}
func (m *meshTracer) ThrottlePeer(peer.ID)                                 {}
func (m *meshTracer) RecvRPC(*pubsub.RPC)                                  {}
func (m *meshTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (m *meshTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (m *meshTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (m *meshTracer) UndeliverableMessage(*pubsub.Message)                 {}
