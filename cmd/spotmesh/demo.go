package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spotmesh/spotmesh/testnet"
)

// cmdDemo boots a small market of nodes on loopback in this process, has
// the sellers publish offers and shows a buyer's book; the nodes stay up
// until Ctrl-C unless --once.
func cmdDemo(ctx context.Context, c *cli, args []string) error {
	f := newFlags("demo")
	dir := f.str("dir", "", "directory for the nodes' homes (default: a temporary one, removed at the end)")
	sellers := f.uint32("sellers", 3, "number of sellers")
	buyers := f.uint32("buyers", 1, "number of buyers")
	once := f.boolean("once", false, "tear the market down at the end instead of waiting for Ctrl-C")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if *sellers < 1 || *buyers < 1 || uint64(*sellers)+uint64(*buyers) > 64 {
		return usageError{errors.New("demo: --sellers and --buyers: want at least 1 each and at most 64 nodes in all")}
	}
	home := *dir
	if home == "" {
		tmp, err := os.MkdirTemp("", "spotmesh-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		home = tmp
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := testnet.DefaultDemoConfig(home)
	cfg.Sellers, cfg.Buyers, cfg.Once = int(*sellers), int(*buyers), *once
	return testnet.Demo(ctx, cfg, c.stdout)
}
