package main

import (
	"encoding/csv"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/protocol"
)

func TestSettleUsageErrors(t *testing.T) {
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"receipts"}, "want a sub-verb: ls"},
		{[]string{"receipts", "ls"}, "--lease is required"},
		{[]string{"receipts", "ls", "--lease", "xyz"}, `--lease "xyz": not a lease ID`},
		{[]string{"receipts", "ls", "--lease", testCID, "extra"}, `unexpected argument "extra"`},
		{[]string{"settle"}, "want a sub-verb: ls or show"},
		{[]string{"settle", "frob"}, `unknown sub-verb "frob"`},
		{[]string{"settle", "ls", "x"}, `unexpected argument "x"`},
		{[]string{"settle", "show"}, "want one lease ID"},
		{[]string{"settle", "show", "xyz"}, `lease "xyz": not a lease ID`},
		{[]string{"balance", "x"}, `unexpected argument "x"`},
		{[]string{"invoice"}, "--month is required"},
		{[]string{"invoice", "--month", "2026-13"}, `--month "2026-13": want a month as YYYY-MM, like 2026-11`},
		{[]string{"invoice", "--month", "nov"}, `--month "nov"`},
		{[]string{"invoice", "--month", "2026-11", "--csv", "--json"}, "give --csv or --json, not both"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := spotmesh(t, nil, with([]string{"--home", home}, tc.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.says) {
				t.Errorf("stderr %q does not say %q", r.stderr, tc.says)
			}
		})
	}
}

func TestSettleVerbsAgainstAPI(t *testing.T) {
	home := newHome(t)
	f, _ := serveHome(t, home)
	h := func(args ...string) result {
		t.Helper()
		return spotmesh(t, nil, with([]string{"--home", home}, args...)...)
	}
	ok := func(r result, says ...string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		for _, w := range says {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("output does not show %q:\n%s", w, r.stdout)
			}
		}
	}
	sameJSON := func(r result, path string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if got, want := decodeAny(t, r.stdout), apiGet(t, home, path); !reflect.DeepEqual(got, want) {
			t.Errorf("--json differs from GET %s:\n%s\nwant %v", path, r.stdout, want)
		}
	}

	// An empty ledger.
	ok(h("settle", "ls"), "no settlements")
	ok(h("balance"), "no balances")
	ok(h("invoice", "--month", "2026-11"), "no acknowledged receipts in 2026-11")
	r := h("invoice", "--month", "2026-11", "--csv")
	ok(r)
	if r.stdout != strings.Join(invoiceCSVHeader, ",")+"\n" {
		t.Errorf("empty CSV = %q", r.stdout)
	}

	s := f.Ledger.AddSample(t, f)
	disputed, claimed, settled := apitest.SampleDisputed.String(), apitest.SampleClaimed.String(), apitest.SampleSettled.String()

	ok(h("receipts", "ls", "--lease", disputed), "SEQ", "2026-11-03T10:00:00Z", "0.123457 USD", "0.370371 USD",
		"acked", "disputed: "+protocol.DisputeOvercharge.Words()+" (final)", " 1h ", " 20m ", "256MiB",
		"3 receipts: 2 acked, 1 disputed, 0 pending; total 0.370371 USD")
	ok(h("receipts", "ls", "--lease", apitest.SampleOpen.String()), "pending", "2 receipts: 1 acked, 0 disputed, 1 pending")
	sameJSON(h("receipts", "ls", "--lease", disputed, "--json"), "/v1/leases/"+disputed+"/receipts")
	unknown := protocol.CIDOf([]byte("no such lease")).String()
	if r := h("receipts", "ls", "--lease", unknown); r.code != exitFailed || !strings.Contains(r.stderr, "'settle ls' lists them") {
		t.Errorf("receipts of an unknown lease: %+v", r)
	}

	r = h("settle", "ls")
	ok(r, disputed, claimed, settled, "disputed", "claimed", "settled", "open", "2/3", shortID(s.Buyer.String()),
		"0.370371 USD", "0.246914 USD")
	if strings.Index(r.stdout, apitest.SampleOpen.String()) > strings.Index(r.stdout, claimed) {
		t.Errorf("settle ls: not the most recently changed first:\n%s", r.stdout)
	}
	sameJSON(h("settle", "ls", "--json"), "/v1/settlements")

	ok(h("settle", "show", disputed), "status:", "disputed", "counterparty:", s.Buyer.String(),
		"seller's head:", "receipt 3 (final), total 0.370371 USD", "buyer's acked head:", "receipt 2, total 0.246914 USD",
		"owed:", "receipt 3: "+protocol.DisputeOvercharge.Words()+": receipt 3 bills 3h0m0s in all, want 2h40m0s",
		"settlement:", "disputed at 2026-11-03T13:01:00Z, total 0.246914 USD", "signatures:", "seller signed, buyer signed")
	ok(h("settle", "show", claimed), "claimed", "claim:", "0.246914 USD at 2026-11-01T02:00:00Z", "evidence:", "receipt 1 ",
		"signature:", "seller signed", "settlement:", "none yet", "disputes:", "none")
	sameJSON(h("settle", "show", disputed, "--json"), "/v1/settlements/"+disputed)
	if r := h("settle", "show", unknown); r.code != exitFailed || !strings.Contains(r.stderr, unknown) {
		t.Errorf("settle show of an unknown lease: %+v", r)
	}

	ok(h("balance"), "PEER", shortID(s.Buyer.String()), shortID(s.Seller.String()), "0.370371 USD", "-0.246914 USD")
	sameJSON(h("balance", "--json"), "/v1/balance")

	ok(h("invoice", "--month", "2026-11"), "invoice 2026-11: 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z", claimed, "buyer", " 2h ",
		"USD: receivable 0.493828 USD, payable 0.246914 USD, net 0.246914 USD")
	sameJSON(h("invoice", "--month", "2026-11", "--json"), "/v1/invoice?month=2026-11")
	ok(h("invoice", "--month", "2026-10"), "no acknowledged receipts in 2026-10")

	r = h("invoice", "--month", "2026-11", "--csv")
	ok(r)
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, r.stdout)
	}
	want := [][]string{
		invoiceCSVHeader,
		{"2026-11", "seller", s.Buyer2.String(), claimed, "USD", "1", "2026-10-31T23:00:00Z", "2026-11-01T00:00:00Z", "3600", "123457", "0.123457"},
		{"2026-11", "seller", s.Buyer.String(), disputed, "USD", "2", "2026-11-03T10:00:00Z", "2026-11-03T12:00:00Z", "7200", "246914", "0.246914"},
		{"2026-11", "buyer", s.Seller.String(), settled, "USD", "2", "2026-11-05T08:00:00Z", "2026-11-05T10:00:00Z", "7200", "246914", "0.246914"},
		{"2026-11", "seller", s.Buyer.String(), apitest.SampleOpen.String(), "USD", "1", "2026-11-30T22:00:00Z", "2026-11-30T23:00:00Z", "3600", "123457", "0.123457"},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Errorf("CSV =\n%s\nwant %q", r.stdout, want)
	}
	if strings.Join(invoiceCSVHeader, ",") != "month,role,counterparty,lease,currency,receipts,from,to,billed_seconds,amount_micro,amount" {
		t.Errorf("CSV header changed: %v", invoiceCSVHeader)
	}

	// The node has no settle service.
	f.NoSettle = true
	if r := h("settle", "ls"); r.code != exitFailed || !strings.Contains(r.stderr, "no settle service") {
		t.Errorf("without a settle service: %+v", r)
	}
}

func TestSettleUnreachable(t *testing.T) {
	home := newHome(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := os.WriteFile(filepath.Join(home, node.APIAddrFile), []byte(addr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"receipts", "ls", "--lease", testCID}, {"settle", "ls"}, {"settle", "show", testCID}, {"balance"},
		{"invoice", "--month", "2026-11", "--csv"}} {
		r := spotmesh(t, nil, with(args, "--home", home)...)
		if r.code != exitUnreachable || !strings.Contains(r.stderr, "no spotmesh daemon answers at "+addr) {
			t.Errorf("%v: exit %d, stderr %q; want 3", args, r.code, r.stderr)
		}
	}
}

func TestSettleFormat(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want string
	}{{0, "0"}, {3600_000, "3600"}, {59_500, "59.5"}, {1, "0.001"}, {1_230, "1.23"}, {-1_500, "-1.5"}} {
		if got := seconds(tc.ms); got != tc.want {
			t.Errorf("seconds(%d) = %q, want %q", tc.ms, got, tc.want)
		}
	}
	if got := money(123457, "USD"); got != "0.123457 USD" {
		t.Errorf("money = %q", got)
	}
	if got := money(-2_000_000, "EUR"); got != "-2 EUR" {
		t.Errorf("money = %q", got)
	}
}
