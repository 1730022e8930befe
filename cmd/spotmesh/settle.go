package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// The ledger's verbs: receipts, settlements, balances and invoices. They
// only read; the node meters, acknowledges and settles on its own.

var receiptsGroup = group{
	name: "receipts", verbs: receiptsVerbs, aliases: map[string]string{"list": "ls"},
	flags:  map[string]func() *flags{"ls": helpFlags(receiptsLsFlags)},
	footer: "A seller sends a receipt every receipt interval; the buyer acknowledges or disputes each.\n",
}

var settleGroup = group{
	name: "settle", verbs: settleVerbs, aliases: map[string]string{"list": "ls"},
	footer: "A lease is open while receipts flow, then settled or disputed (both signed), or claimed (the buyer stopped answering).\n",
}

func receiptsVerbs() []verb {
	return []verb{{"ls", "--lease ID", "list a lease's usage receipts: period, usage, amount, acked or disputed (table or --json)", cmdReceiptsLs}}
}

func settleVerbs() []verb {
	return []verb{
		{"ls", "", "list each lease's billing: receipts, totals, status (table or --json)", cmdSettleLs},
		{"show", "LEASE", "show a lease's billing: both chain heads, totals, disputes, the settlement and the claim", cmdSettleShow},
	}
}

// money prints micro-units for people: 0.123457 USD.
func money(micro int64, currency string) string {
	return protocol.FormatMicro(micro) + " " + currency
}

// seconds prints milliseconds as exact decimal seconds: 3600, 59.5.
func seconds(ms int64) string {
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	s := sign + strconv.FormatInt(ms/1000, 10)
	if f := ms % 1000; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%03d", f), "0")
	}
	return s
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// leaseArg checks a lease ID given on the command line.
func leaseArg(what, id string) error {
	if _, err := cid.Decode(id); err != nil {
		return usagef("%s %q: not a lease ID: 'spotmesh settle ls' lists the leases with receipts", what, id)
	}
	return nil
}

func receiptsLsFlags() (*flags, *string) {
	f := newFlags("receipts ls")
	return f, f.str("lease", "", "the lease's `ID`, as 'lease ls' or 'settle ls' lists it")
}

func cmdReceiptsLs(ctx context.Context, c *cli, args []string) error {
	f, lease := receiptsLsFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if err := f.require("lease"); err != nil {
		return err
	}
	if err := leaseArg("--lease", *lease); err != nil {
		return err
	}
	r, err := call(c, func(cl *api.Client) (api.ReceiptsResponse, error) { return cl.Receipts(ctx, *lease) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(r)
	}
	if len(r.Receipts) == 0 {
		fmt.Fprintf(c.stdout, "no receipts for lease %s yet\n", r.Lease)
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SEQ\tFROM\tTO\tRAN\tCPU\tMEM PEAK\tAMOUNT\tTOTAL\tSTATE")
	var acked, disputed, pending int
	for _, rc := range r.Receipts {
		state := rc.State
		switch rc.State {
		case api.ReceiptAcked:
			acked++
		case api.ReceiptDisputed:
			disputed++
			if rc.Dispute != nil {
				state += ": " + rc.Dispute.Words
			}
		default:
			pending++
		}
		if rc.Final {
			state += " (final)"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rc.Seq, rfc3339(rc.From), rfc3339(rc.To),
			roundDuration(time.Duration(rc.Usage.InstanceMs)*time.Millisecond), roundDuration(time.Duration(rc.Usage.CPUMs)*time.Millisecond),
			protocol.FormatSize(rc.Usage.MemoryPeak), money(rc.Amount, rc.Currency), money(rc.Total, rc.Currency), state)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	last := r.Receipts[len(r.Receipts)-1]
	fmt.Fprintf(c.stdout, "%d receipts: %d acked, %d disputed, %d pending; total %s\n",
		len(r.Receipts), acked, disputed, pending, money(last.Total, last.Currency))
	return nil
}

func cmdSettleLs(ctx context.Context, c *cli, args []string) error {
	if err := parseNoArgs(newFlags("settle ls"), args); err != nil {
		return err
	}
	list, err := call(c, func(cl *api.Client) ([]api.LeaseSettlement, error) { return cl.Settlements(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.SettlementsResponse{Settlements: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no settlements: receipts begin once a lease's instance runs")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LEASE\tROLE\tPEER\tSTATUS\tACKED\tBILLED\tOWED\tUPDATED")
	for _, s := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", s.Lease, s.Role, shortID(s.Counterparty.String()), s.Status,
			s.AckedSeq, s.HeadSeq, money(s.HeadTotal, s.Currency), money(s.Owed, s.Currency), rfc3339(s.Updated))
	}
	return w.Flush()
}

func cmdSettleShow(ctx context.Context, c *cli, args []string) error {
	pos, err := newFlags("settle show").parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one lease ID: 'spotmesh settle ls' lists them")
	}
	if err := leaseArg("lease", pos[0]); err != nil {
		return err
	}
	s, err := call(c, func(cl *api.Client) (api.LeaseSettlement, error) { return cl.Settlement(ctx, pos[0]) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(s)
	}
	printSettlement(c, s)
	return nil
}

func printSettlement(c *cli, s api.LeaseSettlement) {
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%s:\t%s\n", k, fmt.Sprintf(format, args...)) }
	m := func(v int64) string { return money(v, s.Currency) }
	row("lease", "%s", s.Lease)
	row("role", "%s", s.Role)
	row("counterparty", "%s", s.Counterparty)
	row("status", "%s", s.Status)
	final := ""
	if s.Final {
		final = " (final)"
	}
	row("seller's head", "receipt %d%s, total %s", s.HeadSeq, final, m(s.HeadTotal))
	row("buyer's acked head", "receipt %d, total %s", s.AckedSeq, m(s.AckedTotal))
	row("owed", "%s", m(s.Owed))
	row("updated", "%s", rfc3339(s.Updated))
	if len(s.Disputes) == 0 {
		row("disputes", "none")
	}
	for i, d := range s.Disputes {
		k := ""
		if i == 0 {
			k = "disputes"
		}
		line := fmt.Sprintf("receipt %d: %s", d.Seq, d.Words)
		if d.Detail != "" {
			line += ": " + d.Detail
		}
		fmt.Fprintf(w, "%s\t%s\n", colon(k), line)
	}
	if st := s.Settlement; st != nil {
		row("settlement", "%s at %s, total %s", st.State, rfc3339(st.At), money(st.Total, st.Currency))
		row("  cid", "%s", orDash(st.CID))
		row("  seller's head", "receipt %d %s, total %s", st.HeadSeq, orDash(st.Head), money(st.HeadTotal, st.Currency))
		row("  buyer's acked", "receipt %d %s", st.AckedSeq, orDash(st.Acked))
		row("  signatures", "seller %s, buyer %s", signedWord(st.SellerSigned), signedWord(st.BuyerSigned))
	} else {
		row("settlement", "none yet")
	}
	if cl := s.Claim; cl != nil {
		row("claim", "%s at %s", money(cl.Amount, cl.Currency), rfc3339(cl.At))
		row("  cid", "%s", orDash(cl.CID))
		row("  evidence", "receipt %d %s acked, total %s", cl.AckedSeq, orDash(cl.AckedReceipt), money(cl.AckedTotal, cl.Currency))
		row("  seller's head", "%s, total %s", orDash(cl.Head), money(cl.HeadTotal, cl.Currency))
		row("  signature", "seller %s", signedWord(cl.Signed))
	}
	w.Flush()
}

func colon(k string) string {
	if k == "" {
		return ""
	}
	return k + ":"
}

func signedWord(ok bool) string {
	if ok {
		return "signed"
	}
	return "missing"
}

func cmdBalance(ctx context.Context, c *cli, args []string) error {
	if err := parseNoArgs(newFlags("balance"), args); err != nil {
		return err
	}
	list, err := call(c, func(cl *api.Client) ([]api.Balance, error) { return cl.Balance(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.BalanceResponse{Balances: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no balances: nothing acknowledged or settled yet")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PEER\tCURRENCY\tRECEIVABLE\tPAYABLE\tNET\tCLAIMED\tLEASES")
	for _, b := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", shortID(b.Counterparty.String()), b.Currency,
			money(b.Receivable, b.Currency), money(b.Payable, b.Currency), money(b.Net, b.Currency), money(b.Claimed, b.Currency), b.Leases)
	}
	return w.Flush()
}

func invoiceFlags() (*flags, *string, *bool) {
	f := newFlags("invoice")
	month := f.str("month", "", "the `month`, YYYY-MM like 2026-11: receipts whose period ends in it (UTC)")
	asCSV := f.boolean("csv", false, "print CSV, one line per lease: "+strings.Join(invoiceCSVHeader, ","))
	return f, month, asCSV
}

// invoiceCSVHeader is the header of 'invoice --csv'.
var invoiceCSVHeader = []string{"month", "role", "counterparty", "lease", "currency", "receipts", "from", "to", "billed_seconds", "amount_micro", "amount"}

func cmdInvoice(ctx context.Context, c *cli, args []string) error {
	f, month, asCSV := invoiceFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if err := f.require("month"); err != nil {
		return err
	}
	if _, err := api.ParseMonth(*month); err != nil {
		return usagef("--month %v", err)
	}
	if *asCSV && c.json {
		return usagef("give --csv or --json, not both")
	}
	inv, err := call(c, func(cl *api.Client) (api.Invoice, error) { return cl.Invoice(ctx, *month) })
	if err != nil {
		return err
	}
	switch {
	case c.json:
		return c.printJSON(inv)
	case *asCSV:
		return writeInvoiceCSV(c, inv)
	}
	if len(inv.Lines) == 0 {
		fmt.Fprintf(c.stdout, "no acknowledged receipts in %s\n", inv.Month)
		return nil
	}
	fmt.Fprintf(c.stdout, "invoice %s: %s to %s\n", inv.Month, rfc3339(inv.Start), rfc3339(inv.End))
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LEASE\tROLE\tPEER\tRECEIPTS\tFROM\tTO\tBILLED\tAMOUNT\tSTATUS")
	for _, l := range inv.Lines {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", l.Lease, l.Role, shortID(l.Counterparty.String()), l.Receipts,
			rfc3339(l.From), rfc3339(l.To), roundDuration(time.Duration(l.BilledMs)*time.Millisecond), money(l.Amount, l.Currency), l.Status)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, t := range inv.Totals {
		fmt.Fprintf(c.stdout, "%s: receivable %s, payable %s, net %s\n", t.Currency,
			money(t.Receivable, t.Currency), money(t.Payable, t.Currency), money(t.Net, t.Currency))
	}
	return nil
}

// writeInvoiceCSV prints an invoice's lines as CSV, with the header even
// when there are none.
func writeInvoiceCSV(c *cli, inv api.Invoice) error {
	w := csv.NewWriter(c.stdout)
	if err := w.Write(invoiceCSVHeader); err != nil {
		return err
	}
	for _, l := range inv.Lines {
		rec := []string{inv.Month, l.Role, l.Counterparty.String(), l.Lease, l.Currency, strconv.FormatUint(l.Receipts, 10),
			rfc3339(l.From), rfc3339(l.To), seconds(l.BilledMs), strconv.FormatInt(l.Amount, 10), protocol.FormatMicro(l.Amount)}
		if err := w.Write(rec); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}
