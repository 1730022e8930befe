package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// cmdDemo boots a small market of daemons on loopback (a process testnet,
// as 'testnet up' does) and runs the market's whole cycle on it (as
// 'testnet scenario' does), telling what happens in words a newcomer
// follows. The nodes stay up until Ctrl-C, then all stop; --once stops
// them at the end. Without --dir the testnet lives in a temporary
// directory, removed at the end unless something failed.
func cmdDemo(ctx context.Context, c *cli, args []string) error {
	f := newFlags("demo")
	dir := f.str("dir", "", "the testnet's `directory`, new or empty; it stays, with the nodes' homes and logs (default: a temporary one, removed at the end)")
	sellers := f.uint32("sellers", 3, "number of sellers, a `count` (default 3)")
	buyers := f.uint32("buyers", 1, "number of buyers, a `count` (default 1)")
	once := f.boolean("once", false, "stop the market at the end instead of waiting for Ctrl-C")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if *sellers < 1 || *buyers < 1 || uint64(*sellers)+uint64(*buyers) > procnet.MaxNodes {
		return usagef("--sellers %d --buyers %d: want at least 1 each and at most %d nodes in all", *sellers, *buyers, procnet.MaxNodes)
	}
	home, temp := *dir, false
	if home == "" {
		tmp, err := os.MkdirTemp("", "spotmesh-demo-")
		if err != nil {
			return err
		}
		home, temp = tmp, true
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{w: c.stdout, dir: home}
	err := d.run(ctx, int(*sellers), int(*buyers), *once)
	canceled := errors.Is(err, context.Canceled)
	switch {
	case temp && err != nil && !canceled:
		fmt.Fprintf(c.stdout, "\nThe nodes' homes and logs stay in %s for a look (spotmesh testnet logs --dir %s NAME).\n", home, home)
	case temp:
		if rerr := os.RemoveAll(home); rerr != nil {
			fmt.Fprintf(c.stderr, "spotmesh demo: remove %s: %v\n", home, rerr)
		}
	}
	if canceled {
		return nil // Ctrl-C: the market is down, as asked
	}
	return err
}

// demo is one run of the demo.
type demo struct {
	w   io.Writer
	dir string
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.w, format+"\n", args...) }

func (d *demo) run(ctx context.Context, sellers, buyers int, once bool) (err error) {
	d.say("spotmesh demo: a market of %s and %s on this machine. Every node is a real", count(sellers, "seller"), count(buyers, "buyer"))
	d.say("'spotmesh run' daemon in its own process, with its own key, database and API, talking")
	d.say("libp2p to the others over 127.0.0.1. There is no server: the nodes together are the market.")
	d.say("\n1. Booting the nodes and publishing the sellers' offers (a few seconds)…")
	cfg := procnet.DefaultConfig(d.dir)
	cfg.Sellers, cfg.Buyers, cfg.Timeout = sellers, buyers, 2*time.Minute
	t0 := time.Now()
	net, err := procnet.Up(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		d.say("\nStopping the market: every daemon gets SIGTERM.")
		res, derr := net.Down(context.WithoutCancel(ctx), 10*time.Second)
		stopped := 0
		for _, r := range res {
			if r.Outcome == procnet.Stopped || r.Outcome == procnet.Killed {
				stopped++
			}
		}
		d.say("%d of %d nodes stopped.", stopped, len(res))
		if err == nil {
			err = derr
		}
	}()
	m := net.Manifest()
	d.say("   %d nodes are up in %s. The boot node is everyone's first contact; the others found each", len(m.Nodes), time.Since(t0).Round(100*time.Millisecond))
	d.say("   other through it and its DHT, and joined a gossip mesh for offers.\n")
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   NAME\tROLE\tPID\tAPI\tPEER ID")
	for _, n := range m.Nodes {
		fmt.Fprintf(tw, "   %s\t%s\t%d\t%s\t%s\n", n.Name, n.Role, n.PID, n.APIAddr, n.PeerID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	d.say("\n   Each seller signed %s with its node's key and gossiped them; every node's order", count(len(m.Offers)/sellers, "offer"))
	d.say("   book now holds all %d:\n", len(m.Offers))
	tw = tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   SELLER\tOFFER\tREGION\tPROFILE\tPRICE")
	for _, o := range m.Offers {
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\n", o.Seller, o.Key, o.Region, o.Profile, o.Price)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	d.say("\n2. A whole lease, from offer to settlement, for each buyer:")
	sc := procnet.DefaultScenarioConfig()
	t1 := time.Now()
	sc.Progress = func(ev procnet.Event) {
		d.say("   %6s  %s", "+"+ev.At.Sub(t1).Round(100*time.Millisecond).String(), ev.Text)
	}
	rep, err := net.Scenario(ctx, sc)
	if rep != nil && !errors.Is(err, context.Canceled) {
		d.say("\n3. What it took (the same report as 'spotmesh testnet scenario'):\n")
		if perr := printScenario(&indent{w: d.w, start: true}, rep); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	if once {
		d.say("\nDone: the market ran a lease from offer to settlement.")
		return nil
	}
	buyer := m.Nodes[len(m.Nodes)-1]
	for _, n := range m.Nodes {
		if n.Role == procnet.RoleBuyer {
			buyer = n
			break
		}
	}
	lease, seller := "", m.Nodes[1].Name
	if len(rep.Leases) > 0 && rep.Leases[0].Seller != "" {
		lease, seller = rep.Leases[0].Lease, rep.Leases[0].Seller
	}
	d.say("\nThe market stays up until Ctrl-C. From another terminal (after 'go install ./cmd/spotmesh'):")
	d.say("   spotmesh testnet status --dir %s", d.dir)
	d.say("   spotmesh --home %s book", buyer.Home)
	d.say("   spotmesh --home %s lease ls", buyer.Home)
	if lease != "" {
		d.say("   spotmesh --home %s receipts ls --lease %s", buyer.Home, lease)
		d.say("   spotmesh --home %s settle show %s", filepath.Join(d.dir, seller), lease)
	}
	d.say("   spotmesh --home %s balance", buyer.Home)
	d.say("   spotmesh testnet logs --dir %s %s", d.dir, seller)
	d.say("   curl -H \"Authorization: Bearer $(cat %s)\" http://%s/v1/settlements", filepath.Join(buyer.Home, node.TokenFile), buyer.APIAddr)
	d.say("The API of each node is at the address in the table above (docs/openapi.yaml lists its routes).")
	<-ctx.Done()
	return nil
}

// indent writes every line three spaces in.
type indent struct {
	w io.Writer
	// start: the next byte starts a line.
	start bool
}

func (in *indent) Write(p []byte) (int, error) {
	var out []byte
	for _, b := range p {
		if in.start && b != '\n' {
			out = append(out, "   "...)
		}
		out = append(out, b)
		in.start = b == '\n'
	}
	if _, err := in.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
