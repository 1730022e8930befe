package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/prometheus/common/expfmt"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	"github.com/spotmesh/spotmesh/node/settle"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/testnet"
)

// TestLeaseRunsInstanceUntilExpiry: a buyer leases a slot of a real
// seller's offer for a few seconds with a bundle it imported; the seller
// fetches the bundle from it, runs it as a process and publishes one slot
// fewer; the buyer reaches the instance over HTTP; at the lease's end the
// instance goes, the slot comes back and the lease's pin is removed.
func TestLeaseRunsInstanceUntilExpiry(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("the process driver runs on Linux only")
	}
	echo := drivertest.Echo(t) // before any lease: the build takes a while
	dir := t.TempDir()
	seller := start(t, initHome(t, filepath.Join(dir, "seller")))
	buyer := start(t, initHome(t, filepath.Join(dir, "buyer"), seller.Identity().Addrs[0]))
	if buyer.Runtime() == nil || seller.Leases() == nil {
		t.Fatal("the default node has no runtime or no lease service")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const capacity = 2
	oid := offerToBuyer(ctx, t, seller, buyer, offers.Spec{
		Key:      "proc-1",
		Region:   "local",
		Hardware: protocol.Hardware{Profile: "p1m256", VCPU: 1, Memory: 256 << 20, Disk: 64 << 20, Arch: goruntime.GOARCH},
		Slots:    capacity,
		Price:    protocol.Price{Micro: 10000, Currency: "USD"},
		MinLease: time.Second,
		MaxLease: time.Hour,
		Formats:  []string{"bundle"},
	})

	f, err := os.Open(drivertest.ExecutableBundle(t, echo))
	if err != nil {
		t.Fatal(err)
	}
	ai, err := buyer.ApplianceService().Import(ctx, f, appliance.Meta{Name: "echo", Format: "bundle"}, nil)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	e, _ := buyer.MarketBook().Get(oid)
	const length = 3 * time.Second
	info, err := buyer.Leases().Propose(ctx, e.Offer, lease.Params{
		Slots: 1, Length: length,
		Appliance: ai.CID, ApplianceSize: ai.Size, ApplianceFormat: "bundle",
		AccessKey: "ssh-ed25519 AAAA test",
	})
	if err != nil {
		t.Fatal(err)
	}
	id := info.ID
	t.Logf("lease %s granted, ends %s", id, info.Ends.Format(time.StampMilli))

	// Running, with an endpoint that answers with the lease's ID.
	var running *lease.Info
	if err := testnet.WaitFor(ctx, func() bool {
		in, err := buyer.Leases().Refresh(ctx, id)
		if err != nil {
			t.Logf("refresh: %v", err)
			return false
		}
		if in.State == protocol.StateEnded {
			t.Fatalf("lease ended before it ran: %s: %s", in.Cause, in.Detail)
		}
		running = in
		return in.State == protocol.StateRunning && in.Endpoint != ""
	}); err != nil {
		t.Fatalf("lease never ran: %+v", running)
	}
	t.Logf("running at %s after %v", running.Endpoint, time.Until(info.Ends.Add(-length)).Abs())
	body := get(t, ctx, "http://"+running.Endpoint+"/")
	if want := "lease " + id.String(); strings.TrimSpace(body) != want {
		t.Fatalf("instance answered %q, want %q", body, want)
	}
	if got := get(t, ctx, "http://"+running.Endpoint+"/key"); !strings.Contains(got, "ssh-ed25519 AAAA test") {
		t.Fatalf("instance has access key %q", got)
	}
	inst, ok := seller.Runtime().Instance(id.String())
	if !ok || inst.PID <= 0 {
		t.Fatalf("seller's runtime has no process for the lease: %+v", inst)
	}
	pid := inst.PID
	if !alive(pid) {
		t.Fatalf("instance process %d not running while the lease runs", pid)
	}
	if a, err := seller.ApplianceService().Get(ctx, ai.CID); err != nil || !slices.Contains(a.Pins, appliance.LeaseReason(id.String())) {
		t.Fatalf("seller's appliance not pinned for the lease: %+v, %v", a, err)
	}

	// One slot fewer in the books while the lease runs (the buyer's book
	// too: the copy was gossiped).
	for _, n := range []*node.Node{seller, buyer} {
		if err := testnet.WaitFor(ctx, func() bool { s, ok := bookSlots(n, oid); return ok && s == capacity-1 }); err != nil {
			s, _ := bookSlots(n, oid)
			t.Fatalf("%s's book shows %d free slots while the lease runs, want %d", n.ID().ShortString(), s, capacity-1)
		}
	}

	// The lease expires on its own: ended/expired on both sides, the
	// process gone, the slot free again, the pin removed.
	if err := testnet.WaitFor(ctx, func() bool {
		in, err := buyer.Leases().Refresh(ctx, id)
		return err == nil && in.State == protocol.StateEnded
	}); err != nil {
		t.Fatal("the buyer's lease did not end")
	}
	in, err := buyer.Leases().Get(id)
	if err != nil || in.Cause != protocol.CauseExpired {
		t.Fatalf("buyer's lease ended as %+v, %v; want expired", in, err)
	}
	if err := testnet.WaitFor(ctx, func() bool {
		in, ok := seller.Runtime().Instance(id.String())
		return ok && !in.State.Live() && !alive(pid)
	}); err != nil {
		in, _ := seller.Runtime().Instance(id.String())
		t.Fatalf("instance still there after the lease's end: %+v, process alive: %v", in, alive(pid))
	}
	sin, err := seller.Leases().Get(id)
	if err != nil || sin.State != protocol.StateEnded || sin.Cause != protocol.CauseExpired {
		t.Fatalf("seller's lease: %+v, %v; want ended, expired", sin, err)
	}
	if err := testnet.WaitFor(ctx, func() bool { s, ok := bookSlots(seller, oid); return ok && s == capacity }); err != nil {
		s, _ := bookSlots(seller, oid)
		t.Fatalf("seller's book shows %d free slots after the lease, want %d", s, capacity)
	}
	if err := testnet.WaitFor(ctx, func() bool {
		a, err := seller.ApplianceService().Get(ctx, ai.CID)
		return err == nil && !slices.Contains(a.Pins, appliance.LeaseReason(id.String()))
	}); err != nil {
		t.Fatal("the seller kept the lease's pin of the appliance")
	}
	if _, err := http.Get("http://" + running.Endpoint + "/"); err == nil {
		t.Fatal("the instance's endpoint still answers")
	}
	// The lease settles, and the metrics of both nodes tell the story.
	if err := testnet.WaitFor(ctx, func() bool {
		a, err1 := seller.Settle().Summary(id)
		b, err2 := buyer.Settle().Summary(id)
		return err1 == nil && err2 == nil && a.Status == settle.StatusSettled && b.Status == settle.StatusSettled
	}); err != nil {
		a, _ := seller.Settle().Summary(id)
		t.Fatalf("the lease did not settle: seller %+v", a)
	}
	for _, m := range []struct {
		n    *node.Node
		name string
		min  float64
	}{
		{seller, `spotmesh_lease_answers_total{answer="granted",reason=""}`, 1},
		{seller, `spotmesh_leases_sold_ended_total{cause="expired"}`, 1},
		{seller, `spotmesh_receipts_issued_total`, 1},
		{seller, `spotmesh_settlements_total{state="settled"}`, 1},
		{buyer, `spotmesh_lease_round_trip_seconds_count`, 1},
		{buyer, `spotmesh_receipts_answered_total{answer="ack"}`, 1},
		{buyer, `spotmesh_settlements_total{state="settled"}`, 1},
	} {
		if v := metricValue(t, m.n, m.name); v < m.min {
			t.Errorf("%s = %v, want at least %v", m.name, v, m.min)
		}
	}
}

// metricValue reads one sample of a node's metrics, as Prometheus's text
// format names it; 0 when absent.
func metricValue(t *testing.T, n *node.Node, name string) float64 {
	t.Helper()
	var b strings.Builder
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// TestDriverNoneSellsNothing: a node configured with driver "none" has no
// runtime, buys, and refuses proposals.
func TestDriverNoneSellsNothing(t *testing.T) {
	cfg := initHome(t, filepath.Join(t.TempDir(), "n"))
	cfg.Driver = node.DriverNone
	n := start(t, cfg)
	if n.Runtime() != nil {
		t.Fatal("driver none built a runtime")
	}
	if n.Leases() == nil {
		t.Fatal("no lease service")
	}
	if err := n.Leases().Pause(context.Background(), "x"); !errors.Is(err, lease.ErrInvalid) {
		t.Fatalf("pause on a node that sells nothing: %v", err)
	}
	bad := node.DefaultConfig()
	bad.Driver = "docker"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "driver") {
		t.Fatalf("driver docker: %v", err)
	}
}

// TestPauseRepublishes: pausing an offer through the lease service
// publishes a paused copy; resuming publishes one taking leases.
func TestPauseRepublishes(t *testing.T) {
	cfg := initHome(t, filepath.Join(t.TempDir(), "n"))
	n := start(t, cfg, node.WithDriver(drivertest.NewFake(clock.New(), runtime.Resources{VCPU: 8, Memory: 8 << 30, Disk: 100 << 30, Instances: 8})))
	ctx := context.Background()
	if _, err := n.AddOffer(ctx, spec("p-1")); err != nil {
		t.Fatal(err)
	}
	for _, paused := range []bool{true, false} {
		var err error
		if paused {
			err = n.Leases().Pause(ctx, "p-1")
		} else {
			err = n.Leases().Resume(ctx, "p-1")
		}
		if err != nil {
			t.Fatal(err)
		}
		st, err := n.OwnOffers().Get("p-1")
		if err != nil {
			t.Fatal(err)
		}
		if st.Current.Paused != paused || st.Spec.Paused != paused {
			t.Fatalf("after pause=%v the copy says paused=%v (spec %v)", paused, st.Current.Paused, st.Spec.Paused)
		}
		if st.Current.Slots != 10 {
			t.Fatalf("copy states %d slots, want the capacity 10 (nothing leased)", st.Current.Slots)
		}
	}
}

func get(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
