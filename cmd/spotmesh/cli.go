package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/testnet/procnet"
)

// Exit codes that scripts can trust.
const (
	exitOK          = 0 // done
	exitFailed      = 1 // refused by the node, or failed
	exitUsage       = 2 // a bad verb, flag or value
	exitUnreachable = 3 // no daemon answers for the home
)

// usageError is a bad verb, flag or value: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// unreachableError means no daemon answers: exit 3.
type unreachableError struct{ err error }

func (e unreachableError) Error() string { return e.err.Error() }
func (e unreachableError) Unwrap() error { return e.err }

// subError is the error of a sub-verb, such as the add of 'offer add'.
type subError struct {
	sub string
	err error
}

func (e subError) Error() string { return e.sub + ": " + e.err.Error() }
func (e subError) Unwrap() error { return e.err }

// errHelp asks for a verb's help: printed to stdout, exit 0.
var errHelp = errors.New("help requested")

// exitCode maps a verb's error to the process's exit code.
func exitCode(err error) int {
	var ue usageError
	var ne unreachableError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ne):
		return exitUnreachable
	}
	return exitFailed
}

// cli is one run of the command: its streams, environment and global
// flags. Tests make their own.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	// Global flags, accepted before or after the verb.
	home        string
	json        bool
	logLevel    string
	logLevelSet bool
}

// verb is one entry of the dispatch table.
type verb struct {
	name    string
	args    string // synopsis of flags and arguments, for help
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

// verbs is the CLI's dispatch table, in the order help lists it.
func verbs() []verb {
	return []verb{
		{"init", "[--listen MA]... [--api HOST:PORT] [--bootstrap MA]... [--mdns] [--dht-mode auto|server|client] [--driver process|http|none] [--driver-url URL] [--driver-token-file FILE] [--driver-gateway-url URL]",
			"create a node's home: key, API token and config (keeps an existing key)", cmdInit},
		{"run", "[the network flags of init, overriding the config]", "run the node daemon until SIGINT or SIGTERM", cmdRun},
		{"id", "", "show the node's peer ID and addresses", cmdID},
		{"peers", "", "list connected peers", cmdPeers},
		{"connect", "MULTIADDR", "connect to a peer at a multiaddr ending in /p2p/<peer id>", cmdConnect},
		{"offer", "add|ls|rm|pause|resume ...", "add, list, withdraw and pause this node's offers", offerGroup.run},
		{"book", "[--region R] [--vcpu '>=4'] [--mem '>=8GiB'] [--max-price 0.05USD/h] ...", "query the order book", cmdBook},
		{"appliance", "add|ls|get|pin|rm|gc ...", "import, fetch, list, pin and remove appliances (content-addressed VM images)", applianceGroup.run},
		{"lease", "new|ls|show|renew|end ...", "lease an offer's instance, and list, renew and end leases", leaseGroup.run},
		{"instances", "ls", "list the instances this node runs for leases it sold", instancesGroup.run},
		{"deny", "add|ls|rm PEER", "refuse a buyer's proposals, list and lift refusals", denyGroup.run},
		{"receipts", "ls --lease ID", "list a lease's usage receipts: period, usage, amount, acked or disputed", receiptsGroup.run},
		{"settle", "ls|show ...", "list each lease's billing (open, settled, disputed, claimed) and show one in full", settleGroup.run},
		{"balance", "", "show what each counterparty and this node owe each other, per currency", cmdBalance},
		{"invoice", "--month YYYY-MM [--csv]", "list a month's acknowledged receipts, as seller and as buyer (table, --csv or --json)", cmdInvoice},
		{"backup", "-o FILE", "write a backup of the running node: its database, config and private key", cmdBackup},
		{"restore", "FILE", "make a new home (--home, absent or empty) from a backup: the same node again", cmdRestore},
		{"version", "", "show the build's version", cmdVersion},
		{"demo", "[--once] [--sellers N] [--buyers N] [--dir DIR]", "run a small market of local daemons through a whole lease: offer, lease, instance, receipts, settlement", cmdDemo},

		{"testnet", "up|status|scenario|kill|start|logs|partition|heal|down --dir DIR ...", "boot a test network of daemons on loopback or in network namespaces, run the market's cycle on it, kill and start its nodes, cut them off, stop it", testnetGroup.run},
		{procnet.EchoVerb, "", "serve HTTP on $PORT: the appliance of 'testnet scenario' (not listed)", cmdEcho},

		// Verbs written in other files of this package are dispatched
		// here: add one line each.
	}
}

func lookupVerb(vs []verb, name string) (verb, bool) {
	for _, v := range vs {
		if v.name == name {
			return v, true
		}
	}
	return verb{}, false
}

// main runs the command line and returns the exit code.
func (c *cli) main(ctx context.Context, args []string) int {
	rest, err := c.globals(args)
	if err != nil {
		return c.fail("", err)
	}
	if len(rest) == 0 {
		c.usage(c.stderr)
		return exitUsage
	}
	name := rest[0]
	switch name {
	case "help", "-h", "-help", "--help":
		return c.help(rest[1:])
	}
	if strings.HasPrefix(name, "-") {
		return c.fail("", usagef("unknown flag %s: the global flags are --home DIR, --json and --log-level LEVEL; run 'spotmesh help'", name))
	}
	v, ok := lookupVerb(verbs(), name)
	if !ok {
		return c.fail("", usagef("unknown verb %q: run 'spotmesh help' for the list", name))
	}
	err = v.run(ctx, c, rest[1:])
	if errors.Is(err, errHelp) {
		return c.help([]string{name})
	}
	return c.fail(name, err)
}

// fail prints err (if any) and returns its exit code.
func (c *cli) fail(verb string, err error) int {
	if err == nil {
		return exitOK
	}
	prefix := "spotmesh"
	if verb != "" {
		prefix += " " + verb
	}
	var se subError
	if errors.As(err, &se) {
		prefix += " " + se.sub
		err = se.err
	}
	fmt.Fprintf(c.stderr, "%s: %v\n", prefix, err)
	return exitCode(err)
}

// globals takes the global flags out of args, wherever they are, and
// returns the rest. Flags after "--" are left alone.
func (c *cli) globals(args []string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || strings.HasPrefix(a, "---") {
			rest = append(rest, a)
			continue
		}
		value := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", usagef("--%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		switch name {
		case "home":
			v, err := value()
			if err != nil {
				return nil, err
			}
			if v == "" {
				return nil, usagef("--home \"\": want a directory")
			}
			c.home = v
		case "json":
			c.json = true
			if hasVal {
				b, err := strconv.ParseBool(val)
				if err != nil {
					return nil, usagef("--json=%q: want true or false", val)
				}
				c.json = b
			}
		case "log-level":
			v, err := value()
			if err != nil {
				return nil, err
			}
			switch v {
			case "debug", "info", "warn", "error":
			default:
				return nil, usagef("--log-level %q: want debug, info, warn or error", v)
			}
			c.logLevel, c.logLevelSet = v, true
		default:
			rest = append(rest, a)
		}
	}
	if c.home == "" {
		c.home = c.getenv("SPOTMESH_HOME")
	}
	if c.home == "" {
		dir, err := os.UserHomeDir()
		if err != nil {
			return nil, usagef("no home directory (%v): give one with --home DIR or SPOTMESH_HOME", err)
		}
		c.home = filepath.Join(dir, ".spotmesh")
	}
	return rest, nil
}

const globalHelp = `global flags (before or after the verb):
  --home DIR         the node's home (default $SPOTMESH_HOME, else ~/.spotmesh)
  --json             print JSON, as the API returns it
  --log-level LEVEL  debug, info, warn or error (run)
`

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, "spotmesh: a peer-to-peer market for spare cloud capacity\n\nusage: spotmesh [global flags] VERB [flags] [args]\n\nverbs:\n")
	var vs []verb
	for _, v := range verbs() {
		if !strings.HasPrefix(v.name, "_") { // hidden, like _echo
			vs = append(vs, v)
		}
	}
	width := 0
	for _, v := range vs {
		width = max(width, len(v.name))
	}
	for _, v := range vs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, v.name, v.summary)
	}
	fmt.Fprint(w, "\n"+globalHelp+"\nRun 'spotmesh help VERB' for a verb's flags.\n")
	fmt.Fprint(w, "Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 no daemon answers.\n")
}

// help prints help for a verb (or all), to stdout: it was asked for.
func (c *cli) help(args []string) int {
	if len(args) == 0 {
		c.usage(c.stdout)
		return exitOK
	}
	v, ok := lookupVerb(verbs(), args[0])
	if !ok {
		return c.fail("help", usagef("unknown verb %q: run 'spotmesh help' for the list", args[0]))
	}
	for _, g := range groups() {
		if g.name == v.name && len(args) > 1 {
			return c.subHelp(g, args[1])
		}
	}
	fmt.Fprintf(c.stdout, "usage: spotmesh %s %s\n\n%s\n", v.name, v.args, v.summary)
	if f := verbFlags(v.name); f != nil {
		fmt.Fprint(c.stdout, "\nflags:\n")
		f.printDefaults(c.stdout)
	}
	for _, g := range groups() {
		if g.name == v.name {
			fmt.Fprint(c.stdout, "\n")
			c.printSubVerbs(g)
		}
	}
	fmt.Fprint(c.stdout, "\n"+globalHelp)
	return exitOK
}

// verbFlags builds a verb's flag set for help, or nil when it has none.
func verbFlags(name string) *flags {
	switch name {
	case "init", "run":
		f := newFlags(name)
		addNodeFlags(f)
		return f
	case "book":
		f, _ := bookFlags()
		return f
	case "invoice":
		f, _, _ := invoiceFlags()
		return f
	case "backup":
		f, _ := backupFlags()
		return f
	}
	return nil
}

// printJSON prints v indented: the same fields and values as the API's.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// client returns an API client for the daemon of c.home. Without a home
// it fails; when no daemon has written its address, it is unreachable.
func (c *cli) client() (*api.Client, string, error) {
	tok, err := node.ReadToken(c.home)
	if err != nil {
		if errors.Is(err, node.ErrNoHome) {
			return nil, "", fmt.Errorf("no spotmesh home at %s: create one with 'spotmesh init --home %s'", c.home, c.home)
		}
		return nil, "", fmt.Errorf("read the API token: %w", err)
	}
	addr, err := node.ReadAPIAddr(c.home)
	if errors.Is(err, fs.ErrNotExist) {
		// No daemon wrote its address; a fixed port in the config is
		// still worth a try.
		if cfg, cerr := node.LoadConfig(c.home); cerr == nil && !strings.HasSuffix(cfg.API, ":0") {
			addr, err = cfg.API, nil
		} else {
			return nil, "", unreachableError{fmt.Errorf("no spotmesh daemon is running for home %s: start it with 'spotmesh run --home %s'", c.home, c.home)}
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("read the daemon's address: %w", err)
	}
	return api.NewClient(addr, tok), addr, nil
}

// apiError puts a client error in words for people, with its exit code.
func (c *cli) apiError(addr string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, api.ErrUnreachable) {
		return unreachableError{fmt.Errorf("no spotmesh daemon answers at %s for home %s: start it with 'spotmesh run --home %s'", addr, c.home, c.home)}
	}
	var e *api.Error
	if errors.As(err, &e) && e.Code == api.CodeUnauthorized {
		return fmt.Errorf("the daemon at %s refused the token of home %s: is it another home's daemon? (%s)", addr, c.home, e.Message)
	}
	if errors.As(err, &e) {
		return errors.New(e.Message)
	}
	return err
}

// noArgs fails when a verb that takes no arguments gets some.
func noArgs(pos []string) error {
	if len(pos) > 0 {
		return usagef("unexpected argument %q: this verb takes none", pos[0])
	}
	return nil
}
