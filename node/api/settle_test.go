package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/node/settle"
	"github.com/spotmesh/spotmesh/protocol"
)

const price = 123457 // apitest.SamplePrice: one receipt of an hour

func withSample(t *testing.T, f *apitest.Fake) { f.Ledger.AddSample(t, f) }

// counterparty is the sample lease's counterparty, as the fake holds it.
func counterparty(t *testing.T, f *apitest.Fake, id cid.Cid) peer.ID {
	t.Helper()
	sm, err := f.Ledger.Summary(id)
	if err != nil {
		t.Fatal(err)
	}
	return sm.Counterparty
}

func settleCases(t *testing.T) []apiCase {
	receipts := func(id cid.Cid) string { return "/v1/leases/" + id.String() + "/receipts" }
	settlement := func(id cid.Cid) string { return "/v1/settlements/" + id.String() }
	noSettle := func(f *apitest.Fake) { f.NoSettle = true }
	unknown := protocol.CIDOf([]byte("no such lease")).String()
	return []apiCase{
		{name: "receipts", method: "GET", target: receipts(apitest.SampleDisputed), setupT: withSample, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var r api.ReceiptsResponse
				mustJSON(t, b, &r)
				if r.Lease != apitest.SampleDisputed.String() || len(r.Receipts) != 3 {
					t.Fatalf("receipts = %s", b)
				}
				for i, rc := range r.Receipts {
					n := int64(i + 1)
					if rc.Seq != uint64(n) || rc.Amount != price || rc.Total != n*price || rc.Currency != "USD" || rc.BilledMs != n*3600_000 ||
						rc.To.Sub(rc.From) != time.Hour || rc.Usage.CPUMs != 1200_000 || rc.Usage.MemoryPeak != 256<<20 || rc.CID == "" {
						t.Errorf("receipt %d = %+v", n, rc)
					}
					if (rc.Prev == "") != (n == 1) || (n > 1 && rc.Prev != r.Receipts[i-1].CID) {
						t.Errorf("receipt %d: prev %q", n, rc.Prev)
					}
				}
				if r.Receipts[0].State != "acked" || r.Receipts[1].State != "acked" || r.Receipts[2].State != "disputed" || !r.Receipts[2].Final {
					t.Errorf("states = %s", b)
				}
				d := r.Receipts[2].Dispute
				if d == nil || d.Reason != "overcharge" || d.Words != protocol.DisputeOvercharge.Words() || !strings.Contains(d.Detail, "want 2h40m0s") ||
					d.Receipt != r.Receipts[2].CID || d.CID == "" || r.Receipts[0].Dispute != nil {
					t.Errorf("dispute = %+v", d)
				}
			}},
		{name: "receipts, pending", method: "GET", target: receipts(apitest.SampleOpen), setupT: withSample, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var r api.ReceiptsResponse
				mustJSON(t, b, &r)
				if len(r.Receipts) != 2 || r.Receipts[0].State != "acked" || r.Receipts[1].State != "pending" || r.Receipts[1].Final {
					t.Errorf("receipts = %s", b)
				}
			}},
		{name: "receipts, unknown lease", method: "GET", target: "/v1/leases/" + unknown + "/receipts", setupT: withSample,
			wantStatus: 404, wantCode: api.CodeNotFound, check: wantMessage("settle ls")},
		{name: "receipts, bad lease", method: "GET", target: "/v1/leases/xyz/receipts", wantStatus: 400, wantCode: api.CodeBadRequest,
			check: wantMessage(`lease "xyz" is not a lease ID`)},
		{name: "receipts, unknown parameter", method: "GET", target: receipts(apitest.SampleOpen) + "?seq=1", setupT: withSample,
			wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage("unknown parameter")},
		{name: "receipts, no settle service", method: "GET", target: receipts(apitest.SampleOpen), setup: noSettle, wantStatus: 503, wantCode: api.CodeUnavailable},
		{name: "settlements, none", method: "GET", target: "/v1/settlements", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if strings.TrimSpace(string(b)) != `{"settlements":[]}` {
				t.Errorf("settlements = %s", b)
			}
		}},
		{name: "settlements", method: "GET", target: "/v1/settlements", setupT: withSample, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.SettlementsResponse
			mustJSON(t, b, &r)
			var got []string
			for _, s := range r.Settlements {
				got = append(got, s.Status+"/"+s.Role)
			}
			// The most recently changed first.
			if strings.Join(got, " ") != "open/seller settled/buyer disputed/seller claimed/seller" {
				t.Errorf("settlements = %v\n%s", got, b)
			}
			if s := r.Settlements[0]; s.Lease != apitest.SampleOpen.String() || s.HeadSeq != 2 || s.AckedSeq != 1 || s.HeadTotal != 2*price ||
				s.AckedTotal != price || s.Owed != price || s.Settlement != nil || s.Claim != nil || s.Final || s.Disputes == nil {
				t.Errorf("open = %+v", s)
			}
		}},
		{name: "settlements, no settle service", method: "GET", target: "/v1/settlements", setup: noSettle, wantStatus: 503, wantCode: api.CodeUnavailable},
		{name: "settlements, failing", method: "GET", target: "/v1/settlements", setup: func(f *apitest.Fake) { f.Ledger.SetErr(errors.New("disk on fire")) },
			wantStatus: 500, wantCode: api.CodeInternal},
		{name: "settlements, closed", method: "GET", target: "/v1/settlements", setup: func(f *apitest.Fake) { f.Ledger.SetErr(settle.ErrClosed) },
			wantStatus: 503, wantCode: api.CodeUnavailable},
		{name: "settlement, disputed", method: "GET", target: settlement(apitest.SampleDisputed), setupT: withSample, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var s api.LeaseSettlement
				mustJSON(t, b, &s)
				if s.Status != "disputed" || s.Role != "seller" || s.Counterparty != counterparty(t, f, apitest.SampleDisputed) || s.HeadSeq != 3 ||
					s.HeadTotal != 3*price || s.AckedSeq != 2 || s.AckedTotal != 2*price || s.Owed != 2*price || !s.Final || s.Updated.IsZero() {
					t.Errorf("settlement = %s", b)
				}
				if len(s.Disputes) != 1 || s.Disputes[0].Words != protocol.DisputeOvercharge.Words() || s.Disputes[0].Seq != 3 || s.Disputes[0].Detail == "" {
					t.Errorf("disputes = %+v", s.Disputes)
				}
				r := s.Settlement
				if r == nil || r.State != "disputed" || !r.SellerSigned || !r.BuyerSigned || r.HeadSeq != 3 || r.AckedSeq != 2 || r.Total != 2*price ||
					r.HeadTotal != 3*price || r.Head == "" || r.Acked == "" || r.Head == r.Acked || len(r.Disputes) != 1 || r.Disputes[0] != s.Disputes[0].CID || r.CID == "" {
					t.Errorf("settlement record = %+v", r)
				}
			}},
		{name: "settlement, settled", method: "GET", target: settlement(apitest.SampleSettled), setupT: withSample, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var s api.LeaseSettlement
				mustJSON(t, b, &s)
				if s.Status != "settled" || s.Role != "buyer" || s.Settlement == nil || s.Settlement.State != "settled" || !s.Settlement.SellerSigned ||
					!s.Settlement.BuyerSigned || s.Settlement.Head != s.Settlement.Acked || s.Owed != 2*price || len(s.Disputes) != 0 {
					t.Errorf("settlement = %s", b)
				}
			}},
		{name: "settlement, claimed", method: "GET", target: settlement(apitest.SampleClaimed), setupT: withSample, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var s api.LeaseSettlement
				mustJSON(t, b, &s)
				c := s.Claim
				if s.Status != "claimed" || s.Settlement != nil || c == nil || !c.Signed || c.Amount != 2*price || c.AckedSeq != 1 ||
					c.AckedTotal != price || c.AckedReceipt == "" || c.Head == "" || c.HeadTotal != 2*price || c.CID == "" || c.At.IsZero() {
					t.Errorf("settlement = %s", b)
				}
			}},
		{name: "settlement, unknown lease", method: "GET", target: "/v1/settlements/" + unknown, setupT: withSample, wantStatus: 404, wantCode: api.CodeNotFound,
			check: wantMessage(unknown)},
		{name: "settlement, bad lease", method: "GET", target: "/v1/settlements/xyz", wantStatus: 400, wantCode: api.CodeBadRequest},
		{name: "balance, none", method: "GET", target: "/v1/balance", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if strings.TrimSpace(string(b)) != `{"balances":[]}` {
				t.Errorf("balance = %s", b)
			}
		}},
		{name: "balance", method: "GET", target: "/v1/balance", setupT: withSample, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.BalanceResponse
			mustJSON(t, b, &r)
			want := map[peer.ID]api.Balance{
				// Disputed (2 acked) and open (1 acked).
				counterparty(t, f, apitest.SampleDisputed): {Currency: "USD", Receivable: 3 * price, Net: 3 * price, Leases: 2},
				counterparty(t, f, apitest.SampleClaimed):  {Currency: "USD", Receivable: price, Net: price, Claimed: price, Leases: 1},
				counterparty(t, f, apitest.SampleSettled):  {Currency: "USD", Payable: 2 * price, Net: -2 * price, Leases: 1},
			}
			if len(r.Balances) != len(want) {
				t.Fatalf("balance = %s", b)
			}
			for _, got := range r.Balances {
				w := want[got.Counterparty]
				w.Counterparty = got.Counterparty
				if got != w {
					t.Errorf("balance with %s = %+v, want %+v", got.Counterparty, got, w)
				}
			}
		}},
		{name: "balance, no settle service", method: "GET", target: "/v1/balance", setup: noSettle, wantStatus: 503, wantCode: api.CodeUnavailable},
		{name: "invoice", method: "GET", target: "/v1/invoice?month=2026-11", setupT: withSample, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var inv api.Invoice
			mustJSON(t, b, &inv)
			if inv.Month != "2026-11" || !inv.Start.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) || !inv.End.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("month = %s", b)
			}
			var got []string
			for _, l := range inv.Lines {
				got = append(got, l.Lease+"/"+l.Role)
				if l.Amount != int64(l.Receipts)*price || l.BilledMs != int64(l.Receipts)*3600_000 || l.To.Sub(l.From) != time.Duration(l.Receipts)*time.Hour {
					t.Errorf("line = %+v", l)
				}
			}
			want := []string{apitest.SampleClaimed.String() + "/seller", apitest.SampleDisputed.String() + "/seller",
				apitest.SampleSettled.String() + "/buyer", apitest.SampleOpen.String() + "/seller"}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("lines = %v, want %v", got, want)
			}
			if len(inv.Lines) == 4 && (inv.Lines[0].Receipts != 1 || inv.Lines[1].Receipts != 2 || inv.Lines[1].Status != "disputed" || inv.Lines[3].Receipts != 1) {
				t.Errorf("lines = %s", b)
			}
			if len(inv.Totals) != 1 || inv.Totals[0] != (api.InvoiceTotal{Currency: "USD", Receivable: 4 * price, Payable: 2 * price, Net: 2 * price}) {
				t.Errorf("totals = %+v", inv.Totals)
			}
		}},
		{name: "invoice, a month without receipts", method: "GET", target: "/v1/invoice?month=2026-10", setupT: withSample, wantStatus: 200,
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				var inv api.Invoice
				mustJSON(t, b, &inv)
				if inv.Month != "2026-10" || inv.Lines == nil || len(inv.Lines) != 0 || inv.Totals == nil || len(inv.Totals) != 0 {
					t.Errorf("invoice = %s", b)
				}
			}},
		{name: "invoice, no month", method: "GET", target: "/v1/invoice", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("query parameter month: required: want a month as YYYY-MM, like 2026-11")},
		{name: "invoice, bad month", method: "GET", target: "/v1/invoice?month=2026-13", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage(`query parameter month: "2026-13": want a month as YYYY-MM, like 2026-11`)},
		{name: "invoice, month in words", method: "GET", target: "/v1/invoice?month=November", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "invoice, unknown parameter", method: "GET", target: "/v1/invoice?month=2026-11&role=seller", wantStatus: 400, wantCode: api.CodeBadRequest,
			check: wantMessage("this route takes month")},
		{name: "invoice, no settle service", method: "GET", target: "/v1/invoice?month=2026-11", setup: noSettle, wantStatus: 503, wantCode: api.CodeUnavailable},
	}
}

func TestSettleParseMonth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{"2026-11", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), ""},
		{"1970-01", time.Unix(0, 0).UTC(), ""},
		{"", time.Time{}, "required"},
		{"2026-1", time.Time{}, "YYYY-MM"},
		{"2026-13", time.Time{}, "YYYY-MM"},
		{"26-11", time.Time{}, "YYYY-MM"},
		{"2026-11-01", time.Time{}, "YYYY-MM"},
		{"1969-12", time.Time{}, "YYYY-MM"},
	} {
		got, err := api.ParseMonth(tc.in)
		if tc.err == "" && (err != nil || !got.Equal(tc.want) || got.Location() != time.UTC) {
			t.Errorf("ParseMonth(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseMonth(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
		}
	}
}

// TestSettleClient: the client's settle methods against a served fake.
func TestSettleClient(t *testing.T) {
	f := apitest.NewFake(t)
	sample := f.Ledger.AddSample(t, f)
	s := apitest.Serve(t, f)
	cl := api.NewClient(s.Addr(), apitest.Token)
	defer cl.CloseIdleConnections()
	ctx := context.Background()

	rs, err := cl.Receipts(ctx, apitest.SampleDisputed.String())
	if err != nil || len(rs.Receipts) != 3 || rs.Receipts[2].Dispute == nil {
		t.Errorf("Receipts = %+v, %v", rs, err)
	}
	if _, err := cl.Receipts(ctx, protocol.CIDOf([]byte("x")).String()); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("Receipts of an unknown lease: %v", err)
	}
	list, err := cl.Settlements(ctx)
	if err != nil || len(list) != 4 {
		t.Errorf("Settlements = %+v, %v", list, err)
	}
	one, err := cl.Settlement(ctx, apitest.SampleSettled.String())
	if err != nil || one.Status != "settled" || one.Counterparty != sample.Seller {
		t.Errorf("Settlement = %+v, %v", one, err)
	}
	bal, err := cl.Balance(ctx)
	if err != nil || len(bal) != 3 {
		t.Errorf("Balance = %+v, %v", bal, err)
	}
	inv, err := cl.Invoice(ctx, "2026-11")
	if err != nil || inv.Month != "2026-11" || len(inv.Lines) != 4 {
		t.Errorf("Invoice = %+v, %v", inv, err)
	}
	if _, err := cl.Invoice(ctx, "11/2026"); !api.IsCode(err, api.CodeBadRequest) {
		t.Errorf("Invoice of a bad month: %v", err)
	}

	bad := api.NewClient(s.Addr(), "wrong-token-0123456789abcdef")
	defer bad.CloseIdleConnections()
	if _, err := bad.Balance(ctx); !api.IsCode(err, api.CodeUnauthorized) {
		t.Errorf("Balance without the token: %v", err)
	}
}
