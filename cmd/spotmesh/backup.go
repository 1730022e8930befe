package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	binenc "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/store"
)

// A backup is a tar archive of four regular files, in this order:
//
//	spotmesh-backup.json  the manifest (backupManifest)
//	config.toml           the home's config file, as it was
//	key                   the node's private key (so the archive is secret)
//	db.backup             the node's database (GET /v1/backup: badger's
//	                      backup format), made while the node ran
//
// restore reads the manifest first and refuses a format version it does
// not know. The manifest names the node and holds the database's length
// and SHA-256, so that a damaged or cut archive is refused whole.
const (
	backupFormat  = 1
	manifestEntry = "spotmesh-backup.json"
	dbEntry       = "db.backup"
)

// Caps on the small entries, against an archive that is not ours.
const (
	maxManifestBytes = 64 << 10
	maxConfigBytes   = 1 << 20
	maxKeyBytes      = 64 << 10
)

// backupManifest is spotmesh-backup.json.
type backupManifest struct {
	// FormatVersion is the archive's layout, backupFormat.
	FormatVersion int `json:"format_version"`
	// PeerID is the node's: the key's peer ID.
	PeerID peer.ID `json:"peer_id"`
	// Created is when the backup was made, RFC 3339 UTC.
	Created time.Time `json:"created"`
	// SpotmeshVersion is the version of the spotmesh that made it.
	SpotmeshVersion string `json:"spotmesh_version"`
	// DBBytes and DBSHA256 are db.backup's length and hex SHA-256.
	DBBytes  int64  `json:"db_bytes"`
	DBSHA256 string `json:"db_sha256"`
}

// backupResult is what backup prints with --json.
type backupResult struct {
	Path    string    `json:"path"`
	Bytes   int64     `json:"bytes"`
	PeerID  peer.ID   `json:"peer_id"`
	Created time.Time `json:"created"`
	DBBytes int64     `json:"db_bytes"`
}

// restoreResult is what restore prints with --json.
type restoreResult struct {
	Home            string    `json:"home"`
	PeerID          peer.ID   `json:"peer_id"`
	Created         time.Time `json:"created"`
	SpotmeshVersion string    `json:"spotmesh_version"`
	DBBytes         int64     `json:"db_bytes"`
}

func backupFlags() (*flags, *string) {
	f := newFlags("backup")
	out := f.str("o", "", "write the archive to `FILE`, or to stdout with -o -. It holds the node's private key: "+
		"it is created readable by you only (0600); keep it as safe as the home")
	return f, out
}

// cmdBackup writes a backup of the running node of c.home: its config and
// key from the home, its database from the daemon's API.
func cmdBackup(ctx context.Context, c *cli, args []string) error {
	f, out := backupFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if !f.isSet("o") {
		return usagef("-o FILE is required: the file to write the backup to, or - for stdout")
	}
	toStdout := *out == "-"
	switch {
	case *out == "":
		return usagef(`-o "": want a file name, or - for stdout`)
	case toStdout && c.json:
		return usagef("--json with -o -: stdout carries the archive; write it to a file to get JSON")
	}
	// Ctrl-C stops the download, and the temporary files go.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cl, addr, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	config, err := os.ReadFile(filepath.Join(c.home, node.ConfigFile))
	if err != nil {
		return fmt.Errorf("read the home's config: %w", err)
	}
	keyBytes, pid, err := readKey(c.home)
	if err != nil {
		return err
	}
	id, err := cl.Identity(ctx)
	if err != nil {
		return c.apiError(addr, err)
	}
	if id.PeerID != pid {
		return fmt.Errorf("the daemon at %s is node %s, but the key in home %s is node %s: back up a home while its own daemon runs",
			addr, id.PeerID, c.home, pid)
	}

	dir, base := os.TempDir(), "spotmesh-backup"
	if !toStdout {
		dir, base = filepath.Dir(*out), filepath.Base(*out)
		if fi, err := os.Stat(*out); err == nil && fi.IsDir() {
			return fmt.Errorf("-o %s is a directory: name a file in it, like %s", *out, filepath.Join(*out, "node.bak"))
		}
	}
	// The database goes to a file first: the archive's header needs its
	// length before its bytes.
	dbf, err := os.CreateTemp(dir, base+".db-*.tmp")
	if err != nil {
		return fmt.Errorf("create a temporary file beside %s: %w", *out, err)
	}
	defer os.Remove(dbf.Name())
	defer dbf.Close()
	h := sha256.New()
	var n countWriter
	if err := cl.Backup(ctx, io.MultiWriter(dbf, h, &n)); err != nil {
		if n.n > 0 && errors.Is(err, api.ErrUnreachable) {
			return fmt.Errorf("the daemon at %s broke off the backup after %d bytes (%v): nothing was written; see the daemon's log and try again", addr, n.n, err)
		}
		if errors.Is(err, api.ErrUnreachable) || errors.As(err, new(*api.Error)) {
			return c.apiError(addr, err)
		}
		return fmt.Errorf("back up the database: %w: nothing was written", err)
	}
	if _, err := dbf.Seek(0, io.SeekStart); err != nil {
		return err
	}
	m := backupManifest{
		FormatVersion:   backupFormat,
		PeerID:          pid,
		Created:         c.now().UTC().Truncate(time.Second),
		SpotmeshVersion: buildVersion().Version,
		DBBytes:         n.n,
		DBSHA256:        hex.EncodeToString(h.Sum(nil)),
	}

	db := &ctxReader{ctx: ctx, r: dbf} // Ctrl-C stops the copy too
	res := backupResult{Path: *out, PeerID: pid, Created: m.Created, DBBytes: m.DBBytes}
	if toStdout {
		var cw countWriter
		bw := bufio.NewWriterSize(io.MultiWriter(c.stdout, &cw), 256<<10)
		err := writeBackupArchive(bw, m, config, keyBytes, db)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			return fmt.Errorf("write the archive to stdout: %w", err)
		}
		res.Bytes, res.Path = cw.n, "stdout"
	} else {
		size, err := writeFileSafely(*out, func(w io.Writer) error {
			return writeBackupArchive(w, m, config, keyBytes, db)
		})
		if err != nil {
			return err
		}
		res.Bytes = size
	}
	fmt.Fprintf(c.stderr, "spotmesh backup: wrote %d bytes (%s) to %s: node %s, database %s; it holds the node's private key, keep it safe\n",
		res.Bytes, protocol.FormatSize(uint64(res.Bytes)), res.Path, pid, protocol.FormatSize(uint64(m.DBBytes)))
	if c.json {
		return c.printJSON(res)
	}
	return nil
}

// readKey reads the key file of a home and the peer ID it is.
func readKey(home string) ([]byte, peer.ID, error) {
	b, err := os.ReadFile(filepath.Join(home, node.KeyFile))
	if err != nil {
		return nil, "", fmt.Errorf("read the home's key: %w", err)
	}
	pid, err := peerOfKey(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", filepath.Join(home, node.KeyFile), err)
	}
	return b, pid, nil
}

func peerOfKey(b []byte) (peer.ID, error) {
	k, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return "", fmt.Errorf("not a private key: %w", err)
	}
	return peer.IDFromPrivateKey(k)
}

// writeFileSafely writes a file of mode 0600 through write: into a
// temporary file beside path, synced, then renamed over path, so that a
// failure leaves no half file. It returns the file's length.
func writeFileSafely(path string, write func(io.Writer) error) (int64, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp") // 0600
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var cw countWriter
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, &cw), 256<<10)
	if err := write(bw); err != nil {
		return 0, fmt.Errorf("write %s: %w: nothing was written", path, err)
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("write %s: %w: nothing was written", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("write %s: %w: nothing was written", path, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("write %s: %w: nothing was written", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("write %s: %w: nothing was written", path, err)
	}
	done = true
	return cw.n, syncDir(dir)
}

// syncDir makes a directory's entries (a rename) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// writeBackupArchive writes the archive: the manifest, config.toml, key
// and db.backup, which must hold m.DBBytes bytes.
func writeBackupArchive(w io.Writer, m backupManifest, config, key []byte, db io.Reader) error {
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	mb = append(mb, '\n')
	tw := tar.NewWriter(w)
	add := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: size, ModTime: m.Created}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("%s: %d bytes, want %d", name, n, size)
		}
		return nil
	}
	for _, e := range []struct {
		name string
		size int64
		r    io.Reader
	}{
		{manifestEntry, int64(len(mb)), bytes.NewReader(mb)},
		{node.ConfigFile, int64(len(config)), bytes.NewReader(config)},
		{node.KeyFile, int64(len(key)), bytes.NewReader(key)},
		{dbEntry, m.DBBytes, db},
	} {
		if err := add(e.name, e.size, e.r); err != nil {
			return err
		}
	}
	return tw.Close()
}

// countWriter counts the bytes written to it.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// cmdRestore makes a new home, c.home, from a backup.
func cmdRestore(ctx context.Context, c *cli, args []string) error {
	pos, err := newFlags("restore").parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one backup file, as in 'spotmesh --home NEWHOME restore node.bak'")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	file, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("open the backup: %w", err)
	}
	defer file.Close()
	m, err := restoreHome(&ctxReader{ctx: ctx, r: file}, c.home)
	if err != nil {
		var he homeError
		if errors.As(err, &he) {
			return err
		}
		return fmt.Errorf("%s: %w; nothing was written to %s", pos[0], err, c.home)
	}
	if c.json {
		return c.printJSON(restoreResult{Home: c.home, PeerID: m.PeerID, Created: m.Created, SpotmeshVersion: m.SpotmeshVersion, DBBytes: m.DBBytes})
	}
	fmt.Fprintf(c.stdout, "restored node %s into %s from a backup made %s by spotmesh %s (database %s)\n",
		m.PeerID, c.home, m.Created.Format(time.RFC3339), m.SpotmeshVersion, protocol.FormatSize(uint64(m.DBBytes)))
	fmt.Fprintf(c.stdout, "the home has a new API token; run only one home of this node at a time, as both hold its key\n")
	fmt.Fprintf(c.stdout, "start the node with: spotmesh run --home %s\n", c.home)
	return nil
}

// homeError is a home restore refuses to write into.
type homeError struct{ err error }

func (e homeError) Error() string { return e.err.Error() }
func (e homeError) Unwrap() error { return e.err }

// errBadBackup is the kind of every error about the archive itself: not a
// backup, damaged, cut short, or of an unknown format.
var errBadBackup = errors.New("bad backup")

// badBackupError is an error of kind errBadBackup, in its own words.
type badBackupError struct{ err error }

func (e badBackupError) Error() string        { return e.err.Error() }
func (e badBackupError) Unwrap() error        { return e.err }
func (e badBackupError) Is(target error) bool { return target == errBadBackup }

func badBackup(format string, args ...any) error {
	return badBackupError{fmt.Errorf(format, args...)}
}

// checkNewHome refuses a home that exists and is not an empty directory:
// a restore never mixes with, or overwrites, a node.
func checkNewHome(home string) error {
	fi, err := os.Stat(home)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return homeError{fmt.Errorf("home %s: %w", home, err)}
	}
	if !fi.IsDir() {
		return homeError{fmt.Errorf("home %s exists and is not a directory: restore into a new home, one that does not exist or is empty", home)}
	}
	entries, err := os.ReadDir(home)
	if err != nil {
		return homeError{fmt.Errorf("home %s: %w", home, err)}
	}
	if len(entries) > 0 {
		return homeError{fmt.Errorf("home %s is not empty: restore into a new home, one that does not exist or is empty; restore never overwrites a node", home)}
	}
	return nil
}

// restoreHome makes the home at home from the archive r. It builds the
// home in a temporary directory beside it and renames that into place
// once the whole archive has been read and checked, so that a failure
// leaves nothing behind.
func restoreHome(r io.Reader, home string) (backupManifest, error) {
	if err := checkNewHome(home); err != nil {
		return backupManifest{}, err
	}
	parent := filepath.Dir(filepath.Clean(home))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return backupManifest{}, homeError{fmt.Errorf("home %s: %w", home, err)}
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(home)+".restore-*.tmp") // 0700
	if err != nil {
		return backupManifest{}, homeError{fmt.Errorf("home %s: %w", home, err)}
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	m, config, err := readBackupArchive(r, tmp)
	if err != nil {
		return m, err
	}
	// The config must be one this spotmesh runs with.
	cfg, err := node.LoadConfig(tmp)
	if err != nil {
		return m, badBackup("its config.toml: %v", err)
	}
	// node.Init keeps the key and writes a new API token; it also writes
	// the config as it read it, which then goes back to the bytes of the
	// backup.
	cfg.Home = tmp
	id, err := node.Init(cfg)
	if err != nil {
		return m, err
	}
	if id != m.PeerID {
		return m, badBackup("its key is node %s, its manifest says %s", id, m.PeerID)
	}
	if err := writeSynced(filepath.Join(tmp, node.ConfigFile), config, os.O_TRUNC); err != nil {
		return m, err
	}
	if err := syncDir(tmp); err != nil {
		return m, err
	}
	// Go's rename does not replace a directory, even an empty one.
	removed := false
	if err := os.Remove(home); err == nil {
		removed = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return m, homeError{fmt.Errorf("home %s: %w: restore into a new home, one that does not exist or is empty", home, err)}
	}
	if err := os.Rename(tmp, home); err != nil {
		if removed {
			_ = os.Mkdir(home, 0o700)
		}
		return m, homeError{fmt.Errorf("move the restored home into %s: %w", home, err)}
	}
	done = true
	return m, syncDir(parent)
}

// readBackupArchive reads the archive r into dir: the key, the config and
// the database, checked against the manifest. It returns the manifest and
// the config's bytes.
func readBackupArchive(r io.Reader, dir string) (backupManifest, []byte, error) {
	var m backupManifest
	br := bufio.NewReaderSize(r, 64<<10)
	src := io.Reader(br)
	// A backup piped through gzip reads as well.
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return m, nil, badBackup("not a spotmesh backup: a damaged gzip file: %v", err)
		}
		defer gz.Close()
		src = gz
	}
	tr := tar.NewReader(src)
	hdr, err := tr.Next()
	switch {
	case errors.Is(err, io.EOF):
		return m, nil, badBackup("not a spotmesh backup: the file is empty")
	case err != nil:
		return m, nil, badBackup("not a spotmesh backup (a tar archive made by 'spotmesh backup'): %v", err)
	case hdr.Name != manifestEntry:
		return m, nil, badBackup("not a spotmesh backup: its first entry is %q, not %s", hdr.Name, manifestEntry)
	}
	mb, err := readEntry(tr, hdr, maxManifestBytes)
	if err != nil {
		return m, nil, err
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		return m, nil, badBackup("%s: %v", manifestEntry, err)
	}
	if m.FormatVersion != backupFormat {
		return m, nil, badBackup("backup format version %d, made by spotmesh %q: this spotmesh (%s) reads version %d; restore it with the spotmesh that made it, or a newer one",
			m.FormatVersion, m.SpotmeshVersion, buildVersion().Version, backupFormat)
	}
	if m.PeerID == "" || m.DBBytes < 0 || len(m.DBSHA256) != 2*sha256.Size {
		return m, nil, badBackup("%s lacks the peer ID or the database's length and checksum", manifestEntry)
	}

	var config, key []byte
	seen := map[string]bool{manifestEntry: true}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, nil, damaged(err)
		}
		if seen[hdr.Name] {
			return m, nil, badBackup("it holds %s twice", hdr.Name)
		}
		seen[hdr.Name] = true
		if hdr.Typeflag != tar.TypeReg {
			return m, nil, badBackup("its entry %s is not a regular file", hdr.Name)
		}
		switch hdr.Name {
		case node.ConfigFile:
			if config, err = readEntry(tr, hdr, maxConfigBytes); err != nil {
				return m, nil, err
			}
		case node.KeyFile:
			if key, err = readEntry(tr, hdr, maxKeyBytes); err != nil {
				return m, nil, err
			}
			pid, err := peerOfKey(key)
			if err != nil {
				return m, nil, badBackup("its key: %v", err)
			}
			if pid != m.PeerID {
				return m, nil, badBackup("its key is node %s, its manifest says %s", pid, m.PeerID)
			}
		case dbEntry:
			if hdr.Size != m.DBBytes {
				return m, nil, badBackup("its %s is %d bytes, its manifest says %d: the backup is damaged", dbEntry, hdr.Size, m.DBBytes)
			}
			if err := restoreDB(tr, hdr.Size, m.DBSHA256, filepath.Join(dir, node.DBDir)); err != nil {
				return m, nil, err
			}
		default:
			return m, nil, badBackup("it holds %q, which is not part of a spotmesh backup of format version %d", hdr.Name, backupFormat)
		}
	}
	for _, name := range []string{node.ConfigFile, node.KeyFile, dbEntry} {
		if !seen[name] {
			return m, nil, badBackup("%s is missing: the archive is incomplete (cut short?)", name)
		}
	}
	if err := writeSynced(filepath.Join(dir, node.KeyFile), key, os.O_EXCL); err != nil {
		return m, nil, err
	}
	if err := writeSynced(filepath.Join(dir, node.ConfigFile), config, os.O_EXCL); err != nil {
		return m, nil, err
	}
	return m, config, nil
}

// damaged explains an error reading the archive.
func damaged(err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted: %w", err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badBackup("the archive ends early: it is cut short (was it copied whole?)")
	}
	if errors.Is(err, errBadBackup) {
		return err
	}
	return badBackup("the archive is damaged: %v", err)
}

// readEntry reads an archive entry of at most limit bytes.
func readEntry(tr *tar.Reader, hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, badBackup("its %s is %d bytes, more than the %d a backup's has", hdr.Name, hdr.Size, limit)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, damaged(err)
	}
	return b, nil
}

// writeSynced writes a new 0600 file (flag os.O_EXCL) or replaces the
// bytes of one (os.O_TRUNC), and syncs it.
func writeSynced(path string, b []byte, flag int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// restoreDB makes the database in dbDir from the entry r of size bytes and
// checks it against the manifest's checksum.
func restoreDB(r io.Reader, size int64, sum, dbDir string) error {
	h := sha256.New()
	fr := &frameReader{r: io.TeeReader(r, h), left: size}
	err := store.Restore(dbDir, fr)
	if fr.err != nil {
		return damaged(fr.err)
	}
	// Whatever the database made of it, the rest of the entry goes through
	// the checksum: a mismatch says the bytes are at fault, not the disk.
	if _, cerr := io.Copy(h, r); cerr != nil {
		return damaged(cerr)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return badBackup("its %s does not match the checksum in its manifest: the backup is damaged", dbEntry)
	}
	if err != nil {
		return fmt.Errorf("restore the database: %w", err)
	}
	return nil
}

// frameReader passes badger's backup stream through and checks its
// framing as it goes: each frame is an 8-byte little-endian length and
// that many bytes. A length past the end of the entry means damaged
// bytes, which badger would otherwise try to allocate. It remembers the
// first read error other than EOF.
type frameReader struct {
	r    io.Reader
	left int64 // bytes of the entry not yet read
	hdr  [8]byte
	nhdr int   // bytes of the current length read so far
	body int64 // bytes of the current frame still to come
	err  error
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.r.Read(p)
	b := p[:n]
	for i := 0; i < len(b); {
		if f.body > 0 {
			k := min(int64(len(b)-i), f.body)
			f.body -= k
			i += int(k)
			continue
		}
		f.hdr[f.nhdr] = b[i]
		f.nhdr++
		i++
		if f.nhdr < len(f.hdr) {
			continue
		}
		f.nhdr = 0
		sz := binenc.LittleEndian.Uint64(f.hdr[:])
		if rest := f.left - int64(i); sz > uint64(rest) {
			// Hand over none of this read: the length must not reach
			// badger.
			f.err = badBackup("its %s is damaged: a record of %d bytes where %d are left", dbEntry, sz, rest)
			return 0, f.err
		}
		f.body = int64(sz)
	}
	f.left -= int64(n)
	if err != nil && err != io.EOF {
		f.err = err
	}
	return n, err
}

// ctxReader fails its reads once ctx is done (Ctrl-C).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
