package market

import "sync"

// EventKind says what happened to an offer in the book.
type EventKind uint8

// Event kinds.
const (
	// EventAdded: an offer the book did not hold arrived.
	EventAdded EventKind = iota + 1
	// EventUpdated: a newer live copy replaced the one held.
	EventUpdated
	// EventWithdrawn: a withdrawal removed a live offer; the entry is the
	// withdrawal's copy.
	EventWithdrawn
	// EventExpired: an offer expired and left the book.
	EventExpired
)

// String names the kind: added, updated, withdrawn, expired.
func (k EventKind) String() string {
	switch k {
	case EventAdded:
		return "added"
	case EventUpdated:
		return "updated"
	case EventWithdrawn:
		return "withdrawn"
	case EventExpired:
		return "expired"
	}
	return "unknown"
}

// Event is a change of the book.
type Event struct {
	Kind  EventKind
	Entry Entry
}

type subscriber struct {
	ch   chan Event
	once sync.Once
}

func (s *subscriber) close() { s.once.Do(func() { close(s.ch) }) }

// Subscribe returns a channel of the book's changes and a function that
// ends the subscription and closes the channel; Close ends every
// subscription. Events are sent without blocking the book: a subscriber
// more than Config.EventBuffer events behind misses events (counted in
// Stats.DroppedEvents).
func (b *Book) Subscribe() (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, b.cfg.EventBuffer)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.close()
		return s.ch, func() {}
	}
	b.subs[s] = struct{}{}
	return s.ch, func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		s.close()
	}
}

// emit sends an event to every subscriber. b.mu is held.
func (b *Book) emit(k EventKind, it *item) {
	if len(b.subs) == 0 {
		return
	}
	ev := Event{Kind: k, Entry: it.entry()}
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			b.stats.DroppedEvents++
		}
	}
}
