package market

import (
	"fmt"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/protocol"
)

// Entry is one offer as the book holds it: the newest valid copy of the
// offer (seller, key), its CID, and when this node received it.
type Entry struct {
	Offer      *protocol.Offer
	CID        cid.Cid
	ReceivedAt time.Time
}

// Range is an inclusive bound on a number; a zero bound is open.
type Range struct {
	Min, Max uint64
}

// Contains reports whether v lies within r.
func (r Range) Contains(v uint64) bool {
	return v >= r.Min && (r.Max == 0 || v <= r.Max)
}

// SortKey orders query results.
type SortKey string

// Sort orders. Ties break by seller and key, so results are stable.
const (
	SortPrice   SortKey = "price"   // cheapest first
	SortVCPU    SortKey = "vcpu"    // most vCPUs first
	SortMemory  SortKey = "mem"     // most memory first
	SortExpires SortKey = "expires" // longest-lived first
	SortNewest  SortKey = "newest"  // most recently issued first
)

// Query selects offers from the book. Zero fields do not filter.
type Query struct {
	// RegionPrefix matches a region equal to it or starting with it and a
	// dash: "eu" matches "eu" and "eu-de", not "europe".
	RegionPrefix string
	VCPU         Range
	Memory       Range
	Disk         Range
	GPUs         Range
	// GPUModel matches the offer's GPU model regardless of case.
	GPUModel string
	// Profile and Arch match exactly.
	Profile string
	Arch    string
	Seller  peer.ID
	// MaxPrice caps the hourly price; Currency must then match. When
	// MaxPrice.Currency is empty, price does not filter.
	MaxPrice protocol.Price
	// Currency keeps only offers in this currency (implied by MaxPrice).
	Currency string
	// MinSlots keeps offers with at least this many free slots; the
	// default 0 keeps sold-out offers too (shown with 0 slots).
	MinSlots uint32
	// IncludePaused keeps paused offers, which take no new leases.
	IncludePaused bool
	// Sort orders the results; empty means SortPrice. Prices in different
	// currencies compare by amount alone: set Currency to compare like
	// with like.
	Sort SortKey
	// Limit caps the results; 0 means DefaultLimit.
	Limit int
	// CID, when set, keeps only the offer one of whose unexpired copies
	// has this CID: its current copy, or one it replaced. The other
	// filters do not apply, but for IncludePaused.
	CID cid.Cid
}

// DefaultLimit is the result cap of a query that sets none.
const DefaultLimit = 100

// ParseSortKey reads a sort key as a person or a URL writes it: price,
// vcpu, mem (or memory), expires, newest; empty is price.
func ParseSortKey(s string) (SortKey, error) {
	switch k := SortKey(strings.ToLower(strings.TrimSpace(s))); k {
	case "":
		return SortPrice, nil
	case SortPrice, SortVCPU, SortMemory, SortExpires, SortNewest:
		return k, nil
	case "memory":
		return SortMemory, nil
	}
	return "", fmt.Errorf("sort %q: want one of price, vcpu, mem, expires, newest", s)
}

// Validate names the first field of q that cannot mean what its caller
// wants. Book.Query is lenient (an unknown sort is by price, a negative
// limit the default); the API validates first so that people learn of
// their mistakes.
func (q Query) Validate() error {
	if q.RegionPrefix != "" {
		if err := protocol.ValidateRegion(q.RegionPrefix); err != nil {
			return fmt.Errorf("query: %w", err)
		}
	}
	for _, r := range []struct {
		name string
		r    Range
	}{{"vcpu", q.VCPU}, {"memory", q.Memory}, {"disk", q.Disk}, {"gpus", q.GPUs}} {
		if r.r.Max != 0 && r.r.Min > r.r.Max {
			return fmt.Errorf("query: %s range: minimum %d above maximum %d", r.name, r.r.Min, r.r.Max)
		}
	}
	if q.Currency != "" {
		if err := protocol.ValidateCurrency(q.Currency); err != nil {
			return fmt.Errorf("query: %w", err)
		}
	}
	if q.MaxPrice.Currency != "" {
		if err := q.MaxPrice.Validate(); err != nil {
			return fmt.Errorf("query: max price: %w", err)
		}
		if q.Currency != "" && q.Currency != q.MaxPrice.Currency {
			return fmt.Errorf("query: currency %s and max price in %s: want one currency", q.Currency, q.MaxPrice.Currency)
		}
	} else if q.MaxPrice.Micro != 0 {
		return fmt.Errorf("query: max price %s has no currency: want an amount and unit like 0.04USD/h", protocol.FormatMicro(q.MaxPrice.Micro))
	}
	switch q.Sort {
	case "", SortPrice, SortVCPU, SortMemory, SortExpires, SortNewest:
	default:
		return fmt.Errorf("query: sort %q: want one of price, vcpu, mem, expires, newest", q.Sort)
	}
	if q.Limit < 0 {
		return fmt.Errorf("query: limit %d: want 0 (the default, %d) or more", q.Limit, DefaultLimit)
	}
	return nil
}
