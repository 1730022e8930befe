package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// Pin reasons set by this package. A lease pins with its own reason (see
// LeaseReason), so that removing the user's pins leaves it pinned.
const (
	ReasonAdd = "add" // set by Import
	ReasonGet = "get" // set by Fetch unless FetchOptions.Pin says otherwise
)

// LeaseReason is the pin reason of a lease, "lease:<id>".
func LeaseReason(leaseID string) string { return "lease:" + leaseID }

// Meta describes an appliance beyond its bytes.
type Meta struct {
	// Name is the file name the buyer knows it by, such as web.qcow2.
	Name string
	// Format is the image format, such as qcow2, raw or bundle; empty when
	// unknown. GuessFormat derives one from a file name.
	Format string
}

// Info is what a node knows of one appliance.
type Info struct {
	// CID is the root of the appliance's DAG.
	CID cid.Cid
	// Name and Format are as given to Import or Fetch.
	Name   string
	Format string
	// Size is the file's size in bytes.
	Size uint64
	// Pinned is true while any pin holds the appliance; Pins lists their
	// reasons, sorted.
	Pinned bool
	Pins   []string
	// Added is when the appliance was first imported or fetched, UTC.
	Added time.Time
}

// infoJSON is Info on the API and in the datastore: snake_case, the CID as
// a string, time in RFC 3339 UTC.
type infoJSON struct {
	CID    string    `json:"cid"`
	Name   string    `json:"name"`
	Format string    `json:"format"`
	Size   uint64    `json:"size"`
	Pinned bool      `json:"pinned"`
	Pins   []string  `json:"pins,omitempty"`
	Added  time.Time `json:"added"`
}

// MarshalJSON implements json.Marshaler.
func (i Info) MarshalJSON() ([]byte, error) {
	j := infoJSON{Name: i.Name, Format: i.Format, Size: i.Size, Pinned: i.Pinned, Pins: i.Pins, Added: i.Added.UTC()}
	if i.CID.Defined() {
		j.CID = i.CID.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler.
func (i *Info) UnmarshalJSON(b []byte) error {
	var j infoJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	c, err := cid.Decode(j.CID)
	if err != nil {
		return fmt.Errorf("info: cid %q: %w", j.CID, err)
	}
	*i = Info{CID: c, Name: j.Name, Format: j.Format, Size: j.Size, Pinned: j.Pinned, Pins: j.Pins, Added: j.Added.UTC()}
	return nil
}

// Validate checks a Meta: a name of at most 255 bytes without path
// separators or control characters, a format of at most 32 characters
// from [a-z0-9.+_-].
func (m Meta) Validate() error {
	if len(m.Name) > 255 || !utf8.ValidString(m.Name) || strings.ContainsAny(m.Name, `/\`) ||
		strings.IndexFunc(m.Name, unicode.IsControl) >= 0 {
		return fmt.Errorf("appliance name %q: want a file name of at most 255 bytes, without / or control characters: %w", m.Name, ErrInvalid)
	}
	if len(m.Format) > 32 || strings.IndexFunc(m.Format, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune(".+_-", r))
	}) >= 0 {
		return fmt.Errorf("appliance format %q: want at most 32 characters of a-z, 0-9 and .+_- such as qcow2: %w", m.Format, ErrInvalid)
	}
	return nil
}

// knownFormats maps file extensions to formats.
var knownFormats = map[string]string{
	"qcow2": "qcow2", "qcow": "qcow2", "img": "raw", "raw": "raw", "iso": "iso",
	"vmdk": "vmdk", "vdi": "vdi", "vhd": "vhd", "vhdx": "vhdx", "ova": "ova",
	"tar": "bundle", "tgz": "bundle",
}

// GuessFormat derives a format from a file name's extension (web.qcow2 is
// qcow2, site.tar a bundle); "" when it does not know the extension.
func GuessFormat(name string) string {
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(name), "."))
	if strings.HasSuffix(strings.ToLower(name), ".tar.gz") {
		ext = "tgz"
	}
	return knownFormats[ext]
}

// ValidateReason checks a pin reason: 1 to 128 printable characters.
func ValidateReason(reason string) error {
	if reason == "" || len(reason) > 128 || !utf8.ValidString(reason) ||
		strings.IndexFunc(reason, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("pin reason %q: want 1 to 128 printable characters such as %q: %w", reason, LeaseReason("<id>"), ErrInvalid)
	}
	return nil
}

// Key layout, version 1 (see doc.go).
var (
	infoPrefix = datastore.NewKey("/v1/info")
	pinPrefix  = datastore.NewKey("/v1/pin")
)

// rootKey names a root in keys: its CIDv1 string, so that both forms of
// a dag-pb CID share records.
func rootKey(c cid.Cid) string { return cid.NewCidV1(c.Type(), c.Hash()).String() }

func infoKey(c cid.Cid) datastore.Key { return infoPrefix.ChildString(rootKey(c)) }

func pinKey(c cid.Cid, reason string) datastore.Key {
	esc := url.PathEscape(reason)
	if strings.HasPrefix(esc, ".") { // keys are cleaned: "." and ".." would vanish
		esc = "%2E" + esc[1:]
	}
	return pinPrefix.ChildString(rootKey(c)).ChildString(esc)
}

// pinRecord is the value under a pin key.
type pinRecord struct {
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// record is the value under an info key.
type record struct {
	Name   string    `json:"name"`
	Format string    `json:"format"`
	Size   uint64    `json:"size"`
	Added  time.Time `json:"added"`
}

// getRecord reads the record of c; ok is false when there is none.
func (s *Service) getRecord(ctx context.Context, c cid.Cid) (record, bool, error) {
	b, err := s.ds.Get(ctx, infoKey(c))
	if errors.Is(err, datastore.ErrNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("read record of %s: %w", c, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, false, fmt.Errorf("record of %s: %v: %w", c, err, ErrMalformed)
	}
	return r, true, nil
}

// pinsOf lists the pin reasons of c, sorted.
func (s *Service) pinsOf(ctx context.Context, c cid.Cid) ([]string, error) {
	prefix := pinPrefix.ChildString(rootKey(c))
	res, err := s.ds.Query(ctx, dsq.Query{Prefix: prefix.String(), KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list pins of %s: %w", c, err)
	}
	entries, err := res.Rest()
	if err != nil {
		return nil, fmt.Errorf("list pins of %s: %w", c, err)
	}
	var reasons []string
	for _, e := range entries {
		k := datastore.RawKey(e.Key)
		if !k.Parent().Equal(prefix) {
			continue
		}
		if r, err := url.PathUnescape(k.BaseNamespace()); err == nil {
			reasons = append(reasons, r)
		}
	}
	sort.Strings(reasons)
	return reasons, nil
}

// allPins maps each pinned root (by rootKey) to its reasons.
func (s *Service) allPins(ctx context.Context) (map[string][]string, error) {
	res, err := s.ds.Query(ctx, dsq.Query{Prefix: pinPrefix.String(), KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	defer res.Close()
	pins := map[string][]string{}
	for e, ok := res.NextSync(); ok; e, ok = res.NextSync() {
		if e.Error != nil {
			return nil, fmt.Errorf("list pins: %w", e.Error)
		}
		k := datastore.RawKey(e.Key)
		if !k.Parent().Parent().Equal(pinPrefix) {
			continue
		}
		r, err := url.PathUnescape(k.BaseNamespace())
		if err != nil {
			continue
		}
		root := k.Parent().BaseNamespace()
		pins[root] = append(pins[root], r)
	}
	for _, rs := range pins {
		sort.Strings(rs)
	}
	return pins, nil
}

// putRecordAndPin writes c's record (keeping an existing one's name,
// format and added time where the new one has none) and a pin, in one
// batch, and syncs the datastore: an appliance reported added, fetched or
// pinned survives the machine's crash, its blocks too (they were written
// unsynced, and the sync covers them).
func (s *Service) putRecordAndPin(ctx context.Context, c cid.Cid, r record, reason string) (record, error) {
	old, ok, err := s.getRecord(ctx, c)
	if err != nil {
		return record{}, err
	}
	if ok {
		if r.Name == "" {
			r.Name = old.Name
		}
		if r.Format == "" {
			r.Format = old.Format
		}
		r.Added = old.Added
	}
	rb, err := json.Marshal(r)
	if err != nil {
		return record{}, err
	}
	pb, err := json.Marshal(pinRecord{Reason: reason, Since: s.now()})
	if err != nil {
		return record{}, err
	}
	b, err := s.ds.Batch(ctx)
	if err != nil {
		return record{}, fmt.Errorf("pin %s: %w", c, err)
	}
	if err := b.Put(ctx, infoKey(c), rb); err != nil {
		return record{}, fmt.Errorf("pin %s: %w", c, err)
	}
	if err := b.Put(ctx, pinKey(c, reason), pb); err != nil {
		return record{}, fmt.Errorf("pin %s: %w", c, err)
	}
	if err := b.Commit(ctx); err != nil {
		return record{}, fmt.Errorf("pin %s: %w", c, err)
	}
	if err := s.ds.Sync(ctx, datastore.NewKey("/")); err != nil {
		return record{}, fmt.Errorf("pin %s: %w", c, err)
	}
	return r, nil
}

func (s *Service) now() time.Time { return s.clk.Now().UTC().Truncate(time.Millisecond) }

func (r record) info(c cid.Cid, pins []string) Info {
	return Info{CID: c, Name: r.Name, Format: r.Format, Size: r.Size, Pinned: len(pins) > 0, Pins: pins, Added: r.Added}
}
