package appliance

import (
	"context"

	"github.com/ipfs/go-cid"
)

// Providing: only the roots of pinned appliances are announced to the
// routing, not every block. A fetch always starts at the root: it finds
// the root's providers, and its bitswap session then asks those same peers
// for every other block, so records for the other blocks would serve no
// fetch of ours, while they would cost one DHT write (about 20 peers each)
// per block: a thousand per GiB at 1 MiB, renewed every ReprovideInterval.
// Kubo's "roots" reprovider strategy makes the same trade.

// announce queues c for the routing; it never blocks: a full queue drops c
// until the next reprovide.
func (s *Service) announce(c cid.Cid) {
	s.mu.Lock()
	q := s.provideq
	s.mu.Unlock()
	if q == nil {
		return
	}
	select {
	case q <- c:
	default:
		s.log.Warn("provide queue full; the root will be announced at the next reprovide", "cid", c)
	}
}

// provideLoop announces queued roots, and every pinned root each
// ReprovideInterval, until Close.
func (s *Service) provideLoop(q <-chan cid.Cid) {
	defer s.wg.Done()
	tick := s.clk.Ticker(s.cfg.ReprovideInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case c := <-q:
			s.provide(c)
		case <-tick.C:
			pins, err := s.allPins(s.ctx)
			if err != nil {
				s.log.Warn("reprovide: cannot list pins", "err", err)
				continue
			}
			for root := range pins {
				c, err := cid.Decode(root)
				if err != nil {
					continue
				}
				s.provide(c)
				if s.ctx.Err() != nil {
					return
				}
			}
		}
	}
}

func (s *Service) provide(c cid.Cid) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ProvideTimeout)
	defer cancel()
	if err := s.routing.Provide(ctx, c, true); err != nil {
		s.log.Info("cannot announce an appliance", "cid", c, "err", err)
		return
	}
	s.log.Debug("appliance announced", "cid", c)
}
