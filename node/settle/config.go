package settle

import (
	"errors"
	"fmt"
	"time"
)

// Config holds the service's settings.
type Config struct {
	// RequestTimeout bounds one exchange with the other party.
	RequestTimeout time.Duration
	// DialTimeout bounds connecting to the other party.
	DialTimeout time.Duration
	// Resend is how long after a failed delivery receipts, settlements
	// and claims are sent again.
	Resend time.Duration
	// ClaimAfter is how long after a lease ended without a settlement the
	// seller claims what the buyer's acks allow.
	ClaimAfter time.Duration
	// GiveUpAfter is how long after a lease's end the seller keeps trying
	// a buyer that does not answer (0: forever). Its claim, if it made
	// one, stays in the ledger.
	GiveUpAfter time.Duration
	// MaxBatch is the most receipts one message carries, and the most one
	// metering run issues.
	MaxBatch int
	// Probe makes a buyer probe its instances' endpoints, so that it can
	// dispute a period during which an instance never answered.
	Probe bool
	// ProbeEvery is how often a buyer probes each instance; 0 means half
	// the lease's receipt interval (at least 100 ms).
	ProbeEvery time.Duration
	// ProbeTimeout bounds one probe (a TCP connection to the endpoint).
	ProbeTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		RequestTimeout: 15 * time.Second,
		DialTimeout:    10 * time.Second,
		Resend:         5 * time.Second,
		ClaimAfter:     time.Hour,
		GiveUpAfter:    30 * 24 * time.Hour,
		MaxBatch:       256,
		Probe:          true,
		ProbeTimeout:   2 * time.Second,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.RequestTimeout <= 0, c.DialTimeout <= 0, c.Resend <= 0, c.ProbeTimeout <= 0:
		return fmt.Errorf("settle config: RequestTimeout, DialTimeout, Resend and ProbeTimeout must be positive: %w", ErrInvalid)
	case c.ClaimAfter < 0 || c.ProbeEvery < 0 || c.GiveUpAfter < 0:
		return fmt.Errorf("settle config: ClaimAfter, GiveUpAfter and ProbeEvery may not be negative: %w", ErrInvalid)
	case c.MaxBatch < 1 || c.MaxBatch > maxBatch:
		return fmt.Errorf("settle config: MaxBatch %d: want 1 to %d: %w", c.MaxBatch, maxBatch, ErrInvalid)
	}
	return nil
}

// Errors, wrapped with the operation.
var (
	// ErrInvalid: a bad argument or setting.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: no such lease in the ledger.
	ErrNotFound = errors.New("not found")
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("settle service closed")
	// ErrUnreachable: the other party could not be reached or answered
	// wrongly; the node tries again.
	ErrUnreachable = errors.New("party unreachable")
	// ErrRefused: the other party refused a settlement or claim.
	ErrRefused = errors.New("refused")
)
