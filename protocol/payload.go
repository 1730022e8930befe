package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Receivers verify a signature over the bytes they received rather than
// re-encode the record: payloadFromEncoded drops the "sig" entry from a
// canonical encoding, which yields exactly the encoding without "sig" that
// the author signed (canonical order does not depend on the other keys).

var errShort = errors.New("cbor: truncated item")

// cborHead reads an item's head: its major type, argument and head length.
func cborHead(b []byte) (major byte, arg uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, errShort
	}
	major, ai := b[0]>>5, b[0]&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), 1, nil
	case ai == 24 && len(b) >= 2:
		return major, uint64(b[1]), 2, nil
	case ai == 25 && len(b) >= 3:
		return major, uint64(binary.BigEndian.Uint16(b[1:])), 3, nil
	case ai == 26 && len(b) >= 5:
		return major, uint64(binary.BigEndian.Uint32(b[1:])), 5, nil
	case ai == 27 && len(b) >= 9:
		return major, binary.BigEndian.Uint64(b[1:]), 9, nil
	case ai > 27:
		return 0, 0, 0, fmt.Errorf("cbor: indefinite or reserved length %d", ai)
	}
	return 0, 0, 0, errShort
}

// cborSkip returns the length of the item at the start of b.
func cborSkip(b []byte, depth int) (int, error) {
	if depth > 32 {
		return 0, errors.New("cbor: nested too deep")
	}
	major, arg, n, err := cborHead(b)
	if err != nil {
		return 0, err
	}
	switch major {
	case 0, 1, 7:
		return n, nil
	case 2, 3:
		if arg > uint64(len(b)-n) {
			return 0, errShort
		}
		return n + int(arg), nil
	case 4, 5:
		items := arg
		if major == 5 {
			items *= 2
		}
		if items > uint64(len(b)) {
			return 0, errShort
		}
		off := n
		for i := uint64(0); i < items; i++ {
			k, err := cborSkip(b[off:], depth+1)
			if err != nil {
				return 0, err
			}
			off += k
		}
		return off, nil
	case 6:
		k, err := cborSkip(b[n:], depth+1)
		return n + k, err
	}
	return 0, fmt.Errorf("cbor: major type %d", major)
}

// appendHead appends a canonical head of the given major type and argument.
func appendHead(out []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(out, m|byte(arg))
	case arg <= 0xff:
		return append(out, m|24, byte(arg))
	case arg <= 0xffff:
		return binary.BigEndian.AppendUint16(append(out, m|25), uint16(arg))
	case arg <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(out, m|26), uint32(arg))
	}
	return binary.BigEndian.AppendUint64(append(out, m|27), arg)
}

// payloadFromEncoded builds domain || 0x00 || enc-without-"sig" from the
// canonical encoding of a record (a map with a "sig" entry).
func payloadFromEncoded(domain string, enc []byte) ([]byte, error) {
	major, pairs, n, err := cborHead(enc)
	if err != nil || major != 5 || pairs == 0 {
		return nil, fmt.Errorf("%w: record is not a map", ErrMalformed)
	}
	out := make([]byte, 0, len(domain)+1+len(enc))
	out = append(append(out, domain...), 0)
	out = appendHead(out, 5, pairs-1)
	off, found := n, false
	for i := uint64(0); i < pairs; i++ {
		k, err := cborSkip(enc[off:], 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		v, err := cborSkip(enc[off+k:], 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if k == 4 && string(enc[off:off+4]) == "\x63sig" {
			found = true
		} else {
			out = append(out, enc[off:off+k+v]...)
		}
		off += k + v
	}
	if !found || off != len(enc) {
		return nil, fmt.Errorf("%w: no signature field", ErrMalformed)
	}
	return out, nil
}

// verifyEncoded checks r's signature over the payload derived from enc, the
// canonical bytes r was decoded from.
func verifyEncoded(r Record, enc []byte) error {
	pub, err := r.Author().ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("%w: author %q has no inline public key: %v", ErrMalformed, r.Author(), err)
	}
	payload, err := payloadFromEncoded(r.Domain(), enc)
	if err != nil {
		return err
	}
	if ok, err := pub.Verify(payload, r.signature()); err != nil || !ok {
		return fmt.Errorf("%w: %s does not verify for author %s", ErrBadSignature, r.Domain(), r.Author())
	}
	return nil
}
