package appliance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
)

func TestImportOpen(t *testing.T) {
	const chunk = 256 << 10
	cfg := testConfig()
	cfg.ChunkSize = chunk
	sizes := []int64{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 17, 180 * chunk} // 180 > 174 links: two levels
	s := newNode(t, nodeOpts{cfg: &cfg}).Service
	ctx := context.Background()
	for i, n := range sizes {
		var last uint64
		calls := 0
		info, err := s.Import(ctx, newPRNG(uint64(i), n), Meta{Name: "f.img", Format: "raw"}, func(done uint64) {
			if done < last {
				t.Errorf("progress went back from %d to %d", last, done)
			}
			last, calls = done, calls+1
		})
		if err != nil {
			t.Fatalf("import %d bytes: %v", n, err)
		}
		if info.Size != uint64(n) || info.Name != "f.img" || info.Format != "raw" || !info.Pinned || info.Added.IsZero() {
			t.Errorf("import %d bytes: info %+v", n, info)
		}
		if info.CID.Version() != 1 {
			t.Errorf("import %d bytes: CID %s is not v1", n, info.CID)
		}
		if n > 0 && (last != uint64(n) || calls != int((n+chunk-1)/chunk)) {
			t.Errorf("import %d bytes: progress ended at %d after %d calls", n, last, calls)
		}
		if got, want := openSum(t, s, info.CID), prngSum(t, uint64(i), n); got != want {
			t.Errorf("import %d bytes: read back differs", n)
		}
		// The same bytes give the same CID.
		again, err := s.Import(ctx, newPRNG(uint64(i), n), Meta{Name: "g.img"}, nil)
		if err != nil || !again.CID.Equals(info.CID) {
			t.Errorf("import %d bytes again: %v, %v", n, again.CID, err)
		}
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != len(sizes) {
		t.Fatalf("List: %d, %v", len(list), err)
	}
}

func TestOpenSeek(t *testing.T) {
	s := newNode(t, nodeOpts{}).Service
	const n = 3<<20 + 12345
	info, _ := importPRNG(t, s, 7, n)
	want, _ := io.ReadAll(newPRNG(7, n))
	f, err := s.Open(context.Background(), info.CID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != n {
		t.Fatalf("size %d", f.Size())
	}
	for _, off := range []int64{0, 1, 1 << 20, 1<<20 - 3, n - 10, 2<<20 + 999} {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 10)
		if _, err := io.ReadFull(f, got); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(got, want[off:off+10]) {
			t.Errorf("bytes at %d differ", off)
		}
	}
}

func TestOpenMissing(t *testing.T) {
	s := newNode(t, nodeOpts{}).Service
	c, _ := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	if _, err := s.Open(context.Background(), c); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open of a CID not here: %v, want ErrNotFound", err)
	}
}

func TestImportRejectsBadMeta(t *testing.T) {
	s := newNode(t, nodeOpts{}).Service
	for _, m := range []Meta{{Name: "a/b"}, {Name: "x\x00"}, {Format: "QCOW2"}, {Format: "a b"}} {
		if _, err := s.Import(context.Background(), newPRNG(1, 10), m, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Import with %+v: %v, want ErrInvalid", m, err)
		}
	}
}

func TestImportCanceled(t *testing.T) {
	s := newNode(t, nodeOpts{}).Service
	ctx, cancel := context.WithCancel(context.Background())
	_, err := s.Import(ctx, newPRNG(1, 64<<20), Meta{}, func(n uint64) {
		if n >= 4<<20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled import: %v", err)
	}
	list, _ := s.List(context.Background())
	if len(list) != 0 {
		t.Fatalf("a canceled import left a record: %+v", list)
	}
}

func TestImportBeforeStartAndAfterClose(t *testing.T) {
	s, err := New(testConfig(), newHost(t), mapDS(), nil, clock.New(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Import(context.Background(), newPRNG(1, 1000), Meta{}, nil)
	if err != nil {
		t.Fatalf("import before Start: %v", err)
	}
	if _, err := s.Fetch(context.Background(), info.CID, FetchOptions{}); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("fetch before Start: %v, want ErrNotStarted", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Import(context.Background(), newPRNG(1, 1000), Meta{}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("import after Close: %v, want ErrClosed", err)
	}
}
