package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/lease"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/testnet"
	"github.com/spotmesh/spotmesh/testnet/refcloud"
)

// createLog records the PUT /v1/instances requests a cloud receives.
type createLog struct {
	mu   sync.Mutex
	reqs []refcloud.CreateInstance
	auth []string
}

func (l *createLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			var c refcloud.CreateInstance
			_ = json.Unmarshal(b, &c)
			l.mu.Lock()
			l.reqs = append(l.reqs, c)
			l.auth = append(l.auth, r.Header.Get("Authorization"))
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *createLog) get() ([]refcloud.CreateInstance, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]refcloud.CreateInstance(nil), l.reqs...), append([]string(nil), l.auth...)
}

// TestHTTPDriverSellsLease: a seller whose config names driver "http"
// and the reference cloud (testnet/refcloud, on loopback, with a bearer
// token read from token_file) sells a lease end to end: the buyer's
// appliance reaches the cloud through the seller's own gateway, the cloud
// runs it, the buyer reaches the instance, and when the buyer ends the
// lease the node has the cloud terminate it and the slot comes back.
func TestHTTPDriverSellsLease(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("the reference cloud runs on Linux only")
	}
	echo := drivertest.Echo(t) // before any lease: the build takes a while
	dir := t.TempDir()

	const token = "s3cret-cloud-token"
	ccfg := refcloud.DefaultConfig()
	ccfg.Dir = filepath.Join(dir, "cloud")
	ccfg.Token = token
	ccfg.StopGrace = 2 * time.Second
	cloud, err := refcloud.New(ccfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	var creates createLog
	srv := httptest.NewServer(creates.wrap(cloud))
	t.Cleanup(func() { // after the nodes have closed (cleanups run last first)
		cloud.Close()
		srv.Close()
	})

	// The seller's config, as 'spotmesh init --driver http' writes it.
	tokFile := filepath.Join(dir, "cloud.token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sellerHome := filepath.Join(dir, "seller")
	scfg := initHome(t, sellerHome)
	scfg.Driver = node.DriverHTTP
	scfg.HTTPDriver = node.HTTPDriverConfig{URL: srv.URL, TokenFile: tokFile}
	if _, err := node.Init(scfg); err != nil {
		t.Fatal(err)
	}
	scfg, err = node.LoadConfig(sellerHome)
	if err != nil {
		t.Fatal(err)
	}
	seller := start(t, scfg)
	if seller.Runtime() == nil {
		t.Fatal("driver http built no runtime")
	}
	buyer := start(t, initHome(t, filepath.Join(dir, "buyer"), seller.Identity().Addrs[0]))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const capacity = 2
	oid := offerToBuyer(ctx, t, seller, buyer, offers.Spec{
		Key:      "cloud-1",
		Region:   "local",
		Hardware: protocol.Hardware{Profile: "r1m512", VCPU: 1, Memory: 512 << 20, Disk: 64 << 20, Arch: goruntime.GOARCH},
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
	// A long lease that the buyer ends: no race between the cloud's start
	// and the lease's expiry on a slow machine (the process driver's test
	// covers expiry).
	const length = time.Hour
	info, err := buyer.Leases().Propose(ctx, e.Offer, lease.Params{
		Slots: 1, Length: length,
		Appliance: ai.CID, ApplianceSize: ai.Size, ApplianceFormat: "bundle",
		AccessKey: "ssh-ed25519 AAAA test",
	})
	if err != nil {
		t.Fatal(err)
	}
	id := info.ID

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
	if body := get(t, ctx, "http://"+running.Endpoint+"/"); strings.TrimSpace(body) != "lease "+id.String() {
		t.Fatalf("instance answered %q, want the lease's ID", body)
	}
	if got := get(t, ctx, "http://"+running.Endpoint+"/key"); !strings.Contains(got, "ssh-ed25519 AAAA test") {
		t.Fatalf("instance has access key %q", got)
	}
	pid := cloud.PID(id.String())
	if pid <= 0 || !alive(pid) {
		t.Fatalf("the cloud runs no process for the lease (pid %d)", pid)
	}

	// The node asked the cloud once, with the token from token_file, to
	// pull the appliance from the seller's own gateway.
	reqs, auth := creates.get()
	if len(reqs) != 1 {
		t.Fatalf("the cloud got %d create requests, want 1", len(reqs))
	}
	if want := "http://" + seller.GatewayAddr() + "/ipfs/" + ai.CID.String(); reqs[0].Appliance.URL != want {
		t.Fatalf("the cloud was told to pull %s, want the seller's gateway %s", reqs[0].Appliance.URL, want)
	}
	if auth[0] != "Bearer "+token {
		t.Fatalf("the node sent Authorization %q, want the token file's token", auth[0])
	}
	if l := reqs[0].Limits; l.VCPU != 1 || l.Memory != 512<<20 || l.Disk != 64<<20 {
		t.Fatalf("the cloud was asked for limits %+v, want the offer's hardware", l)
	}
	if err := testnet.WaitFor(ctx, func() bool { s, ok := bookSlots(buyer, oid); return ok && s == capacity-1 }); err != nil {
		s, _ := bookSlots(buyer, oid)
		t.Fatalf("the buyer's book shows %d free slots while the lease runs, want %d", s, capacity-1)
	}

	// The buyer ends the lease: ended on both sides, the cloud's process
	// gone, the slot free again.
	if _, err := buyer.Leases().End(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := testnet.WaitFor(ctx, func() bool {
		in, err := seller.Leases().Get(id)
		return err == nil && in.State == protocol.StateEnded
	}); err != nil {
		t.Fatal("the seller's lease did not end")
	}
	if in, err := seller.Leases().Get(id); err != nil || in.Cause != protocol.CauseEndedByBuyer {
		t.Fatalf("seller's lease ended as %+v, %v; want ended by the buyer", in, err)
	}
	if err := testnet.WaitFor(ctx, func() bool {
		in, ok := seller.Runtime().Instance(id.String())
		return ok && !in.State.Live() && !alive(pid)
	}); err != nil {
		in, _ := seller.Runtime().Instance(id.String())
		t.Fatalf("the cloud's instance is still there after the lease's end: %+v, process alive: %v", in, alive(pid))
	}
	if err := testnet.WaitFor(ctx, func() bool { s, ok := bookSlots(seller, oid); return ok && s == capacity }); err != nil {
		s, _ := bookSlots(seller, oid)
		t.Fatalf("seller's book shows %d free slots after the lease, want %d", s, capacity)
	}
}
