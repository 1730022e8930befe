package appliance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// fakeConn feeds serveDAG a request stream and collects its answers.
type fakeConn struct {
	io.Reader
	out bytes.Buffer
}

func (f *fakeConn) Write(p []byte) (int, error)      { return f.out.Write(p) }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

func request(cs ...cid.Cid) []byte {
	var b []byte
	for _, c := range cs {
		b = binary.AppendUvarint(b, uint64(len(c.Bytes())))
		b = append(b, c.Bytes()...)
	}
	return b
}

func TestServeDAG(t *testing.T) {
	s := newNode(t, nodeOpts{})
	info, _ := importPRNG(t, s.Service, 71, 3<<20)
	blocks := dagBlocks(t, s.Service, info.CID)
	missing, _ := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")

	conn := &fakeConn{Reader: bytes.NewReader(request(blocks[0], missing, blocks[1]))}
	if err := s.serveDAG(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	// The answers, read the way a requester does.
	ss := &streamSource{peer: "test"}
	br := bufio.NewReader(&conn.out)
	for i, c := range []cid.Cid{blocks[0], missing, blocks[1]} {
		b, err := ss.readOne(br, c)
		if c == missing {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("answer %d: %v, want don't have", i, err)
			}
			continue
		}
		if err != nil || !b.Cid().Equals(c) {
			t.Fatalf("answer %d: %v", i, err)
		}
	}
	if st := s.Stats(); st.BlocksServed != 2 {
		t.Errorf("stats %+v", st)
	}

	for name, req := range map[string][]byte{
		"zero length": {0},
		"too long":    binary.AppendUvarint(nil, maxCIDLen+1),
		"not a CID":   append(binary.AppendUvarint(nil, 3), 1, 2, 3),
		"truncated":   append(binary.AppendUvarint(nil, 36), 1, 2, 3),
	} {
		if err := s.serveDAG(context.Background(), &fakeConn{Reader: bytes.NewReader(req)}); err == nil {
			t.Errorf("%s: served a bad request", name)
		}
	}
}

// failWriteConn is one end of a net.Pipe (real deadlines) whose writes
// fail.
type failWriteConn struct{ net.Conn }

var errWriteFails = errors.New("write fails")

func (failWriteConn) Write([]byte) (int, error) { return 0, errWriteFails }

// TestServeDAGWriteFails: when an answer cannot be sent, serveDAG returns
// the error at once, also while its reader waits for the next request
// (IdleTimeout is 15 s here).
func TestServeDAGWriteFails(t *testing.T) {
	s := newNode(t, nodeOpts{})
	info, _ := importPRNG(t, s.Service, 72, 1<<20)
	for range 10 {
		server, client := net.Pipe()
		go func() { _, _ = client.Write(request(info.CID)) }() // and no more, no EOF
		done := make(chan error, 1)
		go func() { done <- s.serveDAG(context.Background(), failWriteConn{server}) }()
		select {
		case err := <-done:
			if !errors.Is(err, errWriteFails) {
				t.Fatalf("serveDAG = %v, want the write's error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("serveDAG did not return after a failed write")
		}
		_ = client.Close()
		_ = server.Close()
	}
}

func TestReadAnswerRejects(t *testing.T) {
	data := []byte("hello")
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	ss := &streamSource{peer: "test"}
	frame := func(status byte, body []byte) *bufio.Reader {
		b := append([]byte{status}, binary.AppendUvarint(nil, uint64(len(body)))...)
		return bufio.NewReader(bytes.NewReader(append(b, body...)))
	}
	if b, err := ss.readOne(frame(dagBlock, data), c); err != nil || !bytes.Equal(b.RawData(), data) {
		t.Fatalf("good answer: %v", err)
	}
	if _, err := ss.readOne(frame(dagBlock, []byte("hellO")), c); !errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong bytes: %v", err)
	}
	huge := append([]byte{dagBlock}, binary.AppendUvarint(nil, 3<<20)...)
	if _, err := ss.readOne(bufio.NewReader(bytes.NewReader(huge)), c); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a 3 MiB block: %v", err)
	}
	if _, err := ss.readOne(frame(7, nil), c); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown status: %v", err)
	}
	if _, err := ss.readOne(frame(dagBlock, data[:2]), c); err == nil {
		t.Errorf("short block accepted")
	}
}

// FuzzReadAnswer: whatever a server sends, the requester never panics and
// never accepts a block that does not hash to the CID it asked for.
func FuzzReadAnswer(f *testing.F) {
	data := []byte("hello")
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	f.Add(append([]byte{dagBlock, 5}, data...))
	f.Add([]byte{dagDontHave})
	f.Add([]byte{dagBlock, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, in []byte) {
		ss := &streamSource{peer: "fuzz"}
		b, err := ss.readOne(bufio.NewReader(bytes.NewReader(in)), c)
		if err == nil && !bytes.Equal(b.RawData(), data) {
			t.Fatalf("accepted %q for %s", b.RawData(), c)
		}
	})
}

// FuzzServeDAG: whatever a requester sends, the server never panics.
func FuzzServeDAG(f *testing.F) {
	s, err := New(testConfig(), newHost(f), mapDS(), nil, clock.New(), testLogger(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	info, err := s.Import(context.Background(), newPRNG(1, 300<<10), Meta{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(request(info.CID))
	f.Add([]byte{0})
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = s.serveDAG(context.Background(), &fakeConn{Reader: bytes.NewReader(in)})
	})
}

// FuzzDecode: whatever bytes a block holds, decoding never panics, and a
// decoded node never links to a CID this package refuses.
func FuzzDecode(f *testing.F) {
	s, err := New(testConfig(), newHost(f), mapDS(), nil, clock.New(), testLogger(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	info, err := s.Import(context.Background(), newPRNG(1, 3<<20), Meta{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	root, err := s.bstore.Get(context.Background(), info.CID)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(root.RawData())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := cidBuilder.Sum(in)
		if err != nil {
			t.Fatal(err)
		}
		b, err := blocks.NewBlockWithCid(in, c)
		if err != nil {
			t.Fatal(err)
		}
		nd, err := decode(b)
		if err != nil {
			return
		}
		for _, l := range nd.links {
			if checkCID(l) != nil {
				t.Fatalf("decoded a link to %s", l)
			}
		}
	})
}
