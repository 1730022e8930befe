package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
)

// stop stops the daemon with SIGTERM, by its PID, and waits for a clean
// exit.
func (p *sellerProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop the daemon: %v", err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("daemon exit on SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon still running 30s after SIGTERM")
	}
}

// TestBackupRestoreThroughCLI: a backup of a running node, restored into
// a new home, is the same node with the same offers and deny list.
func TestBackupRestoreThroughCLI(t *testing.T) {
	binary(t) // skips under -short
	dir := t.TempDir()
	a, a2 := filepath.Join(dir, "A"), filepath.Join(dir, "A2")
	mustCLI(t, "init", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0")
	procA := startSeller(t, a, "daemon.log")
	var idA api.IDResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "id", "--home", a, "--json")), &idA); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "--home", a, "offer", "add", "--profile", "c4m8", "--vcpu", "4", "--mem", "8GiB",
		"--disk", "40GiB", "--slots", "10", "--price", "0.04USD/h", "--region", "eu-de", "--max", "72h",
		"--key", "web-1")
	const buyer = "12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"
	mustCLI(t, "--home", a, "deny", "add", buyer, "--note", "never paid")

	// The backup, while A runs.
	bak := filepath.Join(dir, "a.bak")
	mustCLI(t, "--home", a, "backup", "-o", bak)
	if fi, err := os.Stat(bak); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", err, fi)
	}
	procA.stop(t)

	// With A stopped, a backup finds no node (exit 3) and writes nothing.
	_, err := runCLI(t, "--home", a, "backup", "-o", filepath.Join(dir, "late.bak"))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUnreachable {
		t.Errorf("backup of a stopped node: %v, want exit 3", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "late.bak")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed backup left a file: %v", err)
	}

	mustCLI(t, "--home", a2, "restore", bak)
	if tokA, _ := node.ReadToken(a); tokA == "" || func() bool { t2, _ := node.ReadToken(a2); return t2 == tokA }() {
		t.Error("the restored home has the old API token")
	}
	daemon(t, a2)

	var id2 api.IDResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "id", "--home", a2, "--json")), &id2); err != nil {
		t.Fatal(err)
	}
	if id2.PeerID != idA.PeerID {
		t.Errorf("restored node is %s, want %s", id2.PeerID, idA.PeerID)
	}
	var ls api.OffersResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", a2, "offer", "ls", "--json")), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Offers) != 1 || ls.Offers[0].Key != "web-1" || ls.Offers[0].Withdrawn ||
		ls.Offers[0].Spec.Hardware.VCPU != 4 || ls.Offers[0].Spec.Price.Micro != 40000 {
		t.Errorf("restored node's offers: %+v", ls.Offers)
	}
	var denied api.DeniedResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", a2, "deny", "ls", "--json")), &denied); err != nil {
		t.Fatal(err)
	}
	if len(denied.Denied) != 1 || denied.Denied[0].Peer.String() != buyer || denied.Denied[0].Note != "never paid" {
		t.Errorf("restored node's deny list: %+v", denied.Denied)
	}
}
