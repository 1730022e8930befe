package procnet

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// spotmeshBinary builds cmd/spotmesh for the tests that boot real
// daemons; they are skipped under -short.
func spotmeshBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("boots spotmesh daemons: builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "spotmesh")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/spotmesh").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// stopAll kills, by PID, every daemon of the testnet in dir that still
// runs: the cleanup of a test that booted one.
func stopAll(t *testing.T, dir string) {
	m, err := readManifest(dir)
	if err != nil {
		return
	}
	for _, nd := range m.Nodes {
		killByPID(t, m.Binary, nd)
	}
}

func TestProcNetUpKillStartDown(t *testing.T) {
	bin := spotmeshBinary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() { stopAll(t, dir) })
	cfg := DefaultConfig(dir)
	cfg.Sellers, cfg.Buyers, cfg.Binary, cfg.Timeout = 1, 1, bin, 30*time.Second
	ctx := context.Background()
	t0 := time.Now()
	n, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up of 1 seller and 1 buyer (and boot): %v", time.Since(t0))
	m := n.Manifest()
	if len(m.Nodes) != 3 || len(m.Offers) != 2 || m.Binary != filepath.Join(dir, BinDir, BinaryName) {
		t.Fatalf("manifest: %+v", m)
	}
	// The manifest on disk is the same.
	if disk, err := readManifest(dir); err != nil || len(disk.Nodes) != 3 || disk.Nodes[2].PeerID != m.Nodes[2].PeerID || len(disk.Offers) != 2 {
		t.Fatalf("testnet.json: %+v %v", disk, err)
	}
	for _, s := range n.Status(ctx) {
		if !s.Alive || s.Note != "" || len(s.Missing) > 0 || s.Book < 2 || s.Peers < 1 {
			t.Fatalf("status after up: %+v", s)
		}
	}
	// The boot node's p2p port is pinned in its config for restarts.
	if b, err := os.ReadFile(filepath.Join(m.Nodes[0].Home, "config.toml")); err != nil || !strings.Contains(string(b), strings.Split(m.Nodes[0].Addrs[0], "/p2p/")[0]) {
		t.Fatalf("boot config: %s %v", b, err)
	}

	if _, err := Up(ctx, cfg); !errors.Is(err, ErrRunning) {
		t.Fatalf("up again: %v, want ErrRunning", err)
	}
	if _, err := n.Start(ctx, "seller-1"); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("start of a running node: %v", err)
	}
	old, err := n.Kill(ctx, "seller-1")
	if err != nil {
		t.Fatal(err)
	}
	if st := n.Status(ctx); st[1].Alive || !st[2].Alive {
		t.Fatalf("status after kill: %+v", st)
	}
	back, err := n.Start(ctx, "seller-1")
	if err != nil {
		t.Fatal(err)
	}
	if back.PeerID != old.PeerID || back.PID == old.PID || back.APIAddr == "" {
		t.Fatalf("restarted %+v, was %+v", back, old)
	}
	if st := n.Status(ctx); !st[1].Alive || st[1].Offers != 2 {
		t.Fatalf("status after start: %+v", st[1])
	}
	// A restarted boot node comes back at its address and dials the
	// live nodes, which would not redial it.
	if _, err := n.Kill(ctx, "boot"); err != nil {
		t.Fatal(err)
	}
	boot, err := n.Start(ctx, "boot")
	if err != nil {
		t.Fatal(err)
	}
	if boot.Addrs[0] != m.Nodes[0].Addrs[0] {
		t.Fatalf("boot came back at %v, was at %v", boot.Addrs, m.Nodes[0].Addrs)
	}
	if st := n.Status(ctx); st[0].Peers != 2 {
		t.Fatalf("restarted boot has %d peers, want 2", st[0].Peers)
	}

	res, err := n.Down(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != Stopped {
			t.Errorf("%s: %s %s, want stopped by SIGTERM", r.Name, r.Outcome, r.Detail)
		}
	}
	for _, nd := range n.Manifest().Nodes {
		if st, err := readStat(nd.PID); err == nil && !st.ended() && st.start == nd.StartTime {
			t.Errorf("%s: pid %d runs after down", nd.Name, nd.PID)
		}
	}
}

// A daemon that dies as it starts fails up with the end of its log, and
// up stops the rest.
func TestProcNetUpReportsADaemonThatDies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	t.Cleanup(func() { stopAll(t, dir) })
	fake := filepath.Join(t.TempDir(), "spotmesh")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'spotmesh: cannot run: out of luck' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(dir)
	cfg.Binary, cfg.Timeout = fake, 10*time.Second
	_, err := Up(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "out of luck") || !strings.Contains(err.Error(), "boot") {
		t.Fatalf("up with a daemon that dies: %v", err)
	}
	t.Logf("up with a daemon that dies:\n%v", err)
}
