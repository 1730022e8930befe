package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
)

// e2eApplianceSize is the size of the appliance of the round trip: 256
// MiB, 16 MiB under the race detector or -short, or
// SPOTMESH_E2E_APPLIANCE_MIB MiB.
func e2eApplianceSize() int64 {
	if v, err := strconv.ParseInt(os.Getenv("SPOTMESH_E2E_APPLIANCE_MIB"), 10, 64); err == nil && v > 0 {
		return v << 20
	}
	if raceEnabled || testing.Short() {
		return 16 << 20
	}
	return 256 << 20
}

// writeRandomFile writes n bytes of a pseudo-random stream to path and
// returns their SHA-256.
func writeRandomFile(t *testing.T, path string, n int64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{'e', '2', 'e'}), n); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func fileSum(t *testing.T, path string) ([32]byte, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, n
}

func lsOf(t *testing.T, home string) []api.Appliance {
	t.Helper()
	var r api.AppliancesResponse
	out := mustCLI(t, "--home", home, "appliance", "ls", "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("appliance ls --json: %v\n%s", err, out)
	}
	return r.Appliances
}

// gatewayGet asks a home's gateway for a range of /ipfs/<cid>.
func gatewayGet(t *testing.T, home, cid, rng string) (int, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, node.GatewayFile))
	if err != nil {
		t.Fatalf("the daemon wrote no gateway address: %v", err)
	}
	req, err := http.NewRequest("GET", "http://"+strings.TrimSpace(string(b))+"/ipfs/"+cid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// cliOutput runs the CLI and returns its stdout and stderr; it fails the
// test unless the command exits 0.
func cliOutput(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("spotmesh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// TestApplianceRoundTripThroughCLI: a file added on daemon B and fetched
// on daemon A through the CLI, from B's address, is byte-identical; A's
// gateway serves it, ranges included; rm and gc free it.
func TestApplianceRoundTripThroughCLI(t *testing.T) {
	binary(t) // skips under -short
	size := e2eApplianceSize()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "A"), filepath.Join(dir, "B")
	for _, h := range []string{a, b} {
		mustCLI(t, "init", "--home", h, "--listen", "/ip4/127.0.0.1/tcp/0")
		daemon(t, h)
	}
	var idB api.IDResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", b, "id", "--json")), &idB); err != nil || len(idB.Addrs) == 0 {
		t.Fatalf("id of B: %v %+v", err, idB)
	}

	file := filepath.Join(dir, "web.qcow2")
	start := time.Now()
	sum := writeRandomFile(t, file, size)
	t.Logf("wrote %d MiB in %v", size>>20, time.Since(start).Round(time.Millisecond))

	// B adds it.
	start = time.Now()
	stdout, stderr := cliOutput(t, "--home", b, "appliance", "add", file, "--json")
	took := time.Since(start)
	t.Logf("add: %d MiB in %v (%.0f MiB/s); the CLI said: %s", size>>20, took.Round(time.Millisecond), float64(size>>20)/took.Seconds(), strings.TrimSpace(stderr))
	var added api.Appliance
	if err := json.Unmarshal([]byte(stdout), &added); err != nil {
		t.Fatal(err)
	}
	if added.Size != uint64(size) || added.Name != "web.qcow2" || added.Format != "qcow2" || !added.Pinned {
		t.Fatalf("added %+v", added)
	}
	if ls := lsOf(t, b); len(ls) != 1 || ls[0].CID != added.CID || ls[0].Size != uint64(size) || !ls[0].Pinned || ls[0].Name != "web.qcow2" {
		t.Fatalf("B's ls: %+v", ls)
	}

	// A gets it from B, then writes it into a file: the same bytes.
	start = time.Now()
	stdout, stderr = cliOutput(t, "--home", a, "appliance", "get", added.CID, "--from", idB.Addrs[0])
	took = time.Since(start)
	t.Logf("get (fetch from B): %d MiB in %v (%.0f MiB/s); the CLI said: %s", size>>20, took.Round(time.Millisecond), float64(size>>20)/took.Seconds(), strings.TrimSpace(stderr))
	if want := "pinned " + added.CID; !strings.HasPrefix(stdout, want) {
		t.Errorf("get: stdout %q, want %q", stdout, want)
	}
	out := filepath.Join(dir, "copy.qcow2")
	start = time.Now()
	_, stderr = cliOutput(t, "--home", a, "appliance", "get", added.CID, "-o", out)
	took = time.Since(start)
	t.Logf("get -o (already here: write): %d MiB in %v (%.0f MiB/s); the CLI said: %s", size>>20, took.Round(time.Millisecond), float64(size>>20)/took.Seconds(), strings.ReplaceAll(strings.TrimSpace(stderr), "\n", "; "))
	gotSum, n := fileSum(t, out)
	if n != size || gotSum != sum {
		t.Fatalf("the copy has %d bytes, sha256 %x; the original %d bytes, sha256 %x", n, gotSum, size, sum)
	}
	ls := lsOf(t, a)
	if len(ls) != 1 || ls[0].CID != added.CID || ls[0].Size != uint64(size) || !ls[0].Pinned || strings.Join(ls[0].Pins, ",") != "get" {
		t.Fatalf("A's ls: %+v", ls)
	}

	// A's gateway serves the pinned appliance, ranges too.
	orig, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	for _, r := range []struct{ from, to int64 }{{0, 99}, {1<<20 - 10, 1<<20 + 9}, {size/2 + 3, size/2 + 70000}, {size - 17, size - 1}} {
		status, body := gatewayGet(t, a, added.CID, fmt.Sprintf("bytes=%d-%d", r.from, r.to))
		want := make([]byte, r.to-r.from+1)
		if _, err := orig.ReadAt(want, r.from); err != nil {
			t.Fatal(err)
		}
		if status != http.StatusPartialContent || !bytes.Equal(body, want) {
			t.Errorf("gateway range %d-%d: status %d, %d bytes, equal %v", r.from, r.to, status, len(body), bytes.Equal(body, want))
		}
	}

	// rm unpins (the gateway refuses it now), gc frees it.
	mustCLI(t, "--home", a, "appliance", "rm", added.CID)
	if status, _ := gatewayGet(t, a, added.CID, "bytes=0-9"); status != http.StatusForbidden {
		t.Errorf("gateway after rm: status %d, want 403", status)
	}
	var gc api.GCResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", a, "appliance", "gc", "--json")), &gc); err != nil {
		t.Fatal(err)
	}
	if gc.Freed < uint64(size) {
		t.Errorf("gc freed %d bytes, want at least %d", gc.Freed, size)
	}
	if ls := lsOf(t, a); len(ls) != 0 {
		t.Errorf("A's ls after rm and gc: %+v", ls)
	}
	if status, _ := gatewayGet(t, a, added.CID, ""); status != http.StatusNotFound {
		t.Errorf("gateway after gc: status %d, want 404", status)
	}
	if out := mustCLI(t, "--home", a, "appliance", "gc"); out != "freed 0B\n" {
		t.Errorf("gc again: %q", out)
	}
	// B still has it.
	if ls := lsOf(t, b); len(ls) != 1 || !ls[0].Pinned {
		t.Errorf("B's ls after A's gc: %+v", ls)
	}
}
