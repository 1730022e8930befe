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
// memory unless KeepValueLogCached is set, also in files badger has
// finished, and every value reads back intact, also after a reopen.
func TestDropBehind(t *testing.T) {
	var fs unix.Statfs_t
	if err := unix.Statfs(t.TempDir(), &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skip("the temporary directory is on tmpfs, where the page cache is the file")
	}
	for _, tc := range []struct {
		name     string
		keep     bool
		fileSize int64 // ValueLogFileSize; 0: the default
		cached   func(resident, written int64) bool
	}{
		{"dropped", false, 0, func(r, w int64) bool { return r < w/10 }},
		// Files of 2 MiB: badger finishes one every other value, several
		// between two rounds.
		{"dropped, small files", false, 2 << 20, func(r, w int64) bool { return r < w/4 }},
		{"kept", true, 0, func(r, w int64) bool { return r > w*9/10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.KeepValueLogCached = tc.keep
			if tc.fileSize > 0 {
				opts.ValueLogFileSize = tc.fileSize
			}
			db := openTest(t, opts)
			d := db.Datastore("blocks")
			ctx := t.Context()
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
				// Two rounds: the first also learns of the files badger
				// started since the last one.
				for range 2 {
					if err := db.Sync(); err != nil {
						t.Fatal(err)
					}
				}
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
			// 16 MiB: twice what a file being written must grow by to be
			// dropped; then 12 more, dropped from where the first stopped.
			// (Read back only at the end: reading brings the pages back.)
			for _, r := range [][2]int{{0, 16}, {16, 28}} {
				put(r[0], r[1])
				written := int64(r[1]) << 20
				if r := vlogResident(t, opts.Dir); !tc.cached(r, written) {
					t.Fatalf("%d of the %d bytes written to the value log are in memory after a sync", r, written)
				}
			}
			check(db, 28)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			check(openTest(t, opts), 28)
		})
	}
}

// vlogResident is how many bytes of the data in the value-log files in dir
// are in the page cache. Past the data, in the hole badger sized the file
// with, the kernel's read-ahead for badger's page faults keeps zeroed pages
// that badger will write next: they are not counted.
func vlogResident(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil || len(files) == 0 {
		t.Fatalf("value-log files in %s: %v, %v", dir, files, err)
	}
	var r int64
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		end, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		r += residentBytes(t, name, end)
	}
	return r
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
	if n == 0 {
		return 0
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	page := int64(os.Getpagesize())
	vec := make([]byte, (n+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	var r int64
	for _, v := range vec {
		r += int64(v & 1)
	}
	return r * page
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
	// The device is not compared (btrfs and overlayfs show another one
	// than stat does); the name and the inode are.
	got := fileMappings(maps, "000001.vlog", 1234)
	want := []mapping{{0x7f0000000000, 0x7f0020000000, 0}, {0x7f0020000000, 0x7f0030000000, 0x10000000}, {0x7f0030000000, 0x7f0040000000, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fileMappings = %x, want %x", got, want)
	}
	for _, tc := range []struct {
		name string
		ino  uint64
	}{{"000001.vlog", 99}, {"000002.vlog", 1234}} {
		if got := fileMappings(maps, tc.name, tc.ino); len(got) != 0 {
			t.Errorf("fileMappings(%s, inode %d) = %x, want none", tc.name, tc.ino, got)
		}
	}
}
