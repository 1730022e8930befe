package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spotmesh/spotmesh/node"
)

// runNode runs the node daemon with cfg until ctx ends or SIGINT or
// SIGTERM arrives, then closes it: a clean stop returns nil (exit 0).
// cmdRun has read the flags and config.
func runNode(ctx context.Context, c *cli, cfg node.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(cfg, node.WithLogger(log))
	if err != nil {
		return fmt.Errorf("open node at %s: %w", c.home, err)
	}
	if err := n.Start(ctx); err != nil {
		n.Close()
		return fmt.Errorf("start node: %w", err)
	}
	log.Info("spotmesh running", "peer", n.ID(), "api", n.APIAddr(), "home", c.home)
	<-ctx.Done()
	log.Info("stopping")
	if err := n.Close(); err != nil {
		return fmt.Errorf("stop node: %w", err)
	}
	log.Info("stopped")
	return nil
}
