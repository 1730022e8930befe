package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/ipfs/go-cid"
)

func TestPinsAndGC(t *testing.T) {
	ctx := context.Background()
	s := newNode(t, nodeOpts{ds: badgerDS(t)})
	x, sumX := importPRNG(t, s.Service, 51, 4<<20)
	y, _ := importPRNG(t, s.Service, 52, 3<<20+5)
	bytesOf := func(c Info) uint64 {
		var n uint64
		w := s.newLocalWalk(0, func(_ cid.Cid, size int) { n += uint64(size) })
		if _, err := w.size(ctx, c.CID); err != nil {
			t.Fatal(err)
		}
		return n
	}
	yBytes, xBytes := bytesOf(y), bytesOf(x)

	// Nothing is freed while everything is pinned.
	if freed, err := s.GC(ctx); err != nil || freed != 0 {
		t.Fatalf("GC with everything pinned: %d, %v", freed, err)
	}

	lease := LeaseReason("L1")
	info, err := s.Pin(ctx, x.CID, lease)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ReasonAdd, lease}; !reflect.DeepEqual(info.Pins, want) {
		t.Fatalf("pins %v, want %v", info.Pins, want)
	}
	// rm takes the user's pins; the lease's stays.
	if info, err = s.Remove(ctx, x.CID); err != nil || !info.Pinned || !reflect.DeepEqual(info.Pins, []string{lease}) {
		t.Fatalf("remove x: %+v, %v", info, err)
	}
	if info, err = s.Remove(ctx, y.CID); err != nil || info.Pinned {
		t.Fatalf("remove y: %+v, %v", info, err)
	}
	if _, err := s.Unpin(ctx, y.CID, ReasonAdd); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("unpin of a pin that is gone: %v", err)
	}

	freed, err := s.GC(ctx)
	if err != nil || freed != yBytes {
		t.Fatalf("GC: freed %d, %v; want %d (y's blocks)", freed, err, yBytes)
	}
	if _, err := s.Open(ctx, y.CID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open y after GC: %v", err)
	}
	if openSum(t, s.Service, x.CID) != sumX {
		t.Fatal("x changed through GC")
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || !list[0].CID.Equals(x.CID) {
		t.Fatalf("list after GC: %+v, %v", list, err)
	}

	// The lease ends: x goes at the next GC.
	if _, err := s.Unpin(ctx, x.CID, lease); err != nil {
		t.Fatal(err)
	}
	if freed, err := s.GC(ctx); err != nil || freed != xBytes {
		t.Fatalf("GC after the lease: freed %d, %v; want %d", freed, err, xBytes)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Fatalf("list after the last GC: %+v", list)
	}
	// Pin needs the whole DAG here.
	if _, err := s.Pin(ctx, x.CID, lease); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pin of a collected appliance: %v", err)
	}
}

func TestPinReasons(t *testing.T) {
	ctx := context.Background()
	s := newNode(t, nodeOpts{})
	x, _ := importPRNG(t, s.Service, 53, 1000)
	for _, r := range []string{"", "\x00", string(make([]byte, 200))} {
		if _, err := s.Pin(ctx, x.CID, r); !errors.Is(err, ErrInvalid) {
			t.Errorf("pin reason %q: %v", r, err)
		}
	}
	// Odd but valid reasons survive the key encoding.
	for _, r := range []string{".", "..", "a/b", "lease:x y", "%2F"} {
		if _, err := s.Pin(ctx, x.CID, r); err != nil {
			t.Fatalf("pin %q: %v", r, err)
		}
	}
	info, err := s.Get(ctx, x.CID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"%2F", ".", "..", "a/b", ReasonAdd, "lease:x y"}
	if !reflect.DeepEqual(info.Pins, want) {
		t.Fatalf("pins %q, want %q", info.Pins, want)
	}
	for _, r := range want {
		if _, err := s.Unpin(ctx, x.CID, r); err != nil {
			t.Fatalf("unpin %q: %v", r, err)
		}
	}
	if info, _ := s.Get(ctx, x.CID); info.Pinned {
		t.Fatalf("still pinned: %+v", info)
	}
}

func TestInfoJSON(t *testing.T) {
	s := newNode(t, nodeOpts{})
	x, _ := importPRNG(t, s.Service, 54, 1000)
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cid", "name", "format", "size", "pinned", "pins", "added"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	if m["cid"] != x.CID.String() {
		t.Errorf("cid %v", m["cid"])
	}
	var back Info
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, x) {
		t.Fatalf("round trip: %+v, %v; want %+v", back, err, x)
	}
}

func TestGuessFormat(t *testing.T) {
	for name, want := range map[string]string{
		"web.qcow2": "qcow2", "DISK.IMG": "raw", "site.tar": "bundle", "site.tar.gz": "bundle",
		"x.iso": "iso", "run": "", "notes.txt": "",
	} {
		if got := GuessFormat(name); got != want {
			t.Errorf("GuessFormat(%q) = %q, want %q", name, got, want)
		}
		if err := (Meta{Name: name, Format: GuessFormat(name)}).Validate(); err != nil {
			t.Errorf("meta of %q: %v", name, err)
		}
	}
}
