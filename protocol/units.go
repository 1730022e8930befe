package protocol

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MicroPerUnit is the number of micro-units in one unit of a currency.
const MicroPerUnit = 1_000_000

// Price is an hourly price: an integer count of micro-units of a named
// currency per hour. Money is never a float.
type Price struct {
	// Micro is the price in micro-units per hour (0.04 USD/h is 40000).
	Micro int64 `cbor:"micro" json:"micro"`
	// Currency is an upper-case code of 3 to 8 letters, such as USD or EUR.
	Currency string `cbor:"currency" json:"currency"`
}

// String prints the price the way ParsePrice reads it: 0.04USD/h.
func (p Price) String() string { return FormatMicro(p.Micro) + p.Currency + "/h" }

// Validate checks the currency code and that the amount is not negative.
func (p Price) Validate() error {
	if p.Micro < 0 {
		return fmt.Errorf("price %d: negative", p.Micro)
	}
	return ValidateCurrency(p.Currency)
}

// ValidateCurrency checks a currency code: 3 to 8 upper-case ASCII letters.
func ValidateCurrency(c string) error {
	if len(c) < 3 || len(c) > 8 {
		return fmt.Errorf("currency %q: want 3 to 8 upper-case letters, like USD", c)
	}
	for i := 0; i < len(c); i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return fmt.Errorf("currency %q: want 3 to 8 upper-case letters, like USD", c)
		}
	}
	return nil
}

// ParsePrice reads an hourly price such as "0.04USD/h", "0.04 USD/h",
// "0.04USD" or "1.5EUR/hour". At most six decimal places are allowed, since
// the smallest amount is one micro-unit.
func ParsePrice(s string) (Price, error) {
	bad := func(why string) (Price, error) {
		return Price{}, fmt.Errorf("price %q: %s: want an amount and unit like 0.04USD/h", s, why)
	}
	t := strings.TrimSpace(s)
	for _, suf := range []string{"/hour", "/hr", "/h"} {
		if strings.HasSuffix(strings.ToLower(t), suf) {
			t = t[:len(t)-len(suf)]
			break
		}
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, cur := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return bad("no amount")
	}
	if cur == "" {
		return bad("no currency")
	}
	micro, err := ParseMicro(num)
	if err != nil {
		return bad(err.Error())
	}
	cur = strings.ToUpper(cur)
	if err := ValidateCurrency(cur); err != nil {
		return bad("unknown currency form")
	}
	return Price{Micro: micro, Currency: cur}, nil
}

// ParseMicro reads a non-negative decimal amount ("0.04", "12", "3.000001")
// as micro-units.
func ParseMicro(s string) (int64, error) {
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && (!hasDot || frac == "") {
		return 0, errors.New("empty amount")
	}
	if len(frac) > 6 {
		return 0, errors.New("more than six decimal places")
	}
	var w, f int64
	var err error
	if whole != "" {
		if w, err = strconv.ParseInt(whole, 10, 64); err != nil || w < 0 {
			return 0, fmt.Errorf("amount %q is not a number", s)
		}
	}
	if frac != "" {
		if f, err = strconv.ParseInt(frac, 10, 64); err != nil || f < 0 {
			return 0, fmt.Errorf("amount %q is not a number", s)
		}
		for i := len(frac); i < 6; i++ {
			f *= 10
		}
	}
	if w > (math.MaxInt64-f)/MicroPerUnit {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	return w*MicroPerUnit + f, nil
}

// FormatMicro prints micro-units as a decimal amount with no trailing zeros:
// 40000 is "0.04", 2000000 is "2".
func FormatMicro(m int64) string {
	sign := ""
	u := uint64(m)
	if m < 0 {
		sign, u = "-", uint64(-m)
	}
	w, f := u/MicroPerUnit, u%MicroPerUnit
	if f == 0 {
		return sign + strconv.FormatUint(w, 10)
	}
	fs := strings.TrimRight(fmt.Sprintf("%06d", f), "0")
	return sign + strconv.FormatUint(w, 10) + "." + fs
}

var sizeUnits = []struct {
	name string
	mult uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// ParseSize reads a size in bytes: "40GiB", "512MiB", "1.5GB", "8G" (binary,
// as in most cloud consoles) or a bare number of bytes.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("size %q: want a number and unit like 8GiB", s)
	}
	mult := uint64(1)
	if unit != "" {
		found := false
		for _, u := range sizeUnits {
			if strings.EqualFold(unit, u.name) {
				mult, found = u.mult, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("size %q: unknown unit %q: want B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)", s, unit)
		}
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil || (n != 0 && mult > math.MaxUint64/n) {
			return 0, fmt.Errorf("size %q: not a whole number of bytes that fits in 64 bits", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(mult) >= math.MaxUint64 {
		return 0, fmt.Errorf("size %q: want a number and unit like 8GiB", s)
	}
	return uint64(f * float64(mult)), nil
}

// FormatSize prints a size with a binary unit: 8GiB, 1.5MiB, 512B.
func FormatSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	if n < 1024 {
		return strconv.FormatUint(n, 10) + "B"
	}
	f := float64(n)
	u := 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + units[u]
}

// FormatDuration prints a duration without the noise of time.Duration's
// String: 72h, 10m, 1h30m, 90s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Time is an instant on the wire: milliseconds since the Unix epoch, UTC.
// A plain integer keeps records within DAG-CBOR (which allows no time tag).
type Time int64

// TimeOf converts t to wire time, truncating to the millisecond.
func TimeOf(t time.Time) Time { return Time(t.UnixMilli()) }

// Std converts wire time to a time.Time in UTC.
func (t Time) Std() time.Time { return time.UnixMilli(int64(t)).UTC() }

// String prints RFC 3339 UTC with milliseconds.
func (t Time) String() string { return t.Std().Format("2006-01-02T15:04:05.000Z07:00") }

// Millis is a length of time on the wire, in milliseconds.
type Millis int64

// MillisOf converts a duration to wire form, truncating to the millisecond.
func MillisOf(d time.Duration) Millis { return Millis(d.Milliseconds()) }

// Std converts a wire duration to a time.Duration.
func (m Millis) Std() time.Duration { return time.Duration(m) * time.Millisecond }
