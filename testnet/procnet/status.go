package procnet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// NodeStatus is one node as Status found it. The counts are those its
// API answered; they are zero when it is not alive or did not answer
// (Note says why).
type NodeStatus struct {
	Node
	// Alive: the recorded PID runs the node's daemon.
	Alive bool `json:"alive"`
	// Note says why the node is not alive, or what its API answered
	// instead of the counts.
	Note string `json:"note,omitempty"`
	// RSS is the daemon's resident memory, in bytes.
	RSS uint64 `json:"rss"`
	// Peers is how many peers it is connected to.
	Peers int `json:"peers"`
	// Book is how many live offers its order book holds; Missing names
	// the testnet's offers (published at up) that it lacks, as
	// seller/key.
	Book    int      `json:"book"`
	Missing []string `json:"missing"`
	// Offers is how many of its own offers are live (not withdrawn).
	Offers int `json:"offers"`
	// Leases is how many leases it holds, as buyer or seller, and
	// OpenLeases how many of them have not ended.
	Leases     int `json:"leases"`
	OpenLeases int `json:"open_leases"`
}

// Status reports every node: alive or not, and for those alive their
// peers, books, own offers and leases. It works while nodes are dead.
func (n *Net) Status(ctx context.Context) []NodeStatus {
	m := n.Manifest()
	out := make([]NodeStatus, len(m.Nodes))
	var wg sync.WaitGroup
	for i, nd := range m.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = nodeStatus(ctx, m, nd)
		}()
	}
	wg.Wait()
	return out
}

func nodeStatus(ctx context.Context, m Manifest, nd Node) NodeStatus {
	s := NodeStatus{Node: nd, Missing: []string{}}
	st, why := probe(m.Binary, nd)
	if st != procOurs {
		s.Note = why
		return s
	}
	s.Alive = true
	s.RSS = rssOf(nd.PID)
	tok, err := node.ReadToken(nd.Home)
	if err != nil {
		s.Note = err.Error()
		return s
	}
	c := api.NewClient(nd.APIAddr, tok)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var notes []string
	if ps, err := c.Peers(ctx); err == nil {
		s.Peers = len(ps)
	} else {
		notes = append(notes, "peers: "+err.Error())
	}
	if b, err := c.Book(ctx, allOffers); err == nil {
		s.Book = b.Total
		s.Missing = missing(m.Offers, b)
	} else {
		notes = append(notes, "book: "+err.Error())
	}
	if own, err := c.Offers(ctx); err == nil {
		for _, o := range own {
			if !o.Withdrawn {
				s.Offers++
			}
		}
	} else {
		notes = append(notes, "offers: "+err.Error())
	}
	if ls, err := c.Leases(ctx, ""); err == nil {
		s.Leases = len(ls)
		for _, l := range ls {
			if l.State != string(protocol.StateEnded) {
				s.OpenLeases++
			}
		}
	} else {
		notes = append(notes, "leases: "+err.Error())
	}
	if len(notes) > 0 {
		s.Note = fmt.Sprintf("its API at %s: %s", nd.APIAddr, strings.Join(notes, "; "))
	}
	return s
}
