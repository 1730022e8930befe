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
// After a round, the pages written before it are clean: MADV_PAGEOUT on
// badger's mapping of that range unmaps and frees them with one batched
// TLB flush, and POSIX_FADV_DONTNEED frees any that were not mapped. The
// next pages badger writes reuse that memory. Both calls only drop clean
// copies of data that is on disk: a page written since, or a wrong range,
// is left as it is (PAGEOUT never discards data, on any kind of memory), so
// the worst a stale guess can cost is a page read back from disk.
// Measured: store's BenchmarkBulkWrite and node/appliance's
// BenchmarkTransfer (docs/BENCHMARKS.md).
//
// It also keeps a large fetch from pushing the rest of the machine's page
// cache out.
type dropBehind struct {
	dir     string
	log     *slog.Logger
	off     bool            // PAGEOUT is not supported (before Linux 5.4)
	dropped map[int64]int64 // value-log id -> offset dropped up to
}

// dropMinBytes is the least a file must have grown by to be worth a pass.
const dropMinBytes = 8 << 20

// dropMark is a value-log file and how far it was written before a round.
type dropMark struct {
	id  int64
	end int64
}

func newDropBehind(dir string, log *slog.Logger) *dropBehind {
	return &dropBehind{dir: dir, log: log, dropped: make(map[int64]int64)}
}

// mark returns, for the value-log files from first to last, how far each
// is written now: the first hole (badger writes a file from its start and
// sizes it up front; pages written, dirty or synced, are data). Call it
// before the round's syncs.
func (d *dropBehind) mark(first, last int64) []dropMark {
	if d == nil || d.off || last == 0 {
		return nil
	}
	first = max(first, 1)
	var marks []dropMark
	for id := first; id <= last; id++ {
		f, err := os.Open(filepath.Join(d.dir, logFileName(id, ".vlog")))
		if err != nil {
			continue // collected by value-log GC
		}
		end, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
		_ = f.Close()
		if err != nil {
			continue
		}
		// The last page may still be written to: keep it.
		end = end&^(pageSize-1) - pageSize
		if end-d.dropped[id] >= dropMinBytes {
			marks = append(marks, dropMark{id, end})
		}
	}
	return marks
}

const pageSize = 4096

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
			d.off = true // MADV_PAGEOUT unknown: the kernel is older than 5.4
		}
		if err != nil {
			d.log.Debug("store: drop-behind", "file", logFileName(m.id, ".vlog"), "err", err)
			return
		}
	}
}

// release frees the pages of marks, which the round has written to disk:
// clean pages that are not mapped; any other is left alone.
func (d *dropBehind) release(marks []dropMark) {
	if len(marks) == 0 {
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
	// Forget the files that value-log GC deleted.
	for id := range d.dropped {
		if _, err := os.Stat(filepath.Join(d.dir, logFileName(id, ".vlog"))); err != nil {
			delete(d.dropped, id)
		}
	}
}

// pageOut unmaps the pages of value-log file id in [from, to) from this
// process's mappings of it (badger's).
func (d *dropBehind) pageOut(maps []byte, id, from, to int64) error {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(d.dir, logFileName(id, ".vlog")), &st); err != nil {
		return nil // deleted meanwhile: nothing to free
	}
	for _, m := range fileMappings(maps, st.Dev, st.Ino) {
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

// fileMappings returns the mappings of the file with device dev and inode
// ino in maps (the text of /proc/self/maps).
func fileMappings(maps []byte, dev, ino uint64) []mapping {
	var out []mapping
	want := fmt.Sprintf("%02x:%02x", unix.Major(dev), unix.Minor(dev))
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || string(f[3]) != want {
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
