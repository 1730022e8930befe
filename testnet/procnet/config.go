package procnet

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Bounds of a testnet's size.
const (
	// MaxNodes bounds sellers plus buyers (the boot node comes on top):
	// each node is a process of some tens of MiB and a few ports.
	MaxNodes = 64
	// MaxOffersPerSeller bounds the offers each seller publishes at Up.
	MaxOffersPerSeller = 8
)

// Roles of a testnet's nodes.
const (
	// RoleBoot is the dedicated bootstrap node: no offers, no driver,
	// every other node's bootstrap peer. Being no seller, it survives a
	// seller's kill, so nodes started later still find the network.
	RoleBoot = "boot"
	// RoleSeller publishes offers and sells with the process driver.
	RoleSeller = "seller"
	// RoleBuyer buys; it runs no driver.
	RoleBuyer = "buyer"
)

// Errors, checked with errors.Is.
var (
	// ErrRunning: the directory holds a testnet with nodes still running.
	ErrRunning = errors.New("a testnet is running there")
	// ErrExists: the directory holds a stopped testnet, or other files.
	ErrExists = errors.New("directory in use")
	// ErrNoTestnet: the directory holds no testnet manifest.
	ErrNoTestnet = errors.New("no testnet there")
	// ErrUnknownNode: the manifest names no such node.
	ErrUnknownNode = errors.New("no such node")
	// ErrNotRunning: the node's process is not running.
	ErrNotRunning = errors.New("not running")
	// ErrAlreadyRunning: the node's process is running already.
	ErrAlreadyRunning = errors.New("already running")
	// ErrNotOurs: the recorded PID runs some other process, which
	// procnet leaves alone.
	ErrNotOurs = errors.New("its pid runs another process")
	// ErrBusy: another operation holds the testnet's lock.
	ErrBusy = errors.New("testnet busy")
	// ErrNotReady: a node or the books did not get ready in time.
	ErrNotReady = errors.New("not ready in time")
	// ErrUnsupported: process testnets need Linux (/proc, setsid).
	ErrUnsupported = errors.New("process testnets need Linux")
)

// Config describes a testnet to boot.
type Config struct {
	// Dir holds the testnet: absent or empty.
	Dir string
	// Sellers and Buyers are how many of each to run, at least 1 each and
	// at most MaxNodes in all.
	Sellers int
	Buyers  int
	// OffersPerSeller is how many offers each seller publishes, 1 to
	// MaxOffersPerSeller.
	OffersPerSeller int
	// Binary is the spotmesh binary copied to <Dir>/bin/spotmesh; empty
	// means this process's own executable.
	Binary string
	// LogLevel is the daemons' log level: debug, info, warn or error.
	LogLevel string
	// Timeout bounds Up: the nodes' starts, their meshes and the offers
	// reaching every book.
	Timeout time.Duration
	// Logger receives Up's progress (nil: discarded).
	Logger *slog.Logger
	// Netns runs each node in a network namespace of its own, joined by a
	// bridge, as if each were a host, so that Partition can cut nodes off
	// (see netns.go). It needs Linux, root and the ip command: Up fails
	// with ErrNetnsUnavailable without them (CheckNetns tells first).
	Netns bool
}

// DefaultConfig is a testnet of 3 sellers with 2 offers each and 1 buyer
// in dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:             dir,
		Sellers:         3,
		Buyers:          1,
		OffersPerSeller: 2,
		LogLevel:        "info",
		Timeout:         time.Minute,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("procnet: dir: want a directory for the testnet")
	}
	if c.Sellers < 1 || c.Sellers > MaxNodes {
		return fmt.Errorf("procnet: sellers %d: want 1 to %d", c.Sellers, MaxNodes)
	}
	if c.Buyers < 1 || c.Buyers > MaxNodes {
		return fmt.Errorf("procnet: buyers %d: want 1 to %d", c.Buyers, MaxNodes)
	}
	if c.Sellers+c.Buyers > MaxNodes {
		return fmt.Errorf("procnet: %d sellers and %d buyers: want at most %d nodes in all", c.Sellers, c.Buyers, MaxNodes)
	}
	if c.OffersPerSeller < 1 || c.OffersPerSeller > MaxOffersPerSeller {
		return fmt.Errorf("procnet: offers per seller %d: want 1 to %d", c.OffersPerSeller, MaxOffersPerSeller)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("procnet: log level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("procnet: timeout %v: want a positive duration", c.Timeout)
	}
	return nil
}
