package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// dropBehind gives back the memory of value-log pages once a sync round has
// made them durable: appliance blocks, written once in bulk and read again
// later, if ever, at disk speed.
//
// Badger writes the value log through a shared memory map, so every block
// written lands in a new page-cache page that stays there, mapped, after it
// is on disk. Fetching a large appliance therefore used fresh memory for
// every page (expensive on a VM whose balloon returns freed pages to the
// host: the page is zeroed in a hypervisor fault), and writeback had to
// write-protect each page in badger's map, one TLB shootdown per page. A
// perf profile of a 1 GiB fetch put 26 % of its CPU in zeroing those fresh
// pages and 10 % in the shootdowns.
//
// Before a round's syncs, MADV_PAGEOUT on badger's mapping of the range
// written so far unmaps those pages with one batched TLB flush; they stay
// in the page cache, dirty, and writeback then has nothing to
// write-protect. After the syncs, POSIX_FADV_DONTNEED frees them: it frees
// only clean pages that nobody maps. The next pages badger writes reuse
// that memory. Neither call discards data: a page written since the mark
// stays dirty and is left alone. A stale or wrong range (the maps are read
// without badger's lock) can at worst unmap pages that then fault back in,
// or page out other clean pages.
// Measured: store's BenchmarkBulkWrite and node/appliance's
// BenchmarkTransfer (docs/BENCHMARKS.md).
//
// It also keeps a large fetch from pushing the rest of the machine's page
// cache out.
type dropBehind struct {
	dir      string
	fileSize int64 // badger's ValueLogFileSize
	page     int64
	log      *slog.Logger
	off      bool            // it cannot work here (see mark and unmap)
	next     int64           // the lowest value-log id that may hold pages to drop; 0 before the first round
	marked   int64           // the current file of the round in progress: next once it succeeds
	dropped  map[int64]int64 // value-log id -> offset dropped up to
}

// dropMinBytes is the least the file being written must have grown by to
// be worth a pass; a file badger has finished is dropped to its end.
const dropMinBytes = 8 << 20

// dropMark is a value-log file and how far it was written before a round.
type dropMark struct {
	id  int64
	end int64
}

func newDropBehind(dir string, fileSize int64, log *slog.Logger) *dropBehind {
	return &dropBehind{dir: dir, fileSize: fileSize, page: int64(os.Getpagesize()), log: log, dropped: make(map[int64]int64)}
}

// mark returns how far each value-log file from the lowest one not yet
// dropped to cur (the file being written at the end of the last round) is
// written now. Call it before the round's syncs. A file before cur is
// finished (badger truncated it to what it wrote); in cur, the first hole
// is where badger is (it sizes the file up front and writes it from its
// start; pages written, dirty or synced, are data), and the page there may
// still be written to.
func (d *dropBehind) mark(cur int64) []dropMark {
	if d == nil || d.off || cur == 0 {
		return nil
	}
	if d.next == 0 {
		// The first round: from the oldest file (its pages may be cached
		// since this process read or wrote them).
		d.next = cur
		if _, lo, err := logIDs(d.dir); err == nil && lo[".vlog"] > 0 {
			d.next = min(d.next, lo[".vlog"])
		}
	}
	first := min(d.next, cur)
	d.marked = cur
	var marks []dropMark
	for id := first; id <= cur; id++ {
		f, err := os.Open(filepath.Join(d.dir, logFileName(id, ".vlog")))
		if err != nil {
			continue // collected by value-log GC
		}
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		var end int64
		if err == nil {
			end, err = unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
		}
		_ = f.Close()
		if err != nil {
			continue
		}
		finished := id < cur
		if !finished {
			if end >= st.Size && st.Size == 2*d.fileSize {
				// No hole in a file as badger sized it, twice its size:
				// this file system does not report holes (NFSv3, 9p),
				// the end of the data is unknown. (A file badger has
				// finished is cut to its data and ends in no hole.)
				d.off = true
				d.log.Info("store: value-log drop-behind is off: this file system does not report where a file's data ends (SEEK_HOLE); the page cache keeps the value log")
				return nil
			}
			end = end&^(d.page-1) - d.page
		}
		if from := d.dropped[id]; end-from >= dropMinBytes || finished && end > from {
			marks = append(marks, dropMark{id, end})
		}
	}
	return marks
}

// unmap takes the pages of marks out of badger's memory map before the
// round's syncs, so that writing them back does not have to
// write-protect each one in the map (a TLB shootdown per page). Dirty
// pages stay in the page cache, dirty, for the syncs to write.
func (d *dropBehind) unmap(marks []dropMark) {
	if len(marks) == 0 {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		d.log.Debug("store: drop-behind: read the memory maps", "err", err)
		return
	}
	for _, m := range marks {
		err := d.pageOut(maps, m.id, d.dropped[m.id], m.end)
		if errors.Is(err, unix.EINVAL) {
			// MADV_PAGEOUT unknown (Linux before 5.4) or refused.
			d.off = true
			d.log.Info("store: value-log drop-behind is off: the kernel refused MADV_PAGEOUT; the page cache keeps the value log", "err", err)
		}
		if err != nil {
			d.log.Debug("store: drop-behind", "file", logFileName(m.id, ".vlog"), "err", err)
			return
		}
	}
}

// release frees the pages of marks, which the round has written to disk:
// clean pages that are not mapped; any other is left alone. Call it once
// the round has succeeded, with or without marks.
func (d *dropBehind) release(marks []dropMark) {
	if d == nil || d.marked == 0 {
		return
	}
	for _, m := range marks {
		if f, err := os.Open(filepath.Join(d.dir, logFileName(m.id, ".vlog"))); err == nil {
			from := d.dropped[m.id]
			err := unix.Fadvise(int(f.Fd()), from, m.end-from, unix.FADV_DONTNEED)
			_ = f.Close()
			if err != nil {
				d.log.Debug("store: drop-behind: fadvise", "file", logFileName(m.id, ".vlog"), "err", err)
			}
		}
		d.dropped[m.id] = m.end
	}
	// Every file before the round's current one is dropped to its end.
	d.next, d.marked = d.marked, 0
	for id := range d.dropped {
		if id < d.next {
			delete(d.dropped, id)
		}
	}
}

// pageOut unmaps the pages of value-log file id in [from, to) from this
// process's mappings of it (badger's).
func (d *dropBehind) pageOut(maps []byte, id, from, to int64) error {
	name := logFileName(id, ".vlog")
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(d.dir, name), &st); err != nil {
		return nil // deleted meanwhile: nothing to free
	}
	for _, m := range fileMappings(maps, name, st.Ino) {
		lo, hi := max(from, m.off), min(to, m.off+int64(m.end-m.start))
		if lo >= hi {
			continue
		}
		addr := m.start + uintptr(lo-m.off)
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, uintptr(hi-lo), unix.MADV_PAGEOUT); errno != 0 {
			return fmt.Errorf("madvise pageout: %w", errno)
		}
	}
	return nil
}

// mapping is one line of /proc/self/maps: [start, end) maps the file from
// offset off.
type mapping struct {
	start, end uintptr
	off        int64
}

// fileMappings returns the mappings in maps (the text of /proc/self/maps)
// of the file named name (a base name) with inode ino. The device is not
// compared: on btrfs and overlayfs the maps show another device number
// than stat.
func fileMappings(maps []byte, name string, ino uint64) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// start-end perms offset dev inode path [(deleted)]
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || filepath.Base(string(f[5])) != name {
			continue
		}
		if n, err := strconv.ParseUint(string(f[4]), 10, 64); err != nil || n != ino {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		off, err3 := strconv.ParseInt(string(f[2]), 16, 64)
		if err1 != nil || err2 != nil || err3 != nil || end <= start {
			continue
		}
		out = append(out, mapping{uintptr(start), uintptr(end), off})
	}
	return out
}
