// Package frame reads and writes the frames of spotmesh's request-answer
// stream protocols: a tag byte, the body's length as a uvarint, the body.
// A reader refuses a tag it does not expect and a body over the tag's
// bound before it reads the body.
package frame

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Append appends tag, the uvarint length of body and body to b.
func Append(b []byte, tag byte, body []byte) []byte {
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

// Read reads one frame whose tag is one of want; max gives each tag's
// largest body.
func Read(r *bufio.Reader, max func(tag byte) int, want ...byte) (byte, []byte, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	ok := false
	for _, w := range want {
		ok = ok || tag == w
	}
	if !ok {
		return 0, nil, fmt.Errorf("frame tag 0x%02x unexpected here", tag)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, fmt.Errorf("frame length: %w", err)
	}
	if m := max(tag); m < 0 || n > uint64(m) {
		return 0, nil, fmt.Errorf("frame 0x%02x of %d bytes: limit %d", tag, n, max(tag))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("frame body: %w", err)
	}
	return tag, body, nil
}
