package api

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/protocol"
)

// BookQuery is the query of GET /v1/book in the form people write it. Empty
// fields do not filter. The numeric filters are range expressions:
//
//	4       exactly 4
//	>=4     4 or more        >4   more than 4
//	<=8     at most 8        <8   less than 8
//	4-16    from 4 to 16, both included
//
// Memory and Disk take sizes in the same forms: ">=8GiB", "8GiB-32GiB",
// "<=1TB"; a size needs a unit ("8589934592B" for bytes). An upper bound of 0 ("0", "<=0", "<1")
// cannot be asked for yet: the book reads a zero bound as open.
type BookQuery struct {
	// Region matches a region equal to it or starting with it and a dash:
	// "eu" matches eu and eu-de.
	Region   string
	VCPU     string
	Memory   string
	Disk     string
	GPUs     string
	GPUModel string
	Profile  string
	Arch     string
	// Seller is a peer ID.
	Seller string
	// MaxPrice caps the hourly price, like 0.05USD/h; it implies Currency.
	MaxPrice string
	// Currency keeps offers in this currency only, like USD.
	Currency string
	// MinSlots keeps offers with at least this many free slots.
	MinSlots uint32
	// IncludePaused keeps offers that take no new leases.
	IncludePaused bool
	// Sort is price (default), vcpu, mem, expires or newest.
	Sort string
	// Limit caps the results: 1 to MaxBookLimit; 0 means market.DefaultLimit.
	Limit int
}

// MaxBookLimit is the largest limit a book query may ask for.
const MaxBookLimit = 1000

// Book query parameter names, in the order they are documented.
var bookParams = []string{"region", "vcpu", "mem", "disk", "gpus", "gpu_model", "profile", "arch",
	"seller", "max_price", "currency", "min_slots", "include_paused", "sort", "limit"}

// Values encodes q as URL query parameters, leaving out empty fields.
func (q BookQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("region", q.Region)
	set("vcpu", q.VCPU)
	set("mem", q.Memory)
	set("disk", q.Disk)
	set("gpus", q.GPUs)
	set("gpu_model", q.GPUModel)
	set("profile", q.Profile)
	set("arch", q.Arch)
	set("seller", q.Seller)
	set("max_price", q.MaxPrice)
	set("currency", q.Currency)
	if q.MinSlots > 0 {
		v.Set("min_slots", strconv.FormatUint(uint64(q.MinSlots), 10))
	}
	if q.IncludePaused {
		v.Set("include_paused", "true")
	}
	set("sort", q.Sort)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// ParamError is a bad query parameter. The API prefixes it with "query
// parameter"; the CLI with the flag's name.
type ParamError struct {
	Param string // the query parameter's name, like "vcpu"
	Value string
	// Problem says what is wrong and the form wanted.
	Problem string
}

// Error implements error: `vcpu "abc": want a count or a range like ...`.
func (e *ParamError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Param, e.Value, e.Problem)
}

const (
	countForms = "want a count or range like 4, >=4, >4, <=8, <8 or 4-16"
	sizeForms  = "want a size or range like 8GiB, >=8GiB, <=64GiB or 8GiB-32GiB"
)

// ParseCountRange reads a range expression over counts ("4", ">=4",
// "4-16", ...; see BookQuery) into an inclusive market.Range.
func ParseCountRange(expr string) (market.Range, error) {
	return parseRange(expr, func(s string) (uint64, error) {
		return strconv.ParseUint(s, 10, 64)
	}, countForms)
}

// ParseSizeRange reads a range expression over sizes (">=8GiB",
// "8GiB-32GiB", ...; see BookQuery) into an inclusive market.Range of bytes.
func ParseSizeRange(expr string) (market.Range, error) {
	return parseRange(expr, func(s string) (uint64, error) {
		// A bare number would be bytes: "--mem >=8" meaning 8 bytes is
		// never what anyone wants, so a unit is required.
		if strings.Trim(s, "0123456789.") == "" {
			return 0, rangeError("give a unit, like 8GiB (or 8589934592B for bytes): " + sizeForms)
		}
		return protocol.ParseSize(s)
	}, sizeForms)
}

// rangeError is the problem of a range expression, without the parameter's
// name, which the caller adds.
type rangeError string

func (e rangeError) Error() string { return string(e) }

func parseRange(expr string, num func(string) (uint64, error), forms string) (market.Range, error) {
	s := strings.TrimSpace(expr)
	n := func(t string) (uint64, error) {
		t = strings.TrimSpace(t)
		if t == "" {
			return 0, rangeError(forms)
		}
		v, err := num(t)
		var re rangeError
		if errors.As(err, &re) {
			return 0, err
		}
		if err != nil {
			return 0, rangeError(forms)
		}
		return v, nil
	}
	var r market.Range
	var err error
	switch {
	case strings.HasPrefix(s, ">="):
		r.Min, err = n(s[2:])
	case strings.HasPrefix(s, ">"):
		r.Min, err = n(s[1:])
		if err == nil {
			if r.Min == math.MaxUint64 {
				return r, rangeError("nothing is larger than that")
			}
			r.Min++
		}
	case strings.HasPrefix(s, "<="):
		r.Max, err = n(s[2:])
	case strings.HasPrefix(s, "<"):
		r.Max, err = n(s[1:])
		if err == nil {
			if r.Max == 0 {
				return r, rangeError("nothing is less than 0")
			}
			r.Max--
		}
	case strings.Contains(s, "-"):
		lo, hi, _ := strings.Cut(s, "-")
		if r.Min, err = n(lo); err == nil {
			r.Max, err = n(hi)
		}
		if err == nil && r.Min > r.Max {
			return r, rangeError("the lower bound is above the upper one: " + forms)
		}
	default:
		r.Min, err = n(s)
		r.Max = r.Min
	}
	if err != nil {
		return r, err
	}
	if r.Max == 0 && !strings.HasPrefix(s, ">") {
		return r, rangeError("an upper bound of 0 is not supported: leave the filter out to match any")
	}
	return r, nil
}

// ParseBookQuery checks URL query parameters and converts them into a
// market.Query. An unknown, repeated or malformed parameter is a
// *ParamError.
func ParseBookQuery(v url.Values) (market.Query, error) {
	var q market.Query
	known := make(map[string]bool, len(bookParams))
	for _, p := range bookParams {
		known[p] = true
	}
	for k, vs := range v {
		if !known[k] {
			return q, &ParamError{Param: k, Value: v.Get(k), Problem: "unknown parameter: the parameters are " + strings.Join(bookParams, ", ")}
		}
		if len(vs) > 1 {
			return q, &ParamError{Param: k, Value: strings.Join(vs, ","), Problem: "given more than once: give it once"}
		}
	}
	bad := func(k, problem string) error { return &ParamError{Param: k, Value: v.Get(k), Problem: problem} }
	ranges := []struct {
		name  string
		dst   *market.Range
		parse func(string) (market.Range, error)
	}{
		{"vcpu", &q.VCPU, ParseCountRange},
		{"mem", &q.Memory, ParseSizeRange},
		{"disk", &q.Disk, ParseSizeRange},
		{"gpus", &q.GPUs, ParseCountRange},
	}
	for _, r := range ranges {
		if s := v.Get(r.name); s != "" {
			rg, err := r.parse(s)
			if err != nil {
				return q, bad(r.name, err.Error())
			}
			*r.dst = rg
		}
	}
	if s := v.Get("region"); s != "" {
		if protocol.ValidateRegion(s) != nil {
			return q, bad("region", "want lower-case words joined by dashes, like eu or eu-de")
		}
		q.RegionPrefix = s
	}
	names := []struct {
		name string
		dst  *string
	}{{"gpu_model", &q.GPUModel}, {"profile", &q.Profile}, {"arch", &q.Arch}}
	for _, n := range names {
		if s := v.Get(n.name); s != "" {
			if len(s) > 64 {
				return q, bad(n.name, "longer than 64 characters")
			}
			*n.dst = s
		}
	}
	if s := v.Get("seller"); s != "" {
		id, err := peer.Decode(s)
		if err != nil {
			return q, bad("seller", "want a peer ID like 12D3KooW...")
		}
		q.Seller = id
	}
	if s := v.Get("currency"); s != "" {
		c := strings.ToUpper(s)
		if protocol.ValidateCurrency(c) != nil {
			return q, bad("currency", "want 3 to 8 letters, like USD")
		}
		q.Currency = c
	}
	if s := v.Get("max_price"); s != "" {
		p, err := protocol.ParsePrice(s)
		if err != nil {
			return q, bad("max_price", "want an amount and unit like 0.05USD/h")
		}
		if q.Currency != "" && q.Currency != p.Currency {
			return q, bad("max_price", fmt.Sprintf("its currency is not %s, which currency asks for", q.Currency))
		}
		q.MaxPrice, q.Currency = p, p.Currency
	}
	if s := v.Get("min_slots"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return q, bad("min_slots", "want a whole number like 1")
		}
		q.MinSlots = uint32(n)
	}
	if s := v.Get("include_paused"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, bad("include_paused", "want true or false")
		}
		q.IncludePaused = b
	}
	if s := v.Get("sort"); s != "" {
		switch k := market.SortKey(s); k {
		case market.SortPrice, market.SortVCPU, market.SortMemory, market.SortExpires, market.SortNewest:
			q.Sort = k
		default:
			return q, bad("sort", "want price, vcpu, mem, expires or newest")
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxBookLimit {
			return q, bad("limit", fmt.Sprintf("want a whole number from 1 to %d", MaxBookLimit))
		}
		q.Limit = n
	}
	return q, nil
}
