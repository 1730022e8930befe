package procnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	"github.com/spotmesh/spotmesh/protocol"
)

// needNetns skips a test unless this machine runs network namespaces
// (Linux, root, ip): CI runs as root.
func needNetns(t *testing.T) {
	t.Helper()
	if err := CheckNetns(); err != nil {
		t.Skip(err)
	}
}

// cleanNetwork removes what is left of the network the manifest in dir
// records: the cleanup of a test that made one, after its processes.
func cleanNetwork(t *testing.T, dir string) {
	m, err := readManifest(dir)
	if err != nil || m.Network == nil {
		return
	}
	if left := existing(m); len(left) > 0 {
		t.Logf("cleanup: removing %s", strings.Join(left, ", "))
		if err := removeNetwork(context.Background(), m); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// inNetns runs f on a thread in the named network namespace, so that the
// sockets f makes are that namespace's.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	if err := inNetnsErr(ns, f); err != nil {
		t.Fatal(err)
	}
}

func inNetnsErr(ns string, f func()) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// A thread that cannot go back stays locked and ends with this
		// goroutine.
		back, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer back.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		f()
		if err := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	return <-done
}

// netnsLinks lists the namespaces and links named in 'ip netns list' and
// 'ip -o link' that hold id.
func netnsLinks(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	for _, args := range [][]string{{"netns", "list"}, {"-o", "link"}} {
		b, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, b)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, id) {
				out = append(out, strings.TrimSpace(line))
			}
		}
	}
	return out
}

// netDiag logs the state of m's network, for a test that failed.
func netDiag(t *testing.T, m Manifest) {
	t.Helper()
	id := netnsID(m.Dir)
	var sb strings.Builder
	run := func(args ...string) {
		b, _ := exec.Command("ip", args...).CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.Contains(line, id) || strings.Contains(line, m.Network.Subnet[:strings.LastIndexByte(m.Network.Subnet, '.')]) || len(args) > 1 && args[0] == "-n" {
				fmt.Fprintf(&sb, "ip %s: %s\n", strings.Join(args, " "), line)
			}
		}
	}
	run("-4", "route", "show", "table", "all")
	run("neigh")
	run("-d", "link")
	for _, nd := range m.Nodes {
		run("-n", nd.Netns, "neigh")
		run("-n", nd.Netns, "-br", "addr")
	}
	if b, err := exec.Command("bridge", "link").CombinedOutput(); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, id) {
				fmt.Fprintf(&sb, "bridge link: %s\n", line)
			}
		}
	}
	t.Logf("network state:\n%s", sb.String())
}

// TestNetnsPartitionCutsTraffic makes the network of a testnet of four
// nodes without daemons, listens in each namespace, and dials across it:
// everyone reaches everyone, a partition cuts its nodes off from the
// rest but not from each other or the host, heal brings them back, and
// down leaves nothing; Start's way of making it again works after down.
func TestNetnsPartitionCutsTraffic(t *testing.T) {
	needNetns(t)
	dir := t.TempDir()
	m := Manifest{Version: ManifestVersion, Dir: dir, Binary: filepath.Join(dir, BinDir, BinaryName), Created: time.Now().UTC()}
	for _, name := range []string{"boot", "seller-1", "seller-2", "buyer-1"} {
		role, _, _ := strings.Cut(name, "-")
		m.Nodes = append(m.Nodes, Node{Name: name, Role: role, Home: filepath.Join(dir, name)})
	}
	if err := writeManifest(m); err != nil {
		t.Fatal(err)
	}
	n, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanNetwork(t, dir) })
	ctx := context.Background()
	t0 := time.Now()
	if err := n.setupNetwork(ctx, true); err != nil {
		t.Fatal(err)
	}
	t.Logf("network of %d namespaces made in %v", len(m.Nodes), time.Since(t0))
	m = n.Manifest()
	if disk, err := readManifest(dir); err != nil || disk.Network == nil || !disk.Network.Made || disk.Version != ManifestVersion {
		t.Fatalf("testnet.json after the network was made: %+v %v", disk.Network, err)
	}

	// A listener in each namespace, on its address.
	addr := map[string]string{}
	for _, nd := range m.Nodes {
		var ln net.Listener
		var lerr error
		inNetns(t, nd.Netns, func() { ln, lerr = net.Listen("tcp", net.JoinHostPort(nd.IP, "0")) })
		if lerr != nil {
			t.Fatalf("%s: listen in %s: %v", nd.Name, nd.Netns, lerr)
		}
		t.Cleanup(func() { ln.Close() })
		addr[nd.Name] = ln.Addr().String()
	}
	// reaches dials to's listener from the namespace of from ("" is the
	// host). A dial that a partition cuts off times out.
	reaches := func(from, to string) (bool, error) {
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		var c net.Conn
		var err error
		dial := func() { c, err = d.Dial("tcp", addr[to]) }
		if from == "" {
			dial()
		} else {
			i, _ := m.node(from)
			if serr := inNetnsErr(m.Nodes[i].Netns, dial); serr != nil {
				return false, serr
			}
		}
		if err == nil {
			c.Close()
		}
		return err == nil, nil
	}
	// want checks every pair at once: the nodes of a group reach each
	// other and no other node; the host reaches everyone.
	want := func(when string, groups ...[]string) {
		t.Helper()
		group := map[string]int{}
		for g, names := range groups {
			for _, name := range names {
				group[name] = g
			}
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var bad []string
		for _, a := range append([]Node{{}}, m.Nodes...) {
			for _, b := range m.Nodes {
				if a.Name == b.Name {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := reaches(a.Name, b.Name)
					exp := a.Name == "" || group[a.Name] == group[b.Name]
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						bad = append(bad, err.Error())
					case got != exp && a.Name == "":
						bad = append(bad, "the host does not reach "+b.Name)
					case got != exp:
						bad = append(bad, fmt.Sprintf("%s reaches %s: %v, want %v", a.Name, b.Name, got, exp))
					}
				}()
			}
		}
		wg.Wait()
		if len(bad) > 0 {
			slices.Sort(bad)
			netDiag(t, m)
			t.Fatalf("%s:\n%s", when, strings.Join(bad, "\n"))
		}
	}
	all := []string{"boot", "seller-1", "seller-2", "buyer-1"}
	want("after up", all)

	p, err := n.Partition(ctx, "buyer-1", "seller-2")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Nodes, []string{"seller-2", "buyer-1"}) || !linkExists(p.Bridge) {
		t.Fatalf("partition %+v", p)
	}
	if disk, _ := readManifest(dir); len(disk.Network.Partitions) != 1 || disk.Network.Partitions[0].Bridge != p.Bridge {
		t.Fatalf("testnet.json's partitions: %+v", disk.Network.Partitions)
	}
	want("partitioned", []string{"boot", "seller-1"}, []string{"seller-2", "buyer-1"})

	healed, err := n.Heal(ctx, "buyer-1")
	if err != nil || !slices.Equal(healed, []string{"buyer-1"}) {
		t.Fatalf("heal buyer-1: %v %v", healed, err)
	}
	want("buyer-1 healed", []string{"boot", "seller-1", "buyer-1"}, []string{"seller-2"})
	if !linkExists(p.Bridge) {
		t.Fatalf("%s went while seller-2 is still on it", p.Bridge)
	}
	// A second partition beside the first.
	q, err := n.Partition(ctx, "boot")
	if err != nil || q.Bridge == p.Bridge {
		t.Fatalf("second partition %+v: %v", q, err)
	}
	want("two partitions", []string{"seller-1", "buyer-1"}, []string{"seller-2"}, []string{"boot"})

	healed, err = n.Heal(ctx)
	if err != nil || !slices.Equal(healed, []string{"seller-2", "boot"}) {
		t.Fatalf("heal: %v %v", healed, err)
	}
	want("healed", all)
	if linkExists(p.Bridge) || linkExists(q.Bridge) || len(n.Manifest().Network.Partitions) != 0 {
		t.Fatalf("partition bridges after heal: %v %v, recorded %+v", linkExists(p.Bridge), linkExists(q.Bridge), n.Manifest().Network.Partitions)
	}
	if healed, err := n.Heal(ctx); err != nil || len(healed) != 0 {
		t.Fatalf("heal with nothing cut off: %v %v", healed, err)
	}

	// Down, with a partition standing: no namespace, link or bridge left.
	if _, err := n.Partition(ctx, "seller-1"); err != nil {
		t.Fatal(err)
	}
	for _, nd := range m.Nodes {
		// Stale address files, as a SIGKILL'd daemon leaves them.
		if err := os.MkdirAll(nd.Home, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nd.Home, node.APIAddrFile), []byte(nd.IP+":1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Down(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	id := netnsID(dir)
	if left := netnsLinks(t, id); len(left) > 0 {
		t.Fatalf("after down:\n%s", strings.Join(left, "\n"))
	}
	if _, err := os.Stat(filepath.Join(m.Nodes[1].Home, node.APIAddrFile)); !os.IsNotExist(err) {
		t.Fatalf("the stale API address file stays after down: %v", err)
	}
	if _, err := n.Partition(ctx, "seller-1"); err == nil {
		t.Fatal("partition after down")
	}
	// Made again (as Start does), at the same addresses.
	if err := n.setupNetwork(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := n.Manifest().Network; !got.Made || got.Subnet != m.Network.Subnet {
		t.Fatalf("network made again: %+v, was %+v", got, m.Network)
	}
	if err := n.dropNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	if left := netnsLinks(t, id); len(left) > 0 {
		t.Fatalf("after the second down:\n%s", strings.Join(left, "\n"))
	}
}

// TestNetnsUpRefusesTakenNames: a namespace with one of the testnet's
// names, made by someone else, stops Up before it makes anything, and is
// left alone.
func TestNetnsUpRefusesTakenNames(t *testing.T) {
	needNetns(t)
	dir := filepath.Join(t.TempDir(), "tn")
	abs, _ := filepath.Abs(dir)
	squatter := "sm-" + netnsID(abs) + "-seller-1"
	if out, err := exec.Command("ip", "netns", "add", squatter).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", squatter).Run() })
	t.Cleanup(func() { cleanNetwork(t, abs) })
	cfg := DefaultConfig(dir)
	cfg.Sellers, cfg.Buyers, cfg.Netns, cfg.Timeout = 1, 1, true, 10*time.Second
	_, err := Up(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), squatter) || !strings.Contains(err.Error(), "ip netns del") {
		t.Fatalf("up beside %s: %v", squatter, err)
	}
	if !netnsExists(squatter) {
		t.Fatalf("up removed %s, which it did not make", squatter)
	}
	if left := netnsLinks(t, netnsID(abs)); len(left) != 1 {
		t.Fatalf("up left more than the squatter:\n%s", strings.Join(left, "\n"))
	}
	m, err := readManifest(abs)
	if err != nil || m.Network != nil && m.Network.Made {
		t.Fatalf("testnet.json after the refusal: %+v %v", m.Network, err)
	}
}

func pidRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	return err == nil && !st.ended()
}

// TestNetnsLeaseSettlesAcrossPartition is issue 7's test: a testnet of
// one seller and one buyer (and boot), each in its own namespace; the
// buyer leases from the seller; the seller is cut off mid-lease, so that
// a receipt goes unanswered; heal; the buyer's answer to it crosses
// (acknowledged, or disputed when the buyer's probes of its instance
// failed while cut off), the buyer ends the lease, and both sides hold
// one settlement, signed by both. Down leaves no namespace, link, bridge
// or process.
func TestNetnsLeaseSettlesAcrossPartition(t *testing.T) {
	needNetns(t)
	bin := spotmeshBinary(t) // skips under -short
	echo, err := drivertest.BuildEcho(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tn")
	var instance int
	t.Cleanup(func() {
		stopAll(t, dir)
		cleanNetwork(t, dir)
		if pidRuns(instance) {
			t.Errorf("instance pid %d still runs at the end of the test: killed", instance)
			_ = syscall.Kill(instance, syscall.SIGKILL)
		}
	})
	cfg := DefaultConfig(dir)
	cfg.Sellers, cfg.Buyers, cfg.OffersPerSeller, cfg.Binary, cfg.Timeout, cfg.Netns = 1, 1, 2, bin, 45*time.Second, true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	n, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up --netns of 1 seller and 1 buyer (and boot): %v", time.Since(t0))
	m := n.Manifest()
	if m.Network == nil || !m.Network.Made {
		t.Fatalf("manifest without a network: %+v", m)
	}
	// Each daemon runs in its namespace, its API on its address.
	for _, nd := range m.Nodes {
		var want, got unix.Stat_t
		if err := unix.Stat(filepath.Join("/run/netns", nd.Netns), &want); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", nd.PID), &got); err != nil {
			t.Fatal(err)
		}
		if got.Ino != want.Ino {
			t.Fatalf("%s: pid %d runs in another network namespace than %s", nd.Name, nd.PID, nd.Netns)
		}
		if host, _, _ := net.SplitHostPort(nd.APIAddr); host != nd.IP || !strings.Contains(nd.Addrs[0], "/ip4/"+nd.IP+"/") {
			t.Fatalf("%s: API %s, p2p %v, want them on %s", nd.Name, nd.APIAddr, nd.Addrs, nd.IP)
		}
	}
	for _, s := range n.Status(ctx) {
		if !s.Alive || s.Note != "" || s.Peers < 1 {
			t.Fatalf("status after up: %+v", s)
		}
	}
	client := func(name string) *api.Client {
		nd, err := n.Node(name)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := node.ReadToken(nd.Home)
		if err != nil {
			t.Fatal(err)
		}
		c := api.NewClient(nd.APIAddr, tok)
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	bc, sc := client("buyer-1"), client("seller-1")

	// The seller's offer with the longest grace: receipts unanswered for
	// longer end the lease.
	specs := offerSpecs(1, cfg.OffersPerSeller)
	spec := specs[0]
	for _, s := range specs {
		if s.PaymentGrace > spec.PaymentGrace {
			spec = s
		}
	}
	f, err := os.Open(echo)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	app, err := bc.ImportAppliance(ctx, f, api.ImportOptions{Name: "echo", Format: "bundle", Size: fi.Size()})
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	ls, err := bc.NewLease(ctx, api.LeaseRequest{Best: map[string]string{"region": spec.Region, "profile": spec.Hardware.Profile},
		Appliance: app.CID, For: api.Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	ended := false
	defer func() {
		if !ended {
			_, _ = bc.EndLease(context.WithoutCancel(ctx), ls.ID)
		}
	}()
	wait := func(what string, within time.Duration, cond func() (bool, error)) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		if err := poll(wctx, 50*time.Millisecond, cond); err != nil {
			for _, nd := range n.Manifest().Nodes {
				t.Logf("the end of %s's log:\n%s", nd.Name, tail(filepath.Join(nd.Home, LogFile), 15))
			}
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
	}
	wait("the lease runs", 20*time.Second, func() (bool, error) {
		l, err := bc.Lease(ctx, ls.ID)
		if err == nil && l.State == string(protocol.StateEnded) {
			return false, fmt.Errorf("lease ended: %s %s", l.Cause, l.Detail)
		}
		return err == nil && l.State == string(protocol.StateRunning), nil
	})
	receipts := func(c *api.Client) []api.Receipt {
		r, err := c.Receipts(ctx, ls.ID)
		if err != nil {
			return nil
		}
		return r.Receipts
	}
	wait("a receipt acknowledged", 3*spec.ReceiptInterval.Std(), func() (bool, error) {
		rs := receipts(bc)
		return len(rs) > 0 && rs[len(rs)-1].State == api.ReceiptAcked, nil
	})
	ins, err := sc.Instances(ctx)
	if err != nil || len(ins) != 1 || ins[0].LeaseID != ls.ID || ins[0].PID <= 0 {
		t.Fatalf("the seller's instances: %+v %v", ins, err)
	}
	instance = ins[0].PID
	t.Logf("lease %s running, first receipt acknowledged, %v after asking", ls.ID, time.Since(t1))

	// The seller, cut off: a receipt goes unanswered.
	t2 := time.Now()
	if _, err := n.Partition(ctx, "seller-1"); err != nil {
		t.Fatal(err)
	}
	var unanswered uint64
	wait("a receipt unanswered at the seller", 2*spec.ReceiptInterval.Std()+2*time.Second, func() (bool, error) {
		for _, r := range receipts(sc) {
			if r.State == api.ReceiptPending {
				unanswered = r.Seq
				return true, nil
			}
		}
		return false, nil
	})
	if rs := receipts(bc); len(rs) > 0 && rs[len(rs)-1].Seq >= unanswered {
		t.Fatalf("the buyer holds receipt %d while the seller is cut off", rs[len(rs)-1].Seq)
	}
	healed, err := n.Heal(ctx)
	if err != nil || len(healed) != 1 {
		t.Fatalf("heal: %v %v", healed, err)
	}
	t.Logf("seller-1 cut off for %v: receipt %d unanswered", time.Since(t2), unanswered)

	// Healed: the buyer's answer to it crosses. It acknowledges it, or,
	// when its probes of the instance went unanswered while the seller
	// was cut off, disputes it: both are the market at work.
	t3 := time.Now()
	var answer string
	wait("the unanswered receipt answered after heal", 20*time.Second, func() (bool, error) {
		rs := receipts(sc)
		if len(rs) >= int(unanswered) && rs[unanswered-1].State != api.ReceiptPending {
			answer = rs[unanswered-1].State
			return true, nil
		}
		return false, nil
	})
	t.Logf("receipt %d %s %v after heal", unanswered, answer, time.Since(t3))
	if _, err := bc.EndLease(ctx, ls.ID); err != nil {
		// The seller may have ended it: a dispute leaves later receipts
		// unacknowledged past the grace.
		if l, lerr := bc.Lease(ctx, ls.ID); lerr != nil || l.State != string(protocol.StateEnded) {
			t.Fatalf("end lease: %v (lease %+v)", err, l)
		}
	}
	ended = true
	t4 := time.Now()
	var sb, ss api.LeaseSettlement
	wait("settled on both sides", 30*time.Second, func() (bool, error) {
		var err1, err2 error
		sb, err1 = bc.Settlement(ctx, ls.ID)
		ss, err2 = sc.Settlement(ctx, ls.ID)
		done := func(st string) bool { return st == "settled" || st == "disputed" }
		return err1 == nil && err2 == nil && done(sb.Status) && done(ss.Status) && sb.Settlement != nil && ss.Settlement != nil, nil
	})
	if sb.Settlement.CID != ss.Settlement.CID || sb.Status != ss.Status || sb.Settlement.HeadSeq < unanswered ||
		!sb.Settlement.SellerSigned || !sb.Settlement.BuyerSigned {
		t.Fatalf("settlements: buyer %s %+v, seller %s %+v", sb.Status, sb.Settlement, ss.Status, ss.Settlement)
	}
	if answer == api.ReceiptAcked && sb.Status != "settled" {
		t.Fatalf("every receipt acknowledged, yet the lease is %s: %+v", sb.Status, sb.Settlement)
	}
	t.Logf("%s (%d receipts, total %d %s) %v after the end", sb.Status, sb.Settlement.HeadSeq, sb.Settlement.Total, sb.Currency, time.Since(t4))

	// Down: no namespace, link, bridge or process left.
	res, err := n.Down(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != Stopped {
			t.Errorf("%s: %s %s", r.Name, r.Outcome, r.Detail)
		}
	}
	if left := netnsLinks(t, netnsID(m.Dir)); len(left) > 0 {
		t.Fatalf("after down:\n%s", strings.Join(left, "\n"))
	}
	for _, nd := range m.Nodes {
		if st, _ := probe(m.Binary, nd); st == procOurs {
			t.Errorf("%s: pid %d runs after down", nd.Name, nd.PID)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := poll(wctx, 20*time.Millisecond, func() (bool, error) { return !pidRuns(instance), nil }); err != nil {
		t.Errorf("instance pid %d runs after down", instance)
	}
	t.Logf("whole test: %v", time.Since(t0))
}
