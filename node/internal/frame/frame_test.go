package frame

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	max := func(tag byte) int {
		if tag == 1 {
			return 4
		}
		return -1
	}
	long := append([]byte{1}, binary.AppendUvarint(nil, 1<<40)...)
	tests := []struct {
		name string
		in   []byte
		want []byte
		err  string
	}{
		{"a frame", Append(nil, 1, []byte("abcd")), []byte("abcd"), ""},
		{"empty body", Append(nil, 1, nil), []byte{}, ""},
		{"over the bound", Append(nil, 1, []byte("abcde")), nil, "limit 4"},
		{"a length of a terabyte, refused before reading", long, nil, "limit 4"},
		{"unexpected tag", Append(nil, 2, []byte("a")), nil, "unexpected"},
		{"truncated body", Append(nil, 1, []byte("abcd"))[:4], nil, "frame body"},
		{"nothing", nil, nil, io.EOF.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tag, body, err := Read(bufio.NewReader(bytes.NewReader(tc.in)), max, 1)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || tag != 1 || !bytes.Equal(body, tc.want) {
				t.Fatalf("got %d %q %v, want 1 %q", tag, body, err, tc.want)
			}
		})
	}
}
