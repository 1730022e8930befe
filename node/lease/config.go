package lease

import (
	"fmt"
	"time"
)

// Config holds the service's settings.
type Config struct {
	// ProposalTTL is how long a proposal or renewal the buyer signs stays
	// valid: how long the seller has to answer (at most
	// protocol.MaxProposalTTL).
	ProposalTTL time.Duration
	// RequestTimeout bounds one request on a stream, on both sides.
	RequestTimeout time.Duration
	// DialTimeout bounds connecting to a seller.
	DialTimeout time.Duration
	// MaxBatch is the most proposals the capacity owner decides, and one
	// transaction stores, at once.
	MaxBatch int
	// MaxCommits is the most batches written at once; more pipelines the
	// decisions with the fsyncs.
	MaxCommits int
	// QueueDepth is how many verified proposals may wait for the capacity
	// owner; beyond it the seller answers "busy".
	QueueDepth int
	// OfferCopies is how many verified copies of its own offers the seller
	// remembers, so that it checks each copy's signature once.
	OfferCopies int
	// PublishInterval is the least time between two free-slot updates
	// handed to the OfferSource (each one signs and gossips a copy of the
	// offer); changes in between are coalesced into the latest count.
	// 0 publishes every change at once.
	PublishInterval time.Duration
	// ResendEnd is when a buyer's end that did not reach the seller is
	// sent again first (then with the job queue's backoff).
	ResendEnd time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ProposalTTL:     time.Minute,
		RequestTimeout:  10 * time.Second,
		DialTimeout:     10 * time.Second,
		MaxBatch:        128,
		MaxCommits:      4,
		QueueDepth:      4096,
		OfferCopies:     1024,
		PublishInterval: time.Second,
		ResendEnd:       5 * time.Second,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.ProposalTTL <= 0 || c.ProposalTTL > maxProposalTTL:
		return fmt.Errorf("lease config: ProposalTTL %v: want more than 0 and at most %v", c.ProposalTTL, maxProposalTTL)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("lease config: RequestTimeout %v: want more than 0", c.RequestTimeout)
	case c.DialTimeout <= 0:
		return fmt.Errorf("lease config: DialTimeout %v: want more than 0", c.DialTimeout)
	case c.MaxBatch < 1 || c.MaxBatch > 256:
		return fmt.Errorf("lease config: MaxBatch %d: want 1 to 256 (one transaction holds a batch)", c.MaxBatch)
	case c.MaxCommits < 1:
		return fmt.Errorf("lease config: MaxCommits %d: want at least 1", c.MaxCommits)
	case c.QueueDepth < 0:
		return fmt.Errorf("lease config: QueueDepth %d: want 0 or more", c.QueueDepth)
	case c.OfferCopies < 1:
		return fmt.Errorf("lease config: OfferCopies %d: want at least 1", c.OfferCopies)
	case c.PublishInterval < 0:
		return fmt.Errorf("lease config: PublishInterval %v: want 0 or more", c.PublishInterval)
	case c.ResendEnd <= 0:
		return fmt.Errorf("lease config: ResendEnd %v: want more than 0", c.ResendEnd)
	}
	return nil
}
