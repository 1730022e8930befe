package procnet

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/runtime/process"
	"github.com/spotmesh/spotmesh/protocol"
)

// fakeEnv makes the test binary, copied in as a testnet's binary, act as
// a daemon that does nothing: "term" ends on SIGTERM, "stubborn" ignores
// it and needs SIGKILL.
const fakeEnv = "PROCNET_TEST_FAKE_DAEMON"

func TestMain(m *testing.M) {
	// The fake writes "ready" in its working directory (its home) once
	// its signals are set up.
	ready := func() {
		if err := os.WriteFile("ready", nil, 0o600); err != nil {
			os.Exit(4)
		}
	}
	switch os.Getenv(fakeEnv) {
	case "":
	case "term":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		ready()
		<-c
		os.Exit(0)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		ready()
		for {
			time.Sleep(time.Hour)
		}
	default:
		os.Exit(3)
	}
	goleak.VerifyTestMain(m)
}

func TestParseStat(t *testing.T) {
	tail := " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21 22\n"
	for _, tc := range []struct {
		name, in  string
		state     byte
		start     uint64
		wantError bool
	}{
		{"plain", "123 (spotmesh)" + tail, 'S', 424242, false},
		{"spaces and parens in the name", "123 (a) b (c)" + tail, 'S', 424242, false},
		{"zombie", "123 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 20\n", 'Z', 99, false},
		{"no parens", "123 spotmesh S 1 2", 0, 0, true},
		{"short", "123 (x) S 1 2 3", 0, 0, true},
		{"bad start", "123 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 nine 20\n", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := parseStat(123, []byte(tc.in))
			if (err != nil) != tc.wantError {
				t.Fatalf("err = %v, want error %v", err, tc.wantError)
			}
			if err == nil && (st.state != tc.state || st.start != tc.start) {
				t.Fatalf("got state %c start %d, want %c %d", st.state, st.start, tc.state, tc.start)
			}
		})
	}
	// This process's own stat parses, and says it runs.
	st, err := readStat(os.Getpid())
	if err != nil || st.ended() || st.start == 0 {
		t.Fatalf("own stat: %+v %v", st, err)
	}
}

func TestRuns(t *testing.T) {
	const bin, home = "/tn/bin/spotmesh", "/tn/seller-1"
	nul := func(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }
	for _, tc := range []struct {
		name    string
		cmdline []byte
		want    bool
	}{
		{"the daemon", nul(bin, "run", "--home", home), true},
		{"--home=", nul(bin, "run", "--home="+home), true},
		{"under an interpreter", nul("/bin/sh", bin, "run", "--home", home), true},
		{"another home", nul(bin, "run", "--home", "/tn/seller-10"), false},
		{"another binary", nul("/usr/bin/spotmesh", "run", "--home", home), false},
		{"home only as a later argument", nul("/bin/sleep", "1", bin, "--home", home), false},
		{"--home without a value", nul(bin, "run", "--home"), false},
		{"empty (a zombie)", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runs(tc.cmdline, bin, home); got != tc.want {
				t.Fatalf("runs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" for none
	}{
		{"default", func(*Config) {}, ""},
		{"no dir", func(c *Config) { c.Dir = "" }, "dir"},
		{"no sellers", func(c *Config) { c.Sellers = 0 }, "sellers 0"},
		{"too many sellers", func(c *Config) { c.Sellers = MaxNodes + 1 }, "sellers"},
		{"no buyers", func(c *Config) { c.Buyers = 0 }, "buyers 0"},
		{"too many in all", func(c *Config) { c.Sellers, c.Buyers = 40, 40 }, "in all"},
		{"most in all", func(c *Config) { c.Sellers, c.Buyers = MaxNodes-1, 1 }, ""},
		{"no offers", func(c *Config) { c.OffersPerSeller = 0 }, "offers per seller"},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "log level"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig("/tmp/x")
			tc.change(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// The sellers' offers pass the checks a node applies, vary, and suit
// quick scenarios.
func TestOfferSpecs(t *testing.T) {
	regions, prices := map[string]bool{}, map[int64]bool{}
	for i := 1; i <= MaxNodes; i++ {
		keys := map[string]bool{}
		for _, s := range offerSpecs(i, MaxOffersPerSeller) {
			if keys[s.Key] {
				t.Fatalf("seller %d: key %s twice", i, s.Key)
			}
			keys[s.Key] = true
			if err := protocol.ValidateName("key", s.Key); err != nil {
				t.Fatal(err)
			}
			if err := protocol.ValidateRegion(s.Region); err != nil {
				t.Fatal(err)
			}
			if err := protocol.ValidateName("profile", s.Hardware.Profile); err != nil {
				t.Fatal(err)
			}
			if err := s.Price.Validate(); err != nil || s.Price.Micro <= 0 {
				t.Fatalf("price %v: %v", s.Price, err)
			}
			if ri := s.ReceiptInterval.Std(); ri < time.Second || ri > 5*time.Second {
				t.Fatalf("receipt interval %v: want 1s to 5s", ri)
			}
			if g := s.PaymentGrace.Std(); g < s.ReceiptInterval.Std() || g > 15*time.Second {
				t.Fatalf("grace %v with interval %v", g, s.ReceiptInterval.Std())
			}
			if s.Slots == 0 || s.MinLease > s.MaxLease || (s.Hardware.GPUs == 0) != (s.Hardware.GPUModel == "") {
				t.Fatalf("bad spec %+v", s)
			}
			regions[s.Region] = true
			prices[s.Price.Micro] = true
		}
	}
	if len(regions) < 5 || len(prices) < 20 {
		t.Fatalf("%d regions and %d prices: want variety", len(regions), len(prices))
	}
}

func TestNameList(t *testing.T) {
	nodes := []Node{{Name: "boot", Role: RoleBoot}}
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, Node{Name: "seller-" + strconv.Itoa(i), Role: RoleSeller})
	}
	nodes = append(nodes, Node{Name: "buyer-1", Role: RoleBuyer})
	if got, want := nameList(nodes), "boot, seller-1..seller-3, buyer-1"; got != want {
		t.Fatalf("nameList = %q, want %q", got, want)
	}
}

func TestMetricValue(t *testing.T) {
	text := "# HELP spotmesh_offers_mesh_peers x\nspotmesh_offers_mesh_peers_total 9\nspotmesh_offers_mesh_peers 2\n"
	if v, ok := metricValue(text, meshMetric); !ok || v != 2 {
		t.Fatalf("got %v %v", v, ok)
	}
	if _, ok := metricValue("other 1\n", meshMetric); ok {
		t.Fatal("found a metric that is not there")
	}
}

// fakeNet lays out a testnet whose "binary" is this test binary acting as
// a daemon (fakeEnv) and starts one process per mode.
func fakeNet(t *testing.T, modes ...string) *Net {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := copyBinary(exe, filepath.Join(dir, BinDir, BinaryName))
	if err != nil {
		t.Fatal(err)
	}
	m := Manifest{Version: ManifestVersion, Dir: dir, Binary: bin, Created: time.Now()}
	for i, mode := range modes {
		nd := Node{Name: "seller-" + strconv.Itoa(i+1), Role: RoleSeller, Home: filepath.Join(dir, "seller-"+strconv.Itoa(i+1))}
		if err := os.MkdirAll(nd.Home, 0o700); err != nil {
			t.Fatal(err)
		}
		nd.PID, nd.StartTime, err = spawn(bin, []string{"run", "--home", nd.Home}, nd.Home,
			filepath.Join(nd.Home, LogFile), append(os.Environ(), fakeEnv+"="+mode))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { killByPID(t, bin, nd) })
		m.Nodes = append(m.Nodes, nd)
	}
	for _, nd := range m.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
			_, err := os.Stat(filepath.Join(nd.Home, "ready"))
			return err == nil, nil
		})
		cancel()
		if err != nil {
			t.Fatalf("%s: the fake daemon did not get ready: %v", nd.Name, err)
		}
	}
	if err := writeManifest(m); err != nil {
		t.Fatal(err)
	}
	n, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// killByPID ends a process a test started, if it still runs as that
// node, and reaps it.
func killByPID(t *testing.T, bin string, nd Node) {
	if st, _ := probe(bin, nd); st == procOurs {
		_ = syscall.Kill(nd.PID, syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := waitGone(ctx, nd); err != nil {
			t.Errorf("%s: pid %d survives SIGKILL", nd.Name, nd.PID)
		}
	}
	reap(nd.PID)
}

// writeInstance writes a process driver's record of an instance under
// home. With bin, it starts the instance (bin as a fake daemon, in its own
// session) and records its PID and start time; without, it records pid and
// start as given.
func writeInstance(t *testing.T, bin, home, lease string, pid int, start uint64) Node {
	t.Helper()
	dir := filepath.Join(home, node.InstancesDir, lease)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	nd := Node{Name: lease, Home: dir, PID: pid, StartTime: start}
	if bin != "" {
		var err error
		nd.PID, nd.StartTime, err = spawn(bin, []string{"run", "--home", dir}, dir,
			filepath.Join(dir, "output.log"), append(os.Environ(), fakeEnv+"=term"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { killByPID(t, bin, nd) })
	}
	b, err := json.Marshal(map[string]any{"pid": nd.PID, "start_ticks": nd.StartTime, "state": "running"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, process.RecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return nd
}

func alive(t *testing.T, n *Net, name string) bool {
	t.Helper()
	ok, _, err := n.Running(name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestKillAndDown(t *testing.T) {
	n := fakeNet(t, "term", "term", "stubborn", "term")
	ctx := context.Background()
	for _, nd := range n.Manifest().Nodes {
		if !alive(t, n, nd.Name) {
			t.Fatalf("%s: not running after spawn", nd.Name)
		}
	}

	// seller-4's PID now runs another process: this test's own. The
	// start time differs, so it is refused and left alone.
	m := n.Manifest()
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	killByPID(t, m.Binary, m.Nodes[3])
	m.Nodes[3].PID = os.Getpid()
	if err := writeManifest(m); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Kill(ctx, "seller-4"); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("kill of a reused PID: %v, want ErrNotOurs", err)
	}
	// With the start time right, the command line still tells it apart.
	m.Nodes[3].StartTime = self.start
	if err := writeManifest(m); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Kill(ctx, "seller-4"); !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "not "+m.Binary) {
		t.Fatalf("kill of another program: %v, want ErrNotOurs naming the binary", err)
	}

	if _, err := n.Kill(ctx, "seller-9"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("kill of an unknown node: %v", err)
	}
	if _, err := n.Kill(ctx, "seller-1"); err != nil {
		t.Fatal(err)
	}
	if alive(t, n, "seller-1") {
		t.Fatal("seller-1 runs after kill")
	}
	if _, err := n.Kill(ctx, "seller-1"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("second kill: %v, want ErrNotRunning", err)
	}

	st := n.Status(ctx)
	if len(st) != 4 || st[0].Alive || !st[1].Alive || st[3].Alive || !strings.Contains(st[0].Note, "exited") {
		t.Fatalf("status: %+v", st)
	}
	if st[1].RSS == 0 || st[1].Note == "" {
		t.Fatalf("status of a live node without an API: want its RSS and a note, got %+v", st[1])
	}

	// A node that up never got to start has PID 0.
	m = n.Manifest()
	m.Nodes = append(m.Nodes, Node{Name: "buyer-1", Role: RoleBuyer, Home: filepath.Join(m.Dir, "buyer-1")})
	if err := writeManifest(m); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Kill(ctx, "buyer-1"); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "never started") {
		t.Fatalf("kill of a node never started: %v", err)
	}

	// seller-2's process driver left an instance running (instances
	// outlive their node); seller-3's record names a PID now another
	// process's: this test's own, with another start time.
	inst := writeInstance(t, m.Binary, filepath.Join(m.Dir, "seller-2"), "lease-a", 0, 0)
	writeInstance(t, "", filepath.Join(m.Dir, "seller-3"), "lease-b", os.Getpid(), self.start+1)

	res, err := n.Down(ctx, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{NotRunning, Stopped, Killed, LeftAlone, NotRunning}
	wantInstances := []int{0, 1, 0, 0, 0}
	for i, r := range res {
		if r.Outcome != want[i] || r.Instances != wantInstances[i] {
			t.Errorf("%s: %s (%s), %d instances killed; want %s, %d", r.Name, r.Outcome, r.Detail, r.Instances, want[i], wantInstances[i])
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reap(inst.PID)
	if err := waitGone(wctx, inst); err != nil {
		t.Errorf("seller-2's instance (pid %d) runs after down", inst.PID)
	}
	for _, nd := range n.Manifest().Nodes[:3] {
		if alive(t, n, nd.Name) {
			t.Errorf("%s runs after down", nd.Name)
		}
	}
	// This process was left alone, or the test would not be here.
	if _, err := os.Stat(filepath.Join(n.Dir(), "seller-1", LogFile)); err != nil {
		t.Fatalf("down removed a log: %v", err)
	}
}

func TestLockRefusesASecondHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	unlock, err := lockDir(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDir(path, 100*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock: %v, want ErrBusy", err)
	}
	unlock()
	unlock2, err := lockDir(path, 0)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestUpRefusesADirInUse(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(dir)
	cfg.Binary = "/nonexistent"
	if _, err := Up(context.Background(), cfg); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("up in a non-empty dir: %v, want ErrExists naming the file", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockFile)); err == nil {
		t.Fatal("up wrote its lock into a directory it refused")
	}

	// A stopped testnet is refused too, with the way to start it.
	n := fakeNet(t, "term")
	if _, err := n.Down(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = n.Dir()
	if _, err := Up(context.Background(), cfg); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--all") {
		t.Fatalf("up on a stopped testnet: %v", err)
	}
	// And a running one.
	r := fakeNet(t, "term")
	cfg.Dir = r.Dir()
	if _, err := Up(context.Background(), cfg); !errors.Is(err, ErrRunning) {
		t.Fatalf("up on a running testnet: %v, want ErrRunning", err)
	}
}

func TestSeekTailHelpers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := tail(path, 2); got != "    b\n    c" {
		t.Fatalf("tail = %q", got)
	}
}

func TestSeekLastLines(t *testing.T) {
	long := strings.Repeat("x", 100<<10) // longer than one chunk
	for _, tc := range []struct {
		name, in string
		k        int
		want     string
	}{
		{"last two", "a\nb\nc\n", 2, "b\nc\n"},
		{"more than there are", "a\nb\n", 5, "a\nb\n"},
		{"no final newline", "a\nb\nc", 1, "c"},
		{"one", "a\nb\nc\n", 1, "c\n"},
		{"empty", "", 3, ""},
		{"across chunks", "first\n" + long + "\nlast\n", 2, long + "\nlast\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			if err := os.WriteFile(path, []byte(tc.in), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := SeekLastLines(f, tc.k); err != nil {
				t.Fatal(err)
			}
			b := new(strings.Builder)
			buf := make([]byte, 1<<20)
			for {
				n, err := f.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if b.String() != tc.want {
				t.Fatalf("got %q, want %q", trim(b.String()), trim(tc.want))
			}
		})
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:20] + "…" + s[len(s)-20:]
	}
	return s
}
