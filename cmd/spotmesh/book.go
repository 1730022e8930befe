package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// bookFlags are the flags of 'book'; each is the API's query parameter of
// the same name, with dashes for underscores.
func bookFlags() (*flags, *api.BookQuery) {
	f := newFlags("book")
	q := &api.BookQuery{}
	f.fs.StringVar(&q.Region, "region", "", "`region` or prefix: eu matches eu and eu-de")
	f.fs.StringVar(&q.VCPU, "vcpu", "", "vCPU `range`: 4, >=4, >4, <=8, <8 or 4-16")
	f.fs.StringVar(&q.Memory, "mem", "", "memory `range`: 8GiB, >=8GiB, 8GiB-32GiB")
	f.fs.StringVar(&q.Disk, "disk", "", "disk `range`, like >=40GiB")
	f.fs.StringVar(&q.GPUs, "gpus", "", "GPU count `range`, like >=1")
	f.fs.StringVar(&q.GPUModel, "gpu-model", "", "GPU `model`")
	f.fs.StringVar(&q.Profile, "profile", "", "hardware `profile`, like c4m8")
	f.fs.StringVar(&q.Arch, "arch", "", "CPU `architecture`, like amd64")
	f.fs.StringVar(&q.Seller, "seller", "", "only this seller's offers (`peer ID`)")
	f.fs.StringVar(&q.MaxPrice, "max-price", "", "highest hourly `price`, like 0.05USD/h")
	f.fs.StringVar(&q.Currency, "currency", "", "only offers in this `currency`, like USD")
	f.add(funcValue{set: func(s string) error {
		n, err := parseUint32(s)
		q.MinSlots = n
		return err
	}}, "min-slots", "only offers with at least this `count` of free slots")
	f.fs.BoolVar(&q.IncludePaused, "include-paused", false, "also show paused offers, which take no new leases")
	f.fs.StringVar(&q.Sort, "sort", "", "`order`: price (default), vcpu, mem, expires or newest")
	f.add(funcValue{set: func(s string) error {
		n, err := parsePositive(s)
		q.Limit = n
		return err
	}}, "limit", fmt.Sprintf("at most this `count` of offers, 1 to %d (default 100)", api.MaxBookLimit))
	return f, q
}

func cmdBook(ctx context.Context, c *cli, args []string) error {
	f, q := bookFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	// The node checks the query too; checking here names the flag and
	// answers without a daemon.
	if q.MaxPrice != "" {
		if _, err := parsePrice(q.MaxPrice, "0.05USD/h"); err != nil {
			return usagef("--max-price %q: %v", q.MaxPrice, err)
		}
	}
	if _, err := api.ParseBookQuery(q.Values()); err != nil {
		var pe *api.ParamError
		if errors.As(err, &pe) {
			return usagef("--%s %q: %s", strings.ReplaceAll(pe.Param, "_", "-"), pe.Value, pe.Problem)
		}
		return usageError{err}
	}
	book, err := call(c, func(cl *api.Client) (api.BookResponse, error) { return cl.Book(ctx, *q) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(book)
	}
	if len(book.Offers) == 0 {
		fmt.Fprintf(c.stdout, "no offers match (%d in the book)\n", book.Total)
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SELLER\tKEY\tREGION\tPROFILE\tVCPU\tMEM\tDISK\tSLOTS\tPRICE\tEXPIRES")
	now := c.now()
	for _, o := range book.Offers {
		hw := o.Hardware
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", shortID(o.Seller.String()), o.Key, o.Region, hw.Profile,
			hw.VCPU, protocol.FormatSize(hw.Memory), protocol.FormatSize(hw.Disk), o.Slots, o.Price, until(now, o.ExpiresAt))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d shown, %d in the book\n", len(book.Offers), book.Total)
	return nil
}

// shortID shortens a peer ID to its last 8 characters: peer IDs share
// their first ones (12D3KooW...), not their last.
func shortID(id string) string {
	if len(id) <= 10 {
		return id
	}
	return "…" + id[len(id)-8:]
}
