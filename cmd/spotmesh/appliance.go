package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/protocol"
)

// applianceVerbs is the dispatch table of 'spotmesh appliance'.
func applianceVerbs() []verb {
	return []verb{
		{"add", "FILE [--name NAME] [--format FORMAT] [--progress]",
			"import a file as an appliance and pin it; prints its CID (--json: all the node knows of it)", cmdApplianceAdd},
		{"ls", "", "list the appliances on this node: CID, name, format, size, pins, added (table or --json)", cmdApplianceLs},
		{"get", "CID [-o FILE] [--from MULTIADDR]... [--max-size SIZE] [--transport auto|bitswap|stream] [--progress]",
			"fetch an appliance from the network, verified block by block, and pin it; with -o, also write it to FILE", cmdApplianceGet},
		{"pin", "CID", "pin an appliance that is on this node, so that gc keeps it and the gateway serves it", cmdAppliancePin},
		{"rm", "CID", "remove your pins of an appliance (a lease's pin stays); gc then frees its blocks", cmdApplianceRm},
		{"gc", "", "delete the blocks that no pinned appliance needs; prints the bytes freed", cmdApplianceGC},
	}
}

// applianceAdd holds the flags of 'appliance add'.
type applianceAdd struct {
	name, format *string
	progress     *bool
}

func applianceAddFlags() (*flags, *applianceAdd) {
	f := newFlags("appliance add")
	return f, &applianceAdd{
		name:     f.str("name", "", "the `name` the appliance is known by (default: the file's base name)"),
		format:   f.str("format", "", "the image `format`, like qcow2, raw or bundle (default: guessed from the name's extension)"),
		progress: f.boolean("progress", false, "draw the progress bar even when stderr is not a terminal"),
	}
}

// applianceGet holds the flags of 'appliance get'.
type applianceGet struct {
	out       *string
	from      *[]string
	maxSize   *uint64
	transport *string
	progress  *bool
}

func applianceGetFlags() (*flags, *applianceGet) {
	f := newFlags("appliance get")
	g := &applianceGet{
		out:       new(string),
		from:      f.list("from", "fetch from the peer at this `multiaddr`, ending in /p2p/<peer id> (any IPFS node); repeatable (default: ask the DHT)"),
		maxSize:   f.size("max-size", "refuse an appliance larger than this `size`, like 20GiB (default: the node's limit, 64GiB)"),
		transport: f.str("transport", "auto", "`how` blocks travel: auto (a DAG stream from a named peer, bitswap for the rest), bitswap (many sources) or stream"),
		progress:  f.boolean("progress", false, "draw the progress bar even when stderr is not a terminal"),
	}
	f.fs.StringVar(g.out, "o", "", "also write the appliance to this `file` (- for stdout); its name names the appliance if the node has none")
	f.fs.StringVar(g.out, "output", "", "the same as -o `file`")
	return f, g
}

// cidArg parses the flags of a sub-verb and reads its one CID argument.
func cidArg(f *flags, args []string) (string, error) {
	pos, err := f.parse(args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("want one appliance CID, as 'spotmesh appliance add' printed it or 'spotmesh appliance ls' lists it")
	}
	if _, err := api.ParseApplianceCID(pos[0]); err != nil {
		return "", usageError{err}
	}
	return pos[0], nil
}

// showBar reports whether a transfer draws a bar.
func (c *cli) showBar(forced bool) bool { return forced || isTerminal(c.stderr, c.getenv) }

// label shortens a name for the progress bar to 16 characters; CIDs
// differ in their ends.
func label(s string) string {
	if r := []rune(s); len(r) > 16 {
		return string(r[:6]) + "…" + string(r[len(r)-9:])
	}
	return s
}

func cmdApplianceAdd(ctx context.Context, c *cli, args []string) error {
	f, o := applianceAddFlags()
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one FILE to import (- reads stdin)")
	}
	path := pos[0]
	name := *o.name
	if !f.isSet("name") && path != "-" {
		name = filepath.Base(path)
	}
	meta := appliance.Meta{Name: name, Format: *o.format}
	if err := meta.Validate(); err != nil {
		if f.isSet("format") && (appliance.Meta{Format: meta.Format}).Validate() != nil {
			return usagef("--format %q: want at most 32 characters of a-z, 0-9 and .+_-, like qcow2, raw or bundle", meta.Format)
		}
		return usagef("--name %q: want a file name of at most 255 bytes, without / or control characters", meta.Name)
	}

	var in io.Reader = os.Stdin
	size := int64(-1)
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: no such file", path)
			}
			return err
		}
		defer file.Close()
		st, err := file.Stat()
		if err != nil {
			return err
		}
		if st.IsDir() {
			return usagef("%s is a directory: an appliance is one file (for the process driver, tar a bundle first)", path)
		}
		if st.Mode().IsRegular() {
			size = st.Size()
		}
		in = file
	}
	cl, addr, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()

	p := newProgress(c.stderr, label(name), c.showBar(*o.progress), c.now)
	total := uint64(max(size, 0))
	info, err := cl.ImportAppliance(ctx, in, api.ImportOptions{Name: meta.Name, Format: meta.Format, Size: size,
		Progress: func(n uint64) { p.update(n, total) }})
	if err != nil {
		p.stop()
		return c.apiError(addr, err)
	}
	p.update(info.Size, info.Size)
	p.finish("added")
	if c.json {
		return c.printJSON(info)
	}
	fmt.Fprintln(c.stdout, info.CID)
	return nil
}

func cmdApplianceLs(ctx context.Context, c *cli, args []string) error {
	f := newFlags("appliance ls")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	list, err := call(c, func(cl *api.Client) ([]api.Appliance, error) { return cl.Appliances(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.AppliancesResponse{Appliances: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no appliances: import one with 'spotmesh appliance add FILE' or fetch one with 'spotmesh appliance get CID'")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CID\tNAME\tFORMAT\tSIZE\tPINNED\tADDED")
	for _, a := range list {
		pinned := "no"
		if a.Pinned {
			pinned = "yes (" + strings.Join(a.Pins, ", ") + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.CID, orDash(a.Name), orDash(a.Format), protocol.FormatSize(a.Size), pinned,
			a.Added.UTC().Format(time.RFC3339))
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdApplianceGet(ctx context.Context, c *cli, args []string) error {
	f, g := applianceGetFlags()
	id, err := cidArg(f, args)
	if err != nil {
		return err
	}
	req := api.FetchRequest{Peers: *g.from, MaxSize: *g.maxSize, Transport: *g.transport}
	for _, a := range req.Peers {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			return usagef("--from %q: want a multiaddr ending in /p2p/<peer id>, as 'spotmesh id' on that node prints them", a)
		}
	}
	switch req.Transport {
	case "auto", "bitswap", "stream":
	default:
		return usagef("--transport %q: want auto, bitswap or stream", req.Transport)
	}
	if f.isSet("max-size") && req.MaxSize == 0 {
		return usagef("--max-size 0B: want a size like 20GiB")
	}
	out := *g.out
	if out == "-" && c.json {
		return usagef("-o - and --json both write to stdout: give -o a file")
	}
	if out != "" && out != "-" {
		if st, err := os.Stat(out); err == nil && st.IsDir() {
			return usagef("-o %s is a directory: give a file name", out)
		}
		req.Name = filepath.Base(out)
		req.Format = appliance.GuessFormat(req.Name)
		if (appliance.Meta{Name: req.Name}).Validate() != nil {
			req.Name, req.Format = "", ""
		}
	}
	cl, addr, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()

	// A node that has a record of the appliance holds all of it: the
	// fetch then only pins it.
	_, err = cl.Appliance(ctx, id)
	here := err == nil
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		return c.apiError(addr, err)
	}
	live := c.showBar(*g.progress)
	p := newProgress(c.stderr, label(id), live && !here, c.now)
	info, err := cl.FetchAppliance(ctx, id, req, p.update)
	if err != nil {
		p.stop()
		if api.IsCode(err, api.CodeTooLarge) {
			var e *api.Error
			errors.As(err, &e)
			return fmt.Errorf("%s: fetch a larger one with --max-size", e.Message)
		}
		return c.apiError(addr, err)
	}
	if here {
		fmt.Fprintf(c.stderr, "already on this node: %s\n", protocol.FormatSize(info.Size))
	} else {
		p.finish("fetched")
	}
	if out != "" {
		if err := c.writeContent(ctx, cl, addr, info, out, live); err != nil {
			return err
		}
	}
	switch {
	case c.json:
		return c.printJSON(info)
	case out == "-":
	case out != "":
		fmt.Fprintf(c.stdout, "wrote %s (%s, %s), pinned\n", out, protocol.FormatSize(info.Size), info.CID)
	default:
		fmt.Fprintf(c.stdout, "pinned %s (%s)\n", info.CID, protocol.FormatSize(info.Size))
	}
	return nil
}

// writeContent reads an appliance from the node into out (- for stdout)
// and checks that every byte arrived. A file is written beside out and
// renamed into place when complete.
func (c *cli) writeContent(ctx context.Context, cl *api.Client, addr string, info api.Appliance, out string, live bool) (err error) {
	body, n, err := cl.ApplianceContent(ctx, info.CID, 0)
	if err != nil {
		return c.apiError(addr, err)
	}
	defer body.Close()
	if n >= 0 && uint64(n) != info.Size {
		return fmt.Errorf("the node offers %d bytes of %s, which has %d: is its store damaged? Try 'spotmesh appliance get %s' again", n, info.CID, info.Size, info.CID)
	}
	var w io.Writer = c.stdout
	part := out + ".part"
	if out != "-" {
		file, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666)
		if err != nil {
			return fmt.Errorf("-o %s: %w", out, err)
		}
		defer func() {
			if cerr := file.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("-o %s: %w", out, cerr)
			}
			if err == nil {
				if rerr := os.Rename(part, out); rerr != nil {
					err = fmt.Errorf("-o %s: %w", out, rerr)
				}
			}
			if err != nil {
				os.Remove(part)
			}
		}()
		w = file
	}
	p := newProgress(c.stderr, label(filepath.Base(out)), live && out != "-", c.now)
	pw := &progressWriter{w: w, p: p, total: info.Size}
	written, err := io.Copy(pw, body)
	if err != nil {
		p.stop()
		if api.IsUnreachable(err) {
			return fmt.Errorf("-o %s: the daemon at %s stopped sending after %d of %d bytes: run the same get again", out, addr, written, info.Size)
		}
		return fmt.Errorf("-o %s: %w", out, err)
	}
	if uint64(written) != info.Size {
		p.stop()
		return fmt.Errorf("-o %s: got %d bytes of %d: the node's answer ended early; run the same get again", out, written, info.Size)
	}
	if out != "-" {
		p.finish("wrote")
	}
	return nil
}

func cmdAppliancePin(ctx context.Context, c *cli, args []string) error {
	f := newFlags("appliance pin")
	id, err := cidArg(f, args)
	if err != nil {
		return err
	}
	info, err := call(c, func(cl *api.Client) (api.Appliance, error) {
		info, err := cl.PinAppliance(ctx, id, "")
		if api.IsCode(err, api.CodeNotFound) {
			return info, fmt.Errorf("%s is not (wholly) on this node: fetch it with 'spotmesh appliance get %s', which pins it", id, id)
		}
		return info, err
	})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(info)
	}
	fmt.Fprintf(c.stdout, "pinned %s (%s; pins: %s)\n", info.CID, protocol.FormatSize(info.Size), strings.Join(info.Pins, ", "))
	return nil
}

func cmdApplianceRm(ctx context.Context, c *cli, args []string) error {
	f := newFlags("appliance rm")
	id, err := cidArg(f, args)
	if err != nil {
		return err
	}
	info, err := call(c, func(cl *api.Client) (api.Appliance, error) {
		info, err := cl.RemoveAppliance(ctx, id)
		if api.IsCode(err, api.CodeNotFound) {
			return info, fmt.Errorf("no appliance %s on this node: 'spotmesh appliance ls' lists them", id)
		}
		return info, err
	})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(info)
	}
	if info.Pinned {
		fmt.Fprintf(c.stdout, "removed your pins of %s; still pinned by %s, so gc keeps it\n", info.CID, strings.Join(info.Pins, ", "))
		return nil
	}
	fmt.Fprintf(c.stdout, "removed %s: 'spotmesh appliance gc' frees its %s\n", info.CID, protocol.FormatSize(info.Size))
	return nil
}

func cmdApplianceGC(ctx context.Context, c *cli, args []string) error {
	f := newFlags("appliance gc")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	freed, err := call(c, func(cl *api.Client) (uint64, error) { return cl.GCAppliances(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.GCResponse{Freed: freed})
	}
	fmt.Fprintf(c.stdout, "freed %s\n", protocol.FormatSize(freed))
	return nil
}
