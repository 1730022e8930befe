package refcloud

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// errBundle: the appliance is not a bundle this cloud runs.
var errBundle = errors.New("not a runnable bundle")

// unpack makes dir/run out of the bundle file: a tar archive (gzipped or
// not) is extracted into dir through an os.Root, one executable (ELF or
// #!) is moved there. limit caps the bytes extracted.
func unpack(file, dir string, limit uint64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var head [512]byte
	n, _ := io.ReadFull(f, head[:])
	h := head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	run := filepath.Join(dir, "run")
	switch {
	case len(h) >= 2 && h[0] == 0x1f && h[1] == 0x8b:
		zr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return fmt.Errorf("gzip: %v: %w", err, errBundle)
		}
		if err := untar(zr, dir, limit); err != nil {
			return err
		}
	case len(h) >= 262 && bytes.Equal(h[257:262], []byte("ustar")):
		if err := untar(bufio.NewReader(f), dir, limit); err != nil {
			return err
		}
	case bytes.HasPrefix(h, []byte("\x7fELF")), bytes.HasPrefix(h, []byte("#!")):
		f.Close()
		if err := os.Rename(file, run); err != nil {
			return err
		}
		return os.Chmod(run, 0o755)
	default:
		return fmt.Errorf("want a tar archive with an executable named run at its root, or one executable (ELF or #!): %w", errBundle)
	}
	st, err := os.Lstat(run)
	if err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("the archive has no regular file named run at its root: %w", errBundle)
	}
	return os.Chmod(run, st.Mode().Perm()|0o500)
}

func untar(r io.Reader, dir string, limit uint64) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var total uint64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %v: %w", err, errBundle)
		}
		clean := path.Clean(h.Name)
		if path.IsAbs(h.Name) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("tar entry %q points outside the bundle: %w", h.Name, errBundle)
		}
		name := strings.TrimPrefix(clean, "./")
		if name == "." || name == "" {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(name, fs.FileMode(h.Mode).Perm()|0o700)
		case tar.TypeReg:
			if h.Size < 0 || total+uint64(h.Size) > limit {
				return fmt.Errorf("the bundle unpacks to more than the lease's disk (%d bytes): %w", limit, errBundle)
			}
			total += uint64(h.Size)
			if d := path.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("tar entry %q: %v: %w", h.Name, err, errBundle)
				}
			}
			var w *os.File
			if w, err = root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fs.FileMode(h.Mode).Perm()|0o600); err == nil {
				_, err = io.Copy(w, tr)
				if cerr := w.Close(); err == nil {
					err = cerr
				}
			}
		case tar.TypeSymlink:
			err = root.Symlink(h.Linkname, name)
		case tar.TypeLink:
			err = root.Link(strings.TrimPrefix(path.Clean("/"+h.Linkname), "/"), name)
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
		default:
			return fmt.Errorf("tar entry %q: device files and FIFOs are not allowed: %w", h.Name, errBundle)
		}
		if err != nil {
			return fmt.Errorf("tar entry %q: %v: %w", h.Name, err, errBundle)
		}
	}
}
