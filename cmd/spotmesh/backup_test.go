package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	binenc "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/store"
)

// testDB makes a real database backup holding n records, and returns it
// with the records.
func testDB(t *testing.T, n int) ([]byte, map[string]string) {
	t.Helper()
	db, err := store.Open(store.DefaultOptions(filepath.Join(t.TempDir(), "db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]string{}
	err = db.Update(func(tx *store.Txn) error {
		for i := range n {
			k, v := fmt.Sprintf("v1/ledger/%04d", i), strings.Repeat("r", i%300)
			want[k] = v
			if err := tx.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := db.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), want
}

// readDB reads every record of the database in dir.
func readDB(t *testing.T, dir string) map[string]string {
	t.Helper()
	db, err := store.Open(store.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := map[string]string{}
	err = db.View(func(tx *store.Txn) error {
		return tx.Iterate([]byte("v1/"), func(k, v []byte) error {
			got[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// homeKey reads a home's key and its peer ID.
func homeKey(t *testing.T, home string) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, err := node.LoadKey(home)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// backupHome makes a home whose fake daemon is the home's node and
// serves dbBackup as its database.
func backupHome(t *testing.T, dbBackup []byte) (string, *apitest.Fake) {
	t.Helper()
	home := newHome(t)
	f, _ := serveHome(t, home)
	f.Key, f.ID = homeKey(t, home)
	f.SetBackup(dbBackup, nil)
	return home, f
}

// onlyFiles fails unless dir holds exactly the names given.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	dbBackup, records := testDB(t, 500)
	home, _ := backupHome(t, dbBackup)
	_, id := homeKey(t, home)
	out := t.TempDir()
	bak := filepath.Join(out, "a.bak")

	r := spotmesh(t, nil, "--home", home, "backup", "-o", bak, "--json")
	if r.code != 0 {
		t.Fatalf("backup: exit %d: %s", r.code, r.stderr)
	}
	fi, err := os.Stat(bak)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", fi.Mode().Perm())
	}
	onlyFiles(t, out, "a.bak")
	if !strings.Contains(r.stderr, fmt.Sprintf("wrote %d bytes", fi.Size())) || !strings.Contains(r.stderr, bak) || !strings.Contains(r.stderr, "private key") {
		t.Errorf("backup summary: %q", r.stderr)
	}
	if n := strings.Count(r.stderr, "\n"); n != 1 {
		t.Errorf("backup summary is %d lines, want 1: %q", n, r.stderr)
	}
	var res backupResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Bytes != fi.Size() || res.PeerID != id || res.DBBytes != int64(len(dbBackup)) || !res.Created.Equal(testNow) {
		t.Errorf("backup --json: %v %+v", err, res)
	}

	// The archive: the manifest first, then config, key and database.
	m, entries := readArchive(t, bak)
	if want := []string{manifestEntry, node.ConfigFile, node.KeyFile, dbEntry}; !slices.Equal(entries.names, want) {
		t.Errorf("archive entries %v, want %v", entries.names, want)
	}
	sum := sha256.Sum256(dbBackup)
	if m.FormatVersion != 1 || m.PeerID != id || !m.Created.Equal(testNow) || m.Created.Location() != time.UTC ||
		m.SpotmeshVersion == "" || m.DBBytes != int64(len(dbBackup)) || m.DBSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest %+v", m)
	}
	if !strings.Contains(string(entries.data[manifestEntry]), `"created": "2026-03-01T12:01:00Z"`) {
		t.Errorf("manifest's time is not RFC 3339 UTC:\n%s", entries.data[manifestEntry])
	}
	if entries.modes[node.KeyFile] != 0o600 {
		t.Errorf("key mode in the archive %o, want 0600", entries.modes[node.KeyFile])
	}

	// Restore into a home that does not exist, below a directory that
	// does not either.
	home2 := filepath.Join(t.TempDir(), "new", "A2")
	r = spotmesh(t, nil, "--home", home2, "restore", bak)
	if r.code != 0 {
		t.Fatalf("restore: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "restored node "+id.String()) || !strings.Contains(r.stdout, "spotmesh run --home "+home2) {
		t.Errorf("restore says %q", r.stdout)
	}
	onlyFiles(t, filepath.Dir(home2), "A2")
	for _, name := range []string{node.KeyFile, node.ConfigFile} {
		a, _ := os.ReadFile(filepath.Join(home, name))
		b, err := os.ReadFile(filepath.Join(home2, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("restored %s differs from the original: %v", name, err)
		}
	}
	for _, name := range []string{".", node.KeyFile, node.TokenFile, node.ConfigFile} {
		fi, err := os.Stat(filepath.Join(home2, name))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if name == "." {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("restored %s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	tok1, _ := node.ReadToken(home)
	tok2, err := node.ReadToken(home2)
	if err != nil || len(tok2) < 32 || tok1 == tok2 {
		t.Errorf("restored token %q (%v): want a new one", tok2, err)
	}
	if _, err := node.LoadConfig(home2); err != nil {
		t.Errorf("restored config: %v", err)
	}
	if _, id2 := homeKey(t, home2); id2 != id {
		t.Errorf("restored home is node %s, want %s", id2, id)
	}
	if got := readDB(t, filepath.Join(home2, node.DBDir)); len(got) != len(records) || fmt.Sprint(got) != fmt.Sprint(records) {
		t.Errorf("restored database holds %d records, want %d", len(got), len(records))
	}

	// Restoring again into the same home is refused, and changes nothing.
	before, _ := os.ReadFile(filepath.Join(home2, node.TokenFile))
	r = spotmesh(t, nil, "--home", home2, "restore", bak)
	if r.code != exitFailed || !strings.Contains(r.stderr, "home "+home2+" is not empty") {
		t.Errorf("restore over a home: exit %d: %s", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(home2, node.TokenFile)); !bytes.Equal(before, after) {
		t.Error("a refused restore changed the home")
	}

	// Into an empty directory, with --json.
	home3 := t.TempDir()
	r = spotmesh(t, nil, "--home", home3, "restore", bak, "--json")
	var rr restoreResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rr) != nil || rr.PeerID != id || rr.Home != home3 || rr.DBBytes != int64(len(dbBackup)) {
		t.Fatalf("restore into an empty directory --json: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if got := readDB(t, filepath.Join(home3, node.DBDir)); len(got) != len(records) {
		t.Errorf("restored database holds %d records, want %d", len(got), len(records))
	}

	// A backup gzipped on its way reads as well.
	gzPath := filepath.Join(out, "a.bak.gz")
	raw, _ := os.ReadFile(bak)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(gzPath, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := spotmesh(t, nil, "--home", filepath.Join(t.TempDir(), "gz"), "restore", gzPath); r.code != 0 {
		t.Errorf("restore of a gzipped backup: exit %d: %s", r.code, r.stderr)
	}
}

type archiveEntries struct {
	names []string
	data  map[string][]byte
	modes map[string]int64
}

func readArchive(t *testing.T, path string) (backupManifest, archiveEntries) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := archiveEntries{data: map[string][]byte{}, modes: map[string]int64{}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e.names = append(e.names, hdr.Name)
		e.data[hdr.Name] = b
		e.modes[hdr.Name] = hdr.Mode
	}
	var m backupManifest
	if err := json.Unmarshal(e.data[manifestEntry], &m); err != nil {
		t.Fatal(err)
	}
	return m, e
}

func TestBackupToStdout(t *testing.T) {
	dbBackup, _ := testDB(t, 20)
	home, _ := backupHome(t, dbBackup)
	r := spotmesh(t, nil, "--home", home, "backup", "-o", "-")
	if r.code != 0 {
		t.Fatalf("backup -o -: exit %d: %s", r.code, r.stderr)
	}
	bak := filepath.Join(t.TempDir(), "stdout.bak")
	if err := os.WriteFile(bak, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	m, e := readArchive(t, bak)
	if !bytes.Equal(e.data[dbEntry], dbBackup) || m.DBBytes != int64(len(dbBackup)) {
		t.Errorf("archive on stdout: db.backup of %d bytes, want %d", len(e.data[dbEntry]), len(dbBackup))
	}
	if !strings.Contains(r.stderr, "to stdout") {
		t.Errorf("summary %q", r.stderr)
	}
}

func TestBackupRefuses(t *testing.T) {
	dbBackup, _ := testDB(t, 20)
	home, f := backupHome(t, dbBackup)
	down := newHome(t) // no daemon
	other := newHome(t)
	serveHome(t, other) // a daemon of another node: the fake's own key
	for _, tc := range []struct {
		name  string
		setup func()
		args  []string
		code  int
		says  string
	}{
		{name: "no -o", args: []string{"--home", home, "backup"}, code: exitUsage, says: "-o FILE is required"},
		{name: "an argument", args: []string{"--home", home, "backup", "-o", "x", "y"}, code: exitUsage, says: "unexpected argument"},
		{name: "--json to stdout", args: []string{"--home", home, "backup", "-o", "-", "--json"}, code: exitUsage, says: "stdout carries the archive"},
		{name: "no daemon", args: []string{"--home", down, "backup", "-o", "OUT"}, code: exitUnreachable, says: "no spotmesh daemon is running for home " + down},
		{name: "another node's daemon", args: []string{"--home", other, "backup", "-o", "OUT"}, code: exitFailed, says: "but the key in home"},
		{name: "fails before the first byte", setup: func() { f.SetBackup(nil, store.ErrClosed) },
			args: []string{"--home", home, "backup", "-o", "OUT"}, code: exitFailed, says: "the node is stopping"},
		{name: "broken off", setup: func() { f.SetBackup(bytes.Repeat([]byte("x"), 1<<20), errors.New("disk on fire")) },
			args: []string{"--home", home, "backup", "-o", "OUT"}, code: exitFailed, says: "broke off the backup after"},
		{name: "into a directory", setup: func() { f.SetBackup(dbBackup, nil) },
			args: []string{"--home", home, "backup", "-o", "DIR"}, code: exitFailed, says: "is a directory"},
		{name: "into a missing directory",
			args: []string{"--home", home, "backup", "-o", "DIR/no/such/a.bak"}, code: exitFailed, says: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			dir := t.TempDir()
			args := slices.Clone(tc.args)
			for i, a := range args {
				args[i] = strings.NewReplacer("OUT", filepath.Join(dir, "a.bak"), "DIR", dir).Replace(a)
			}
			r := spotmesh(t, nil, args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.says)
			}
			onlyFiles(t, dir) // no backup, no temporary files
		})
	}
}

// archive builds a backup archive from parts, for the restore tests.
type archive struct {
	m       backupManifest
	rawMan  []byte // replaces the manifest's JSON when set
	entries []entry
}

type entry struct {
	name string
	data []byte
	typ  byte
}

func (a archive) bytes(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mb := a.rawMan
	if mb == nil {
		var err error
		if mb, err = json.Marshal(a.m); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range append([]entry{{name: manifestEntry, data: mb}}, a.entries...) {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o600, Size: int64(len(e.data))}
		if typ != tar.TypeReg {
			hdr.Size = 0
			hdr.Linkname = "x"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(e.data)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// goodArchive is a well-formed archive of a fresh node.
func goodArchive(t *testing.T) (archive, []byte) {
	t.Helper()
	home := newHome(t)
	config, _ := os.ReadFile(filepath.Join(home, node.ConfigFile))
	key, _ := os.ReadFile(filepath.Join(home, node.KeyFile))
	_, id := homeKey(t, home)
	db, _ := testDB(t, 50)
	sum := sha256.Sum256(db)
	a := archive{
		m: backupManifest{FormatVersion: 1, PeerID: id, Created: testNow, SpotmeshVersion: "test", DBBytes: int64(len(db)), DBSHA256: hex.EncodeToString(sum[:])},
		entries: []entry{
			{name: node.ConfigFile, data: config},
			{name: node.KeyFile, data: key},
			{name: dbEntry, data: db},
		},
	}
	return a, a.bytes(t)
}

func TestRestoreRefusesBadArchives(t *testing.T) {
	good, raw := goodArchive(t)
	with := func(change func(a *archive)) []byte {
		a := good
		a.entries = slices.Clone(good.entries)
		change(&a)
		return a.bytes(t)
	}
	without := func(name string) []byte {
		return with(func(a *archive) {
			a.entries = slices.DeleteFunc(a.entries, func(e entry) bool { return e.name == name })
		})
	}
	db := good.entries[2].data
	otherKey, _ := apitest.NewKey(t)
	otherKeyBytes, _ := crypto.MarshalPrivateKey(otherKey)
	// A database whose first record claims more bytes than there are,
	// with a checksum to match, so that only the framing check stops it.
	badFrame := slices.Clone(db)
	binenc.LittleEndian.PutUint64(badFrame, 1<<40)
	badSum := sha256.Sum256(badFrame)
	// The offset of the database's bytes in the good archive.
	dbAt := int64(bytes.Index(raw, db))
	if dbAt < 0 {
		t.Fatal("no database in the archive")
	}

	for _, tc := range []struct {
		name string
		data []byte
		says string
	}{
		{"empty file", nil, "the file is empty"},
		{"not a tar", []byte(strings.Repeat("this is not a backup\n", 100)), "not a spotmesh backup"},
		{"first entry not the manifest", func() []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "README", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644})
			tw.Write([]byte("hi"))
			tw.Close()
			return buf.Bytes()
		}(), `its first entry is "README"`},
		{"manifest not JSON", with(func(a *archive) { a.rawMan = []byte("{format") }), manifestEntry},
		{"unknown format version", with(func(a *archive) { a.m.FormatVersion = 2; a.m.SpotmeshVersion = "v9.0.0" }), "backup format version 2, made by spotmesh \"v9.0.0\""},
		{"manifest without checksum", with(func(a *archive) { a.m.DBSHA256 = "" }), "lacks the peer ID or the database's length and checksum"},
		{"no config", without(node.ConfigFile), "config.toml is missing"},
		{"no key", without(node.KeyFile), "key is missing"},
		{"no database", without(dbEntry), "db.backup is missing"},
		{"cut in the manifest", raw[:600], "ends early"},
		{"cut in the database", raw[:dbAt+int64(len(db))/2], "ends early"},
		{"cut before the database", raw[:dbAt-512], "db.backup is missing"},
		{"cut in a header", raw[:dbAt-300], "ends early"},
		{"database changed", func() []byte {
			b := slices.Clone(raw)
			b[dbAt+int64(len(db))-3] ^= 0xff
			return b
		}(), "does not match the checksum"},
		{"database length differs", with(func(a *archive) { a.m.DBBytes++ }), "its manifest says"},
		{"damaged record length", with(func(a *archive) {
			a.entries[2].data = badFrame
			a.m.DBSHA256 = hex.EncodeToString(badSum[:])
		}), "db.backup is damaged: a record of 1099511627776 bytes"},
		{"another node's key", with(func(a *archive) { a.entries[1].data = otherKeyBytes }), "its key is node"},
		{"a key that is not one", with(func(a *archive) { a.entries[1].data = []byte("secret") }), "its key: not a private key"},
		{"a bad config", with(func(a *archive) { a.entries[0].data = []byte("dht_mode = \"sideways\"\n") }), "its config.toml"},
		{"an entry twice", with(func(a *archive) { a.entries = append(a.entries[:1], a.entries...) }), "holds config.toml twice"},
		{"an unknown entry", with(func(a *archive) { a.entries = append(a.entries, entry{name: "extra", data: []byte("x")}) }), `it holds "extra"`},
		{"a link", with(func(a *archive) { a.entries[1] = entry{name: node.KeyFile, typ: tar.TypeSymlink} }), "not a regular file"},
		{"a huge config", with(func(a *archive) { a.entries[0].data = make([]byte, maxConfigBytes+1) }), "more than the"},
		{"damaged gzip", append([]byte{0x1f, 0x8b}, raw[:100]...), "damaged gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bak := filepath.Join(dir, "a.bak")
			if err := os.WriteFile(bak, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			home := filepath.Join(dir, "A2")
			r := spotmesh(t, nil, "--home", home, "restore", bak)
			if r.code != exitFailed || !strings.Contains(r.stderr, tc.says) || !strings.Contains(r.stderr, "nothing was written to "+home) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, tc.says)
			}
			onlyFiles(t, dir, "a.bak") // no home, no temporary directory
		})
	}

	// The good one restores: the cases above fail for their own reasons.
	dir := t.TempDir()
	bak := filepath.Join(dir, "a.bak")
	os.WriteFile(bak, raw, 0o600)
	if r := spotmesh(t, nil, "--home", filepath.Join(dir, "A2"), "restore", bak); r.code != 0 {
		t.Fatalf("good archive: exit %d: %s", r.code, r.stderr)
	}
}

func TestRestoreRefusesHome(t *testing.T) {
	_, raw := goodArchive(t)
	dir := t.TempDir()
	bak := filepath.Join(dir, "a.bak")
	if err := os.WriteFile(bak, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	nonEmpty := filepath.Join(dir, "full")
	os.Mkdir(nonEmpty, 0o700)
	os.WriteFile(filepath.Join(nonEmpty, "notes.txt"), []byte("mine"), 0o600)
	existing := newHome(t)
	for _, tc := range []struct {
		name, home, says string
		code             int
	}{
		{"a non-empty directory", nonEmpty, "home " + nonEmpty + " is not empty: restore into a new home", exitFailed},
		{"an existing home", existing, "home " + existing + " is not empty", exitFailed},
		{"a file", bak, "exists and is not a directory", exitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, tc.home)
			r := spotmesh(t, nil, "--home", tc.home, "restore", bak)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.says)
			}
			if after := snapshot(t, tc.home); after != before {
				t.Errorf("a refused restore changed %s", tc.home)
			}
		})
	}
	onlyFiles(t, dir, "a.bak", "full")
	for _, args := range [][]string{{"restore"}, {"restore", "a", "b"}} {
		if r := spotmesh(t, nil, append([]string{"--home", filepath.Join(dir, "x")}, args...)...); r.code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
	if r := spotmesh(t, nil, "--home", filepath.Join(dir, "x"), "restore", filepath.Join(dir, "nope.bak")); r.code != exitFailed || !strings.Contains(r.stderr, "open the backup") {
		t.Errorf("missing file: exit %d %s", r.code, r.stderr)
	}
}

// snapshot lists a path's files and their contents.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "%s %x\n", p, sha256.Sum256(data))
		return nil
	})
	return b.String()
}

func TestFrameReader(t *testing.T) {
	frame := func(body string) []byte {
		b := binenc.LittleEndian.AppendUint64(nil, uint64(len(body)))
		return append(b, body...)
	}
	good := slices.Concat(frame("hello"), frame(""), frame(strings.Repeat("x", 1000)))
	long := slices.Concat(frame("hello"), binenc.LittleEndian.AppendUint64(nil, 9), []byte("short"))
	for _, tc := range []struct {
		name  string
		data  []byte
		chunk int
		bad   bool
	}{
		{"good, whole", good, 1 << 20, false},
		{"good, byte by byte", good, 1, false},
		{"good, in threes", good, 3, false},
		{"length past the end", long, 1 << 20, true},
		{"length past the end, byte by byte", long, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := &frameReader{r: &chunkReader{b: tc.data, n: tc.chunk}, left: int64(len(tc.data))}
			got, err := io.ReadAll(fr)
			if tc.bad {
				if !errors.Is(err, errBadBackup) {
					t.Fatalf("err = %v, want a bad backup", err)
				}
				// The bad length never gets through whole.
				if len(got) >= len(frame("hello"))+8 {
					t.Errorf("passed %d bytes, including the bad length", len(got))
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("err %v, passed %d of %d bytes", err, len(got), len(tc.data))
			}
		})
	}
}

// chunkReader reads b at most n bytes at a time.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestBackupHelp(t *testing.T) {
	for _, args := range [][]string{{"help", "backup"}, {"backup", "-h"}} {
		r := spotmesh(t, nil, args...)
		for _, says := range []string{"-o FILE", "private key", "0600"} {
			if r.code != 0 || !strings.Contains(r.stdout, says) {
				t.Errorf("%v: exit %d, does not say %q:\n%s", args, r.code, says, r.stdout)
			}
		}
	}
	if r := spotmesh(t, nil, "help", "restore"); r.code != 0 || !strings.Contains(r.stdout, "absent or empty") {
		t.Errorf("help restore: exit %d:\n%s", r.code, r.stdout)
	}
}
