// Package gate is the door of a node service that serves a libp2p host:
// Start opens it with the host, Enter and Leave bracket each piece of work
// (a stream handler, an API call), and Shut closes it so that no new work
// starts, then Wait returns once the work inside is done.
package gate

import (
	"errors"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
)

// Errors. Services wrap or map them to their own.
var (
	// ErrClosed: the gate was shut.
	ErrClosed = errors.New("closed")
	// ErrStarted: Start ran before.
	ErrStarted = errors.New("already started")
	// ErrNotStarted: Start has not run.
	ErrNotStarted = errors.New("not started")
)

// Gate is safe for concurrent use; its zero value is an unstarted, open
// gate.
type Gate struct {
	mu      sync.Mutex
	idle    *sync.Cond // on mu, made at first use
	host    host.Host
	active  int
	closed  bool
	started bool
}

func (g *Gate) cond() *sync.Cond {
	if g.idle == nil {
		g.idle = sync.NewCond(&g.mu)
	}
	return g.idle
}

// Start records the host the service serves: ErrClosed after Shut,
// ErrStarted the second time.
func (g *Gate) Start(h host.Host) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return ErrClosed
	case g.started:
		return ErrStarted
	}
	g.started, g.host = true, h
	return nil
}

// Enter lets one piece of work in (ErrClosed after Shut); each successful
// Enter pairs with a Leave.
func (g *Gate) Enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.active++
	return nil
}

// Leave lets one piece of work out.
func (g *Gate) Leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active--; g.active == 0 {
		g.cond().Broadcast()
	}
}

// Host is the host Start recorded: ErrClosed after Shut, ErrNotStarted
// before Start.
func (g *Gate) Host() (host.Host, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return nil, ErrClosed
	case !g.started:
		return nil, ErrNotStarted
	}
	return g.host, nil
}

// Shut closes the gate and returns the host (nil if never started), for
// the service to remove its stream handlers.
func (g *Gate) Shut() host.Host {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return g.host
}

// Wait returns once no work is inside, and whether the gate was started.
func (g *Gate) Wait() (started bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.active > 0 {
		g.cond().Wait()
	}
	return g.started
}
