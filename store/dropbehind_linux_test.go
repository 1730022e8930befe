package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDropBehind: after a sync, the value log's pages are no longer in
// memory unless KeepValueLogCached is set, and every value reads back
// intact, also after a reopen.
func TestDropBehind(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keep   bool
		cached func(resident, written int64) bool
	}{
		{"dropped", false, func(r, w int64) bool { return r < w/10 }},
		{"kept", true, func(r, w int64) bool { return r > w*9/10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.KeepValueLogCached = tc.keep
			db := openTest(t, opts)
			d := db.Datastore("blocks")
			ctx := t.Context()
			const values = 16 // of 1 MiB: twice what a round drops at least
			val := func(i int) []byte { return bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, 1<<20/3) }
			put := func(from, to int) {
				t.Helper()
				b, err := d.Batch(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for i := from; i < to; i++ {
					if err := b.Put(ctx, dsKey(i), val(i)); err != nil {
						t.Fatal(err)
					}
					if (i+1)%8 == 0 || i == to-1 {
						if err := b.Commit(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
				if err := db.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			put(0, values)
			vlog := filepath.Join(opts.Dir, logFileName(1, ".vlog"))
			written := int64(values) << 20
			if r := residentBytes(t, vlog, written); !tc.cached(r, written) {
				t.Fatalf("%d of the %d bytes written to %s are in memory after a sync", r, written, vlog)
			}
			check := func(db *DB, n int) {
				t.Helper()
				d := db.Datastore("blocks")
				for i := range n {
					got, err := d.Get(ctx, dsKey(i))
					if err != nil || !bytes.Equal(got, val(i)) {
						t.Fatalf("value %d: %d bytes, %v; want %d bytes", i, len(got), err, len(val(i)))
					}
				}
			}
			check(db, values)
			put(values, values+12) // a second round drops from where the first stopped
			check(db, values+12)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			check(openTest(t, opts), values+12)
		})
	}
}

// residentBytes is how many of the first n bytes of the file at path are
// in the page cache.
func residentBytes(t *testing.T, path string, n int64) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	vec := make([]byte, (n+pageSize-1)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	var r int64
	for _, v := range vec {
		r += int64(v & 1)
	}
	return r * pageSize
}

func TestFileMappings(t *testing.T) {
	maps := []byte(`00400000-004a1000 r-xp 00000000 fe:00 9994350                            /tmp/exe
7f0000000000-7f0020000000 rw-s 00000000 fe:00 1234                             /db/000001.vlog
7f0020000000-7f0030000000 rw-s 10000000 fe:00 1234                             /db/000001.vlog (deleted)
7f0030000000-7f0040000000 rw-s 00000000 fe:01 1234                             /other/000001.vlog
7f0040000000-7f0050000000 rw-s 00000000 fe:00 12345                            /db/000002.vlog
7f0050000000-7f0050001000 rw-p 00000000 00:00 0
garbage line
`)
	got := fileMappings(maps, unix.Mkdev(0xfe, 0), 1234)
	want := []mapping{{0x7f0000000000, 0x7f0020000000, 0}, {0x7f0020000000, 0x7f0030000000, 0x10000000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fileMappings = %x, want %x", got, want)
	}
	if got := fileMappings(maps, unix.Mkdev(0xfe, 0), 99); len(got) != 0 {
		t.Fatalf("fileMappings of an unmapped inode = %x", got)
	}
}
