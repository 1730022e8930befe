package procnet

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

func TestScenarioConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*ScenarioConfig)
		want   string // in the error; "" for none
	}{
		{"default", func(*ScenarioConfig) {}, ""},
		{"kill-seller", func(c *ScenarioConfig) { c.Fault = FaultKillSeller }, ""},
		{"short lease", func(c *ScenarioConfig) { c.Lease = time.Second }, "lease 1s"},
		{"long lease", func(c *ScenarioConfig) { c.Lease = 2 * time.Hour }, "lease 2h"},
		{"fast receipts", func(c *ScenarioConfig) { c.ReceiptInterval = time.Millisecond }, "receipt interval"},
		{"receipts longer than the lease", func(c *ScenarioConfig) { c.ReceiptInterval = 2 * c.Lease }, "receipt interval"},
		{"no receipts", func(c *ScenarioConfig) { c.Receipts = 0 }, "receipts 0"},
		{"unknown fault", func(c *ScenarioConfig) { c.Fault = "kill-buyer" }, `fault "kill-buyer"`},
		{"no downtime", func(c *ScenarioConfig) { c.Fault, c.Downtime = FaultKillSeller, 0 }, "downtime"},
		{"no timeout", func(c *ScenarioConfig) { c.Timeout = 0 }, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultScenarioConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// The bundle is a tar archive of the length announced, with the run
// script and the binary, the binary at another offset each time.
func TestBundle(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "spotmesh")
	body := bytes.Repeat([]byte("\x7fELF binary "), 20_000)
	if err := os.WriteFile(bin, body, 0o755); err != nil {
		t.Fatal(err)
	}
	offsets := map[int64]bool{}
	for i := 0; i < 4; i++ {
		b, err := newBundle(bin, "buyer-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := b.writeTo(&buf); err != nil {
			t.Fatal(err)
		}
		if int64(buf.Len()) != b.size() {
			t.Fatalf("bundle of %d bytes, size() says %d", buf.Len(), b.size())
		}
		tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
		files := map[string][]byte{}
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(tr)
			files[h.Name] = data
			if h.Name == bundleRun && h.Mode&0o100 == 0 || h.Name == bundleBin && h.Mode&0o100 == 0 {
				t.Fatalf("%s: mode %o, want executable", h.Name, h.Mode)
			}
		}
		if !bytes.Equal(files[bundleBin], body) || !bytes.HasPrefix(files[bundleRun], []byte("#!/bin/sh\n")) ||
			!strings.Contains(string(files[bundleRun]), `exec "${0%/*}/spotmesh" _echo`) || !bytes.Contains(files[bundleNote], []byte("buyer-1")) {
			t.Fatalf("bundle files: run %q, note %.80q, binary %d bytes", files[bundleRun], files[bundleNote], len(files[bundleBin]))
		}
		offsets[int64(len(files[bundleNote]))] = true
		if len(files[bundleNote])%512 != 0 {
			t.Fatalf("note of %d bytes, want a multiple of 512", len(files[bundleNote]))
		}
	}
	if len(offsets) < 2 {
		t.Fatalf("four bundles put the binary at %d offset(s): want them to differ", len(offsets))
	}
}

func TestStats(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	d = append(d, 0) // not measured: left out
	s := stats("x", d, []uint64{0, 30, 10, 20})
	if s.N != 100 || s.Min.Std() != time.Millisecond || s.P50.Std() != 50*time.Millisecond ||
		s.P99.Std() != 99*time.Millisecond || s.Max.Std() != 100*time.Millisecond || s.Rate != 20 {
		t.Fatalf("stats: %+v", s)
	}
	if s := stats("x", []time.Duration{0, 7 * time.Millisecond}, nil); s.N != 1 || s.P99.Std() != 7*time.Millisecond || s.Rate != 0 {
		t.Fatalf("stats of one: %+v", s)
	}
	if s := stats("x", nil, nil); s.N != 0 || s.Max != 0 {
		t.Fatalf("stats of none: %+v", s)
	}
}

func TestChainsAgree(t *testing.T) {
	price := protocol.Price{Micro: 3_600_000, Currency: "USD"} // 1 micro-unit per ms
	ls := api.Lease{Price: price, PriceText: price.String(), Slots: 1}
	chain := func() []api.Receipt {
		return []api.Receipt{
			{CID: "a", Seq: 1, BilledMs: 1000, Amount: 1000, Total: 1000, State: api.ReceiptAcked},
			{CID: "b", Seq: 2, Prev: "a", BilledMs: 2000, Amount: 1000, Total: 2000, State: api.ReceiptAcked},
			{CID: "c", Seq: 3, Prev: "b", BilledMs: 2500, Amount: 500, Total: 2500, State: api.ReceiptAcked, Final: true},
		}
	}
	set := func() *api.SettlementRecord {
		return &api.SettlementRecord{State: "settled", HeadSeq: 3, HeadTotal: 2500, AckedSeq: 3, Total: 2500}
	}
	for _, tc := range []struct {
		name   string
		buyer  func([]api.Receipt) []api.Receipt
		seller func([]api.Receipt) []api.Receipt
		set    func(*api.SettlementRecord)
		want   string
	}{
		{"agree", nil, nil, nil, ""},
		{"one receipt short", nil, func(r []api.Receipt) []api.Receipt { return r[:2] }, nil, "holds 3 receipts, the seller 2"},
		{"another receipt", nil, func(r []api.Receipt) []api.Receipt { r[1].CID = "x"; return r }, nil, "receipt 2 differs"},
		{"broken link", func(r []api.Receipt) []api.Receipt { r[2].Prev = "a"; return r },
			func(r []api.Receipt) []api.Receipt { r[2].Prev = "a"; return r }, nil, "does not name receipt 2"},
		{"not final", func(r []api.Receipt) []api.Receipt { r[2].Final = false; return r }, nil, nil, "final false"},
		{"amounts", func(r []api.Receipt) []api.Receipt { r[1].Amount = 999; return r }, nil, nil, "add up to"},
		{"overcharge", func(r []api.Receipt) []api.Receipt { r[2].BilledMs = 2400; return r }, nil, nil, "want 2400"},
		{"settlement head", nil, nil, func(s *api.SettlementRecord) { s.HeadSeq = 2 }, "head is receipt 2"},
		{"settlement total", nil, nil, func(s *api.SettlementRecord) { s.Total = 2000 }, "total is 2000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, s, st := chain(), chain(), set()
			if tc.buyer != nil {
				b = tc.buyer(b)
			}
			if tc.seller != nil {
				s = tc.seller(s)
			}
			if tc.set != nil {
				tc.set(st)
			}
			got := chainsAgree(b, s, st, ls)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("chainsAgree = %q, want %q", got, tc.want)
			}
		})
	}
}

// stillRuns reports whether pid is a live process (not gone, not a
// zombie).
func stillRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	reap(pid)
	st, err := readStat(pid)
	return err == nil && !st.ended()
}

// TestScenarioKillSeller boots 2 sellers and 1 buyer, runs the scenario
// with the seller of the lease killed (SIGKILL) mid-lease and started
// again, and takes the testnet down. The lease must end settled or
// disputed, the same on both sides, and no process may stay behind.
func TestScenarioKillSeller(t *testing.T) {
	bin := spotmeshBinary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	var instances []int
	t.Cleanup(func() {
		stopAll(t, dir)
		for _, pid := range instances {
			if stillRuns(pid) {
				t.Errorf("instance pid %d still runs at the end of the test: killed", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	cfg := DefaultConfig(dir)
	cfg.Sellers, cfg.Buyers, cfg.OffersPerSeller, cfg.Binary, cfg.Timeout = 2, 1, 1, bin, 45*time.Second
	ctx := context.Background()
	n, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc := DefaultScenarioConfig()
	sc.Fault, sc.Downtime, sc.Timeout = FaultKillSeller, time.Second, 90*time.Second
	var events []string
	sc.Progress = func(ev Event) { events = append(events, ev.Text) }
	t0 := time.Now()
	rep, err := n.Scenario(ctx, sc)
	t.Logf("scenario with %s in %v:\n%s", FaultKillSeller, time.Since(t0), strings.Join(events, "\n"))
	if rep != nil {
		for _, l := range rep.Leases {
			instances = append(instances, l.InstancePID)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Leases) != 1 {
		t.Fatalf("report: ok %v, %d leases", rep.OK, len(rep.Leases))
	}
	l := rep.Leases[0]
	if l.Settlement != "settled" && l.Settlement != "disputed" || l.SettlementCID == "" || l.Receipts < 2 {
		t.Fatalf("lease after the seller's crash: %+v", l)
	}
	if l.SellerDown.Std() < time.Second || l.InstancePID <= 0 || l.Seller == "" {
		t.Fatalf("lease report: %+v", l)
	}
	passed := map[string]bool{}
	for _, c := range rep.Checks {
		passed[c.Name] = c.OK
	}
	for _, name := range []string{CheckKill, CheckOutlives, CheckRestart, CheckReceipts, CheckEnded, CheckSettled, CheckChains, CheckStopped} {
		if !passed[name] {
			t.Errorf("check %q: not passed", name)
		}
	}
	// The killed seller runs again.
	if nd, _ := n.Node(l.Seller); nd.PID == 0 || !alive(t, n, l.Seller) {
		t.Fatalf("%s after the scenario: %+v", l.Seller, nd)
	}
	if stillRuns(l.InstancePID) {
		t.Fatalf("instance pid %d runs after its lease settled", l.InstancePID)
	}
	res, err := n.Down(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != Stopped {
			t.Errorf("%s: %s %s", r.Name, r.Outcome, r.Detail)
		}
	}
	for _, nd := range n.Manifest().Nodes {
		if st, err := readStat(nd.PID); err == nil && !st.ended() && st.start == nd.StartTime {
			t.Errorf("%s: pid %d runs after down", nd.Name, nd.PID)
		}
	}
}
