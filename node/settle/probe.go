package settle

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/spotmesh/spotmesh/protocol"
)

// maxSpans is how many spans of probe outcomes a lease keeps: runs of
// probes with one outcome are merged, so a steady instance keeps one span
// for its whole lease and only a flapping one reaches the bound.
const maxSpans = 1024

// probeTick is how often the prober looks for probes due.
const probeTick = 100 * time.Millisecond

// prober is the buyer's own observation of its instances: it connects to
// each endpoint regularly and keeps the outcomes, so that a receipt for a
// period during which the instance never answered can be disputed.
type prober struct {
	s *Service

	mu     sync.Mutex
	leases map[cid.Cid]*probed // guarded by mu
}

type probed struct {
	endpoint string
	every    time.Duration
	next     time.Time
	busy     bool
	spans    []probeSpan
}

// probeSpan is a run of probes with one outcome, from the first to the
// last probe of the run; n counts them.
type probeSpan struct {
	from, to protocol.Time
	ok       bool
	n        int
}

func newProber(s *Service) *prober {
	return &prober{s: s, leases: make(map[cid.Cid]*probed)}
}

// add starts (or updates) probing a lease's endpoint.
func (p *prober) add(id cid.Cid, endpoint string, interval time.Duration) {
	every := p.s.cfg.ProbeEvery
	if every == 0 {
		every = max(interval/2, probeTick)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr, ok := p.leases[id]; ok {
		pr.endpoint, pr.every = endpoint, every
		return
	}
	p.leases[id] = &probed{endpoint: endpoint, every: every}
}

func (p *prober) remove(id cid.Cid) {
	p.mu.Lock()
	delete(p.leases, id)
	p.mu.Unlock()
}

// unreachable reports whether every probe of the lease in [from, to)
// failed (and there was at least one), with words for the dispute. A
// probe at the period's end belongs to the next period.
func (p *prober) unreachable(id cid.Cid, from, to protocol.Time) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, ok := p.leases[id]
	if !ok {
		return "", false
	}
	n := 0
	for _, sp := range pr.spans {
		if sp.to < from || sp.from >= to {
			continue
		}
		if sp.ok {
			return "", false
		}
		n += sp.n
	}
	if n == 0 {
		return "", false
	}
	return fmt.Sprintf("the instance at %s did not answer any of %d probes between %s and %s", pr.endpoint, n, from, to), true
}

// loop probes the endpoints that are due until ctx ends.
func (p *prober) loop(ctx context.Context) {
	t := p.s.clk.Ticker(probeTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := p.s.clk.Now()
		type due struct {
			id       cid.Cid
			endpoint string
		}
		var dues []due
		p.mu.Lock()
		for id, pr := range p.leases {
			if pr.busy || now.Before(pr.next) {
				continue
			}
			pr.busy, pr.next = true, now.Add(pr.every)
			dues = append(dues, due{id, pr.endpoint})
		}
		p.mu.Unlock()
		for _, d := range dues {
			p.s.wg.Add(1)
			go func() {
				defer p.s.wg.Done()
				ok := p.probe(ctx, d.endpoint)
				p.record(d.id, now, ok)
			}()
		}
	}
}

// probe opens a TCP connection to an endpoint (host:port).
func (p *prober) probe(ctx context.Context, endpoint string) bool {
	ctx, cancel := context.WithTimeout(ctx, p.s.cfg.ProbeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func (p *prober) record(id cid.Cid, at time.Time, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, found := p.leases[id]
	if !found {
		return
	}
	pr.busy = false
	t := protocol.TimeOf(at)
	if n := len(pr.spans); n > 0 && pr.spans[n-1].ok == ok && pr.spans[n-1].to <= t {
		pr.spans[n-1].to = t
		pr.spans[n-1].n++
		return
	}
	pr.spans = append(pr.spans, probeSpan{from: t, to: t, ok: ok, n: 1})
	if len(pr.spans) > maxSpans {
		pr.spans = append(pr.spans[:0], pr.spans[len(pr.spans)-maxSpans:]...)
	}
}
