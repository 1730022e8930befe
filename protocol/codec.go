package protocol

import (
	"bytes"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// The one codec: deterministic DAG-CBOR. Map keys are sorted length-first
// (RFC 7049 canonical order, which is DAG-CBOR's), integers take their
// shortest form, no indefinite lengths, and the only tag is 42 (a CID link).
var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{
		Sort:          cbor.SortCanonical,
		ShortestFloat: cbor.ShortestFloatNone,
		IndefLength:   cbor.IndefLengthForbidden,
		NilContainers: cbor.NilContainerAsEmpty,
		TagsMd:        cbor.TagsAllowed,
	}.EncMode()
	if err != nil {
		panic(err)
	}
	tags := cbor.NewTagSet()
	decMode, err = cbor.DecOptions{
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   16,
		MaxArrayElements:  4096,
		MaxMapPairs:       256,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		DefaultMapType:    nil,
	}.DecModeWithTags(tags)
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v as deterministic DAG-CBOR.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// unmarshalCanonical decodes b into v and insists that b is exactly the
// canonical encoding of what it decoded to, so that one record has one byte
// form and one CID. Unknown fields, duplicate keys, unsorted maps and
// non-minimal integers all fail here.
func unmarshalCanonical(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(again, b) {
		return fmt.Errorf("%w: not canonical DAG-CBOR", ErrMalformed)
	}
	return nil
}

// CIDOf names encoded record bytes: CIDv1, dag-cbor, sha2-256.
func CIDOf(b []byte) cid.Cid {
	h, err := mh.Sum(b, mh.SHA2_256, -1)
	if err != nil {
		panic(err) // sha2-256 is always registered
	}
	return cid.NewCidV1(cid.DagCBOR, h)
}

// Link is a reference from one record to another by CID, encoded as
// DAG-CBOR's tag 42 over the CID's bytes with a leading zero byte.
type Link struct{ cid.Cid }

// MarshalCBOR implements cbor.Marshaler.
func (l Link) MarshalCBOR() ([]byte, error) {
	if !l.Defined() {
		return nil, fmt.Errorf("link: undefined CID")
	}
	return encMode.Marshal(cbor.Tag{Number: 42, Content: append([]byte{0}, l.Bytes()...)})
}

// UnmarshalCBOR implements cbor.Unmarshaler.
func (l *Link) UnmarshalCBOR(b []byte) error {
	var t cbor.RawTag
	if err := decMode.Unmarshal(b, &t); err != nil {
		return err
	}
	if t.Number != 42 {
		return fmt.Errorf("link: tag %d, want 42", t.Number)
	}
	var raw []byte
	if err := decMode.Unmarshal(t.Content, &raw); err != nil {
		return fmt.Errorf("link: %v", err)
	}
	if len(raw) < 2 || raw[0] != 0 {
		return fmt.Errorf("link: want a zero byte before the CID")
	}
	c, err := cid.Cast(raw[1:])
	if err != nil {
		return fmt.Errorf("link: %v", err)
	}
	l.Cid = c
	return nil
}
