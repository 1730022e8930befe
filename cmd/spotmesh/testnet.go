package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spotmesh/spotmesh/protocol"
	"github.com/spotmesh/spotmesh/testnet/procnet"
)

var testnetGroup = group{
	name: "testnet", verbs: testnetVerbs,
	aliases: map[string]string{"stop": "down", "log": "logs", "ls": "status"},
	flags: map[string]func() *flags{
		"up": helpFlags(testnetUpFlags), "start": helpFlags(testnetStartFlags), "logs": helpFlags(testnetLogsFlags),
		"down": helpFlags(testnetDownFlags), "scenario": helpFlags(testnetScenarioFlags),
		"status": testnetDirOnly("status"), "kill": testnetDirOnly("kill"),
		"partition": testnetDirOnly("partition"), "heal": testnetDirOnly("heal"),
	},
	footer: "A testnet is one directory: <dir>/bin/spotmesh (the binary, copied at up), <dir>/testnet.json\n" +
		"(every node's PID, API and peer ID) and a home per node with its daemon.log. kill, start and\n" +
		"down signal only the PIDs recorded there, after checking each still runs that binary with\n" +
		"that node's home. Point the CLI at a node with --home <dir>/<name>.\n" +
		"With up --netns (Linux, as root) each node runs in a network namespace of its own, joined by a\n" +
		"bridge: partition cuts nodes off, heal brings them back, down removes the namespaces and bridge.\n" +
		"Run 'spotmesh help testnet up' (or scenario, start, logs, down) for its flags.\n",
}

func testnetVerbs() []verb {
	return []verb{
		{"up", "--dir DIR [--sellers N] [--buyers N] [--offers N] [--netns] [--timeout 1m]",
			"boot daemons on loopback, or each in its own network namespace (a boot node, sellers with offers, buyers) and wait until every book holds every offer", cmdTestnetUp},
		{"status", "--dir DIR", "show each node (alive or dead) and its peers, book, offers, leases and memory", cmdTestnetStatus},
		{"scenario", "--dir DIR [--lease 1m] [--receipts N] [--fault kill-seller] [--timeout 2m]",
			"run the market's whole cycle: offers, every buyer's best lease, instance, receipts, end, settlement; report each step's time and fail if a check fails", cmdTestnetScenario},
		{"kill", "--dir DIR NAME", "kill -9 one node's daemon: a crash, for tests of faults", cmdTestnetKill},
		{"start", "--dir DIR NAME... | --all", "start stopped nodes again with the same home (key, config, database)", cmdTestnetStart},
		{"logs", "--dir DIR NAME [-f] [-n N]", "print a node's daemon log; -f follows it", cmdTestnetLogs},
		{"partition", "--dir DIR NAME...", "cut nodes off from the rest (a testnet up with --netns): they reach each other and this host, not the other nodes", cmdTestnetPartition},
		{"heal", "--dir DIR [NAME...]", "bring nodes cut off back (every one, without names)", cmdTestnetHeal},
		{"down", "--dir DIR [--grace 10s]", "stop the daemons the testnet started (SIGTERM, then SIGKILL) and remove the namespaces it made; keeps homes and logs", cmdTestnetDown},
	}
}

// testnetDirOnly: the flags of a testnet verb that takes only --dir.
func testnetDirOnly(verb string) func() *flags {
	return func() *flags { f := newFlags("testnet " + verb); testnetDir(f); return f }
}

func testnetDir(f *flags) *string {
	return f.str("dir", "", "the testnet's `directory`")
}

// openTestnet reads the testnet of --dir, with errors for people.
func openTestnet(f *flags, dir string) (*procnet.Net, error) {
	if err := f.require("dir"); err != nil {
		return nil, err
	}
	net, err := procnet.Open(dir)
	if errors.Is(err, procnet.ErrNoTestnet) {
		return nil, fmt.Errorf("no testnet in %s (no %s): boot one with 'spotmesh testnet up --dir %s'", dir, procnet.ManifestFile, dir)
	}
	return net, err
}

// testnetError puts a procnet error in the CLI's exit codes: an unknown
// node name is a bad value.
func testnetError(err error) error {
	if errors.Is(err, procnet.ErrUnknownNode) {
		return usageError{err}
	}
	return err
}

type testnetUp struct {
	dir                     *string
	sellers, buyers, offers *uint32
	timeout                 *time.Duration
	netns                   *bool
}

func testnetUpFlags() (*flags, *testnetUp) {
	f := newFlags("testnet up")
	return f, &testnetUp{
		dir:     f.str("dir", "", "the testnet's `directory`: new or empty"),
		sellers: f.uint32("sellers", 3, fmt.Sprintf("number of sellers, a `count`: 1 to %d (default 3)", procnet.MaxNodes)),
		buyers:  f.uint32("buyers", 1, fmt.Sprintf("number of buyers, a `count`: 1 to %d, and %d nodes in all (default 1)", procnet.MaxNodes, procnet.MaxNodes)),
		offers:  f.uint32("offers", 2, fmt.Sprintf("offers each seller publishes, a `count`: 1 to %d (default 2)", procnet.MaxOffersPerSeller)),
		timeout: f.duration("timeout", time.Minute, "how long to wait, a `duration`, for the nodes to start and the offers to reach every book (default 1m)"),
		netns:   netnsFlag(f),
	}
}

func cmdTestnetUp(ctx context.Context, c *cli, args []string) error {
	f, o := testnetUpFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if err := f.require("dir"); err != nil {
		return err
	}
	s, b := *o.sellers, *o.buyers
	switch {
	case s < 1 || s > procnet.MaxNodes:
		return usagef("--sellers %d: want 1 to %d", s, procnet.MaxNodes)
	case b < 1 || b > procnet.MaxNodes:
		return usagef("--buyers %d: want 1 to %d", b, procnet.MaxNodes)
	case uint64(s)+uint64(b) > procnet.MaxNodes:
		return usagef("--sellers %d --buyers %d: want at most %d nodes in all", s, b, procnet.MaxNodes)
	case *o.offers < 1 || *o.offers > procnet.MaxOffersPerSeller:
		return usagef("--offers %d: want 1 to %d", *o.offers, procnet.MaxOffersPerSeller)
	case *o.timeout <= 0:
		return usagef("--timeout 0s: want a duration like 1m")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := procnet.DefaultConfig(*o.dir)
	cfg.Sellers, cfg.Buyers, cfg.OffersPerSeller, cfg.Timeout = int(s), int(b), int(*o.offers), *o.timeout
	cfg.Netns = netnsOrLoopback(c, *o.netns)
	if c.logLevelSet {
		cfg.LogLevel = c.logLevel
	}
	level := slog.LevelWarn
	if c.logLevelSet {
		_ = level.UnmarshalText([]byte(c.logLevel))
	}
	cfg.Logger = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	t0 := time.Now()
	net, err := procnet.Up(ctx, cfg)
	if errors.Is(err, procnet.ErrNotReady) {
		return fmt.Errorf("%w\n(not within --timeout %s: a loaded machine may need a longer one)", err, protocol.FormatDuration(*o.timeout))
	}
	if err != nil {
		return err
	}
	m := net.Manifest()
	if c.json {
		return c.printJSON(m)
	}
	fmt.Fprintf(c.stdout, "testnet up in %s: %d nodes; every book holds all %d offers (%s)\n\n",
		m.Dir, len(m.Nodes), len(m.Offers), roundDuration(time.Since(t0)))
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tROLE\tPID\tAPI\tPEER ID")
	for _, n := range m.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", n.Name, n.Role, n.PID, n.APIAddr, n.PeerID)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	printNetwork(c.stdout, m)
	dir := *o.dir
	fmt.Fprintf(c.stdout, "\nstatus:  spotmesh testnet status --dir %s\n", dir)
	fmt.Fprintf(c.stdout, "a node:  spotmesh --home %s book\n", filepath.Join(dir, m.Nodes[len(m.Nodes)-1].Name))
	fmt.Fprintf(c.stdout, "logs:    spotmesh testnet logs --dir %s %s\n", dir, m.Nodes[1].Name)
	printNetnsHints(c.stdout, m, dir)
	fmt.Fprintf(c.stdout, "stop:    spotmesh testnet down --dir %s\n", dir)
	return nil
}

// testnetStatus is what status prints with --json.
type testnetStatus struct {
	Dir string `json:"dir"`
	// Offers are the offers the sellers published at up.
	Offers []procnet.Offer      `json:"offers"`
	Nodes  []procnet.NodeStatus `json:"nodes"`
	// Network is the network of namespaces of a testnet up with --netns,
	// with its partitions.
	Network *procnet.Network `json:"network,omitempty"`
}

func cmdTestnetStatus(ctx context.Context, c *cli, args []string) error {
	f := newFlags("testnet status")
	dir := testnetDir(f)
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	net, err := openTestnet(f, *dir)
	if err != nil {
		return err
	}
	m := net.Manifest()
	st := net.Status(ctx)
	if c.json {
		return c.printJSON(testnetStatus{Dir: m.Dir, Offers: orEmpty(m.Offers), Nodes: st, Network: m.Network})
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tROLE\tALIVE\tPID\tPEERS\tBOOK\tMISSING\tOFFERS\tLEASES\tRSS\tAPI\tNOTE")
	alive, complete := 0, 0
	for _, s := range st {
		if !s.Alive {
			fmt.Fprintf(w, "%s\t%s\tno\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", s.Name, s.Role, s.Note)
			continue
		}
		alive++
		if len(s.Missing) == 0 && s.Note == "" {
			complete++
		}
		leases := fmt.Sprint(s.Leases)
		if s.OpenLeases > 0 {
			leases = fmt.Sprintf("%d (%d open)", s.Leases, s.OpenLeases)
		}
		fmt.Fprintf(w, "%s\t%s\tyes\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Role, s.PID, s.Peers, s.Book,
			len(s.Missing), s.Offers, leases, protocol.FormatSize(s.RSS), s.APIAddr, s.Note)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d of %d nodes alive; %d of them hold all %d offers published at up.\n", alive, len(st), complete, len(m.Offers))
	printPartitions(c.stdout, m)
	return nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// testnetNodeArg reads the one node name of kill and logs.
func testnetNodeArg(pos []string) (string, error) {
	if len(pos) != 1 {
		return "", usagef("want one node name, like seller-3; 'spotmesh testnet status --dir DIR' lists them")
	}
	return pos[0], nil
}

func cmdTestnetKill(ctx context.Context, c *cli, args []string) error {
	f := newFlags("testnet kill")
	dir := testnetDir(f)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	name, err := testnetNodeArg(pos)
	if err != nil {
		return err
	}
	net, err := openTestnet(f, *dir)
	if err != nil {
		return err
	}
	n, err := net.Kill(ctx, name)
	if errors.Is(err, procnet.ErrNotRunning) {
		return fmt.Errorf("%w: start it with 'spotmesh testnet start --dir %s %s'", err, *dir, name)
	}
	if err != nil {
		return testnetError(err)
	}
	if c.json {
		return c.printJSON(n)
	}
	fmt.Fprintf(c.stdout, "killed %s (pid %d, SIGKILL); bring it back with: spotmesh testnet start --dir %s %s\n", n.Name, n.PID, *dir, n.Name)
	return nil
}

type testnetStart struct {
	dir     *string
	all     *bool
	timeout *time.Duration
}

func testnetStartFlags() (*flags, *testnetStart) {
	f := newFlags("testnet start")
	return f, &testnetStart{
		dir:     testnetDir(f),
		all:     f.boolean("all", false, "start every node that is not running, the boot node first"),
		timeout: f.duration("timeout", 30*time.Second, "how long to wait, a `duration`, for each node's API to answer (default 30s)"),
	}
}

func cmdTestnetStart(ctx context.Context, c *cli, args []string) error {
	f, o := testnetStartFlags()
	names, err := f.parse(args)
	if err != nil {
		return err
	}
	if *o.all == (len(names) > 0) {
		return usagef("want node names, like seller-3, or --all (not both)")
	}
	if *o.timeout <= 0 {
		return usagef("--timeout 0s: want a duration like 30s")
	}
	net, err := openTestnet(f, *o.dir)
	if err != nil {
		return err
	}
	if *o.all {
		for _, n := range net.Manifest().Nodes {
			if up, _, _ := net.Running(n.Name); !up {
				names = append(names, n.Name)
			}
		}
		if len(names) == 0 && !c.json {
			fmt.Fprintln(c.stdout, "every node runs already")
			return nil
		}
	}
	for _, name := range names {
		if _, err := net.Node(name); err != nil {
			return testnetError(err)
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := []procnet.Node{}
	for _, name := range names {
		sctx, cancel := context.WithTimeout(ctx, *o.timeout)
		n, err := net.Start(sctx, name)
		cancel()
		if err != nil {
			return testnetError(err)
		}
		started = append(started, n)
		if !c.json {
			fmt.Fprintf(c.stdout, "started %s: pid %d, api %s, peer %s\n", n.Name, n.PID, n.APIAddr, n.PeerID)
		}
	}
	if c.json {
		return c.printJSON(started)
	}
	return nil
}

type testnetLogs struct {
	dir    *string
	follow *bool
	lines  *uint32
}

func testnetLogsFlags() (*flags, *testnetLogs) {
	f := newFlags("testnet logs")
	return f, &testnetLogs{
		dir:    testnetDir(f),
		follow: f.boolean("f", false, "follow: print lines as they come, until Ctrl-C"),
		lines:  f.uint32("n", 0, "print only the last `count` lines (default all)"),
	}
}

func cmdTestnetLogs(ctx context.Context, c *cli, args []string) error {
	f, o := testnetLogsFlags()
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	name, err := testnetNodeArg(pos)
	if err != nil {
		return err
	}
	net, err := openTestnet(f, *o.dir)
	if err != nil {
		return err
	}
	path, err := net.LogPath(name)
	if err != nil {
		return testnetError(err)
	}
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s has no log yet: %w", name, err)
	}
	defer file.Close()
	if *o.lines > 0 {
		if err := procnet.SeekLastLines(file, int(*o.lines)); err != nil {
			return err
		}
	}
	if _, err := io.Copy(c.stdout, file); err != nil {
		return err
	}
	if !*o.follow {
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := io.Copy(c.stdout, file); err != nil {
			return err
		}
	}
}

type testnetDown struct {
	dir   *string
	grace *time.Duration
}

func testnetDownFlags() (*flags, *testnetDown) {
	f := newFlags("testnet down")
	return f, &testnetDown{
		dir:   testnetDir(f),
		grace: f.duration("grace", 10*time.Second, "how long each daemon may take, a `duration`, to stop after SIGTERM before SIGKILL (default 10s)"),
	}
}

// testnetDownResult is what down prints with --json.
type testnetDownResult struct {
	Dir   string               `json:"dir"`
	Nodes []procnet.StopResult `json:"nodes"`
}

func cmdTestnetDown(ctx context.Context, c *cli, args []string) error {
	f, o := testnetDownFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	net, err := openTestnet(f, *o.dir)
	if err != nil {
		return err
	}
	before := net.Manifest()
	res, err := net.Down(ctx, *o.grace)
	if c.json {
		if perr := c.printJSON(testnetDownResult{Dir: net.Dir(), Nodes: orEmpty(res)}); perr != nil {
			return perr
		}
		return err
	}
	if res != nil {
		w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tPID\tOUTCOME\tDETAIL")
		counts, instances := map[string]int{}, 0
		for _, r := range res {
			detail := r.Detail
			if r.Took > 0 {
				detail = strings.TrimSpace(fmt.Sprintf("in %s %s", roundDuration(r.Took.Std()), detail))
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", r.Name, r.PID, r.Outcome, detail)
			counts[r.Outcome]++
			instances += r.Instances
		}
		if err := w.Flush(); err != nil {
			return err
		}
		note := ""
		if instances > 0 {
			note = fmt.Sprintf("; %d instance(s) the sellers left running killed", instances)
		}
		if err == nil {
			note += downNetworkNote(before)
		}
		fmt.Fprintf(c.stdout, "\n%d stopped, %d killed, %d not running, %d left alone; homes and logs stay in %s%s\n",
			counts[procnet.Stopped], counts[procnet.Killed], counts[procnet.NotRunning], counts[procnet.LeftAlone], net.Dir(), note)
	}
	return err
}

type testnetScenario struct {
	dir               *string
	lease, interval   *time.Duration
	receipts          *uint32
	fault             *string
	downtime, timeout *time.Duration
}

func testnetScenarioFlags() (*flags, *testnetScenario) {
	f := newFlags("testnet scenario")
	d := procnet.DefaultScenarioConfig()
	return f, &testnetScenario{
		dir:      testnetDir(f),
		lease:    f.duration("lease", d.Lease, "each buyer's lease, a `duration` (default 1m); the buyer ends it after --receipts acknowledged receipts"),
		interval: f.duration("receipt-interval", d.ReceiptInterval, "the receipt interval, a `duration`, of the offers the scenario publishes (default 1s)"),
		receipts: f.uint32("receipts", uint32(d.Receipts), "how many receipts, a `count`, each buyer acknowledges before it ends its lease (default 3)"),
		fault: f.str("fault", "", "a fault to inject: `kill-seller` kills the seller of buyer-1's lease mid-lease (SIGKILL) and starts it again after --downtime;\n"+
			"partition-seller (a --netns testnet) cuts that seller off for --downtime, then heals;\n"+
			"the lease must still end settled or disputed, the same on both sides"),
		downtime: f.duration("downtime", d.Downtime, "how long the fault lasts: the seller down or cut off, a `duration` (default 2s)"),
		timeout:  f.duration("timeout", d.Timeout, "how long the whole scenario may take, a `duration` (default 2m)"),
	}
}

func cmdTestnetScenario(ctx context.Context, c *cli, args []string) error {
	f, o := testnetScenarioFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	cfg := procnet.DefaultScenarioConfig()
	cfg.Lease, cfg.ReceiptInterval, cfg.Receipts = *o.lease, *o.interval, int(*o.receipts)
	cfg.Fault, cfg.Downtime, cfg.Timeout = *o.fault, *o.downtime, *o.timeout
	if err := cfg.Validate(); err != nil {
		return usageError{scenarioFlagWords(err)}
	}
	net, err := openTestnet(f, *o.dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := c.stdout
	if c.json {
		progress = c.stderr
	}
	t0 := time.Now()
	cfg.Progress = func(ev procnet.Event) {
		fmt.Fprintf(progress, "%7s  %s\n", "+"+ev.At.Sub(t0).Round(100*time.Millisecond).String(), ev.Text)
	}
	rep, err := net.Scenario(ctx, cfg)
	if rep == nil {
		return err
	}
	if c.json {
		if perr := c.printJSON(rep); perr != nil {
			return perr
		}
	} else {
		fmt.Fprintln(c.stdout)
		if perr := printScenario(c.stdout, rep); perr != nil {
			return perr
		}
	}
	return err
}

// scenarioFlagWords puts a ScenarioConfig error in the flags' words.
func scenarioFlagWords(err error) error {
	s := strings.TrimPrefix(err.Error(), "scenario: ")
	for field, flag := range map[string]string{"lease ": "--lease ", "receipt interval ": "--receipt-interval ", "receipts ": "--receipts ",
		"fault ": "--fault ", "downtime ": "--downtime ", "timeout ": "--timeout "} {
		if strings.HasPrefix(s, field) {
			return errors.New(flag + strings.TrimPrefix(s, field))
		}
	}
	return errors.New(s)
}

// printScenario prints a scenario's report: the steps' times, each lease,
// and the checks that failed.
func printScenario(w io.Writer, rep *procnet.Report) error {
	failed := rep.Failed()
	verdict := fmt.Sprintf("all %d checks passed", len(rep.Checks))
	if len(failed) > 0 {
		verdict = fmt.Sprintf("%d of %d checks FAILED", len(failed), len(rep.Checks))
	}
	fault := ""
	if rep.Fault != "" {
		fault = ", fault " + rep.Fault
	}
	fmt.Fprintf(w, "scenario on %s: %s, %s%s: %s in %s\n\n", rep.Dir, count(rep.Sellers, "seller"), count(rep.Buyers, "buyer"), fault, verdict, roundDuration(rep.Took.Std()))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tN\tMIN\tP50\tP99\tMAX\tRATE")
	for _, s := range rep.Steps {
		if s.N == 0 {
			fmt.Fprintf(tw, "%s\t0\t-\t-\t-\t-\t-\n", s.Step)
			continue
		}
		r := "-"
		if s.Rate > 0 {
			r = protocol.FormatSize(s.Rate) + "/s"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Step, s.N, roundDuration(s.Min.Std()), roundDuration(s.P50.Std()),
			roundDuration(s.P99.Std()), roundDuration(s.Max.Std()), r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Leases) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BUYER\tSELLER\tLEASE\tPRICE\tREFUSED\tAPPLIANCE\tTRANSFER\tRUNNING AFTER\tRECEIPTS\tOWED\tSETTLEMENT")
		for _, l := range rep.Leases {
			dash := func(s string) string {
				if s == "" {
					return "-"
				}
				return s
			}
			xfer := "-"
			if l.Transfer > 0 {
				xfer = fmt.Sprintf("%s (%s/s)", roundDuration(l.Transfer.Std()), protocol.FormatSize(l.TransferRate))
			}
			running := "-"
			if l.ToRunning > 0 {
				running = roundDuration(l.ToRunning.Std())
			}
			receipts, owed := "-", "-"
			if l.Settlement != "" {
				receipts = fmt.Sprintf("%d (%d acked)", l.Receipts, l.Acked)
				owed = protocol.FormatMicro(l.Total) + l.Currency
			}
			size := "-"
			if l.ApplianceSize > 0 {
				size = protocol.FormatSize(l.ApplianceSize)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Buyer, dash(l.Seller), dash(shortID(l.Lease)), dash(l.Price),
				l.Refused, size, xfer, running, receipts, owed, dash(l.Settlement))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		fmt.Fprintln(w)
		for _, ck := range failed {
			node := ""
			if ck.Node != "" {
				node = ck.Node + ": "
			}
			fmt.Fprintf(w, "FAILED %s%s: %s\n", node, ck.Name, ck.Detail)
		}
	}
	return nil
}

// count says "1 seller", "3 sellers".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
