package process

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spotmesh/spotmesh/node/runtime"
)

// Bundle kinds, as stage finds them.
const (
	kindExecutable = "executable"
	kindTar        = "tar"
	kindTarGzip    = "tar+gzip"
)

// stage unpacks an appliance bundle into appDir, so that appDir/run is the
// executable to start: a tar archive (optionally gzipped) is extracted, one
// executable (ELF or a #! script) becomes run. limit caps both the
// appliance's size and what it unpacks to (the lease's disk). tmp is a
// scratch file path.
func stage(ctx context.Context, a runtime.Appliance, appDir, tmp string, limit uint64) (kind string, err error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), runtime.ErrAppliance)
	}
	if a.Size > limit {
		return "", refuse("appliance of %d bytes is larger than the lease's disk (%d bytes)", a.Size, limit)
	}
	var src io.ReadCloser
	switch {
	case a.Path != "":
		src, err = os.Open(a.Path)
	case a.Open != nil:
		src, err = a.Open(ctx)
	default:
		return "", fmt.Errorf("appliance %s: no Path nor Open: the process driver reads the appliance locally: %w", a.CID, runtime.ErrInvalid)
	}
	if err != nil {
		return "", fmt.Errorf("open appliance %s: %w", a.CID, err)
	}
	defer src.Close()

	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o700)
	if err != nil {
		return "", err
	}
	defer func() {
		f.Close()
		os.Remove(tmp)
	}()
	n, err := io.Copy(f, io.LimitReader(ctxReader{ctx, src}, int64(limit)+1))
	if err != nil {
		return "", fmt.Errorf("read appliance %s: %w", a.CID, err)
	}
	if uint64(n) > limit {
		return "", refuse("appliance is larger than the lease's disk (%d bytes)", limit)
	}
	if a.Size > 0 && uint64(n) != a.Size {
		return "", refuse("appliance %s has %d bytes, its record says %d", a.CID, n, a.Size)
	}
	var head [512]byte
	hn, _ := f.ReadAt(head[:], 0)
	kind = sniff(head[:hn])
	if kind == "" {
		return "", refuse("appliance %s is not a bundle: want a tar archive with an executable named run at its root, or one executable (ELF or a #! script)", a.CID)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	run := filepath.Join(appDir, "run")
	switch kind {
	case kindExecutable:
		if err := f.Close(); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, run); err != nil {
			return "", err
		}
		return kind, os.Chmod(run, 0o755)
	case kindTarGzip:
		zr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return "", refuse("appliance %s: gzip: %v", a.CID, err)
		}
		err = untar(ctx, zr, appDir, limit)
		if err != nil {
			return "", err
		}
	default:
		if err := untar(ctx, bufio.NewReader(f), appDir, limit); err != nil {
			return "", err
		}
	}
	st, err := os.Lstat(run)
	if err != nil || !st.Mode().IsRegular() {
		return "", refuse("appliance %s: the archive has no regular file named run at its root: the process driver starts ./run", a.CID)
	}
	return kind, os.Chmod(run, st.Mode().Perm()|0o500)
}

// sniff tells a bundle's kind from its first bytes; "" for none.
func sniff(h []byte) string {
	switch {
	case len(h) >= 2 && h[0] == 0x1f && h[1] == 0x8b:
		return kindTarGzip
	case len(h) >= 262 && bytes.Equal(h[257:262], []byte("ustar")):
		return kindTar
	case bytes.HasPrefix(h, []byte("\x7fELF")), bytes.HasPrefix(h, []byte("#!")):
		return kindExecutable
	}
	return ""
}

// untar extracts a tar stream into dir, through an os.Root so that no
// entry (a name with .., a symlink) lands outside it. Regular files,
// directories, symlinks and hard links are extracted; device files and
// FIFOs are refused. The bytes extracted are capped by limit.
func untar(ctx context.Context, r io.Reader, dir string, limit uint64) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("bundle: %s: %w", fmt.Sprintf(format, args...), runtime.ErrAppliance)
	}
	tr := tar.NewReader(r)
	var total uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return refuse("not a readable tar archive: %v", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue // the archive's root directory
		}
		if path.IsAbs(h.Name) || strings.HasPrefix(path.Clean(h.Name), "../") || path.Clean(h.Name) == ".." {
			return refuse("entry %q points outside the bundle", h.Name)
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return refuse("entry %q: %v", h.Name, err)
			}
		case tar.TypeReg:
			if h.Size < 0 || total+uint64(h.Size) > limit {
				return refuse("it unpacks to more than the lease's disk (%d bytes)", limit)
			}
			total += uint64(h.Size)
			if d := path.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return refuse("entry %q: %v", h.Name, err)
				}
			}
			w, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode|0o600)
			if err != nil {
				return refuse("entry %q: %v", h.Name, err)
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("bundle entry %q: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return refuse("entry %q: %v", h.Name, err)
			}
		case tar.TypeLink:
			old := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
			if err := root.Link(old, name); err != nil {
				return refuse("entry %q: %v", h.Name, err)
			}
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
		default:
			return refuse("entry %q: type %q: device files and FIFOs are not allowed", h.Name, h.Typeflag)
		}
	}
}

// ctxReader ends a read once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
