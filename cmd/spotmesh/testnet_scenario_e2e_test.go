package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// TestTestnetScenarioThroughCLI boots a testnet of 2 sellers and 1 buyer,
// runs the scenario (the market's whole cycle, with the report as JSON),
// runs it again with a timeout too short to pass (exit 1, naming the
// check), takes the testnet down, and checks by PID that no daemon and no
// instance stayed behind.
func TestTestnetScenarioThroughCLI(t *testing.T) {
	binary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	var instances []int
	t.Cleanup(func() {
		killTestnet(t, dir)
		for _, pid := range instances {
			if procAlive(pid) {
				t.Errorf("instance pid %d still runs at the end of the test: killed", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	mustCLI(t, "testnet", "up", "--dir", dir, "--sellers", "2", "--buyers", "1", "--offers", "1", "--timeout", "45s")

	t0 := time.Now()
	out, err := runCLI(t, "testnet", "scenario", "--dir", dir, "--json")
	var rep procnet.Report
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("scenario --json: %v %v\n%s", jerr, err, out)
	}
	for _, l := range rep.Leases {
		instances = append(instances, l.InstancePID)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scenario of 2 sellers and 1 buyer in %v", time.Since(t0))
	if !rep.OK || rep.Sellers != 2 || rep.Buyers != 1 || len(rep.Offers) != 2 || len(rep.Leases) != 1 || len(rep.Failed()) != 0 {
		t.Fatalf("report: %+v", rep)
	}
	l := rep.Leases[0]
	if l.Buyer != "buyer-1" || !strings.HasPrefix(l.Seller, "seller-") || l.Settlement != "settled" || l.SettlementCID == "" ||
		l.Receipts < 3 || l.Acked != l.Receipts || l.Total <= 0 || l.InstancePID <= 0 || l.ApplianceSize < 1<<20 || l.TransferRate == 0 {
		t.Fatalf("lease: %+v", l)
	}
	for _, step := range []string{procnet.StepPropagation, procnet.StepImport, procnet.StepRoundTrip, procnet.StepTransfer, procnet.StepRunning, procnet.StepSettle} {
		if s, ok := rep.Step(step); !ok || s.N == 0 || s.Max <= 0 || s.Min > s.P50 || s.P50 > s.P99 || s.P99 > s.Max {
			t.Errorf("step %q: %+v", step, s)
		}
	}
	// Both nodes hold the settlement the report names.
	for _, name := range []string{l.Buyer, l.Seller} {
		s, err := settlementOf(t, filepath.Join(dir, name), l.Lease)
		if err != nil || s.Settlement == nil || s.Settlement.CID != l.SettlementCID {
			t.Fatalf("%s's settlement of %s: %+v %v", name, l.Lease, s, err)
		}
	}
	if procAlive(l.InstancePID) {
		t.Fatalf("instance pid %d runs after its lease settled", l.InstancePID)
	}

	// A scenario that cannot pass fails loudly: exit 1, naming the check;
	// the lease it left unfinished is ended.
	cmd := exec.Command(binary(t), "testnet", "scenario", "--dir", dir, "--timeout", "2s")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "checks failed") ||
		!strings.Contains(stdout.String(), "FAILED") {
		t.Fatalf("scenario --timeout 2s: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("scenario --timeout 2s fails:\n%s", stderr.String())
	st := testnetStatusOf(t, dir)
	for name, s := range st {
		if s.OpenLeases != 0 {
			t.Errorf("%s holds %d open leases after the failed scenario", name, s.OpenLeases)
		}
	}

	m, _ := testnetPIDs(t, dir)
	out = mustCLI(t, "testnet", "down", "--dir", dir)
	if !strings.Contains(out, "4 stopped") {
		t.Fatalf("down:\n%s", out)
	}
	for _, n := range m.Nodes {
		if procAlive(n.PID) || runsNode(n.PID, m.Binary, n.Home) {
			t.Errorf("%s: pid %d runs after down", n.Name, n.PID)
		}
	}
	// Any instance the failed run started is gone too.
	for _, name := range []string{"seller-1", "seller-2"} {
		for _, pid := range instancePIDs(t, filepath.Join(dir, name)) {
			if procAlive(pid) {
				t.Errorf("%s's instance pid %d runs after down", name, pid)
			}
		}
	}
}

// instancePIDs reads the PIDs of a seller's instances from their records
// (the daemon is down).
func instancePIDs(t *testing.T, home string) []int {
	t.Helper()
	recs, _ := filepath.Glob(filepath.Join(home, "instances", "*", "instance.json"))
	var out []int
	for _, f := range recs {
		var rec struct {
			PID int `json:"pid"`
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, rec.PID)
	}
	return out
}

// TestDemoOnce runs 'spotmesh demo --once' as a newcomer would: a market
// boots, a lease goes from offer to settlement, everything stops and the
// temporary directory goes.
func TestDemoOnce(t *testing.T) {
	binary(t)
	tmp := t.TempDir()
	cmd := exec.Command(binary(t), "demo", "--once", "--sellers", "2", "--buyers", "1")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	out := stdout.String()
	// The PIDs of the node table: NAME ROLE PID API PEER ID.
	var pids []int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && (f[1] == "boot" || f[1] == "seller" || f[1] == "buyer") {
			if pid, perr := strconv.Atoi(f[2]); perr == nil {
				pids = append(pids, pid)
			}
		}
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			if procAlive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if err != nil {
		t.Fatalf("demo --once: %v\n%s\n%s", err, out, stderr.String())
	}
	t.Logf("demo --once in %v", time.Since(t0))
	for _, s := range []string{"4 nodes are up", "every node's order", "takes the best lease", "the instance answers at http://127.0.0.1:",
		"both signed the settlement (settled)", "all 10 checks passed", "Done", "4 of 4 nodes stopped"} {
		if !strings.Contains(out, s) {
			t.Errorf("demo output lacks %q", s)
		}
	}
	if len(pids) != 4 {
		t.Errorf("demo printed %d node PIDs, want 4", len(pids))
	}
	for _, pid := range pids {
		if procAlive(pid) {
			t.Errorf("node pid %d runs after demo --once", pid)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "spotmesh-demo-*")); len(left) > 0 {
		t.Errorf("demo left %v", left)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s\n%s", out, stderr.String())
	}
}
