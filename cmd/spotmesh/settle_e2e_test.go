package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	"github.com/spotmesh/spotmesh/protocol"
)

func settlementOf(t *testing.T, home, lease string) (api.LeaseSettlement, error) {
	t.Helper()
	out, err := runCLI(t, "--home", home, "settle", "show", lease, "--json")
	if err != nil {
		return api.LeaseSettlement{}, err
	}
	var s api.LeaseSettlement
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("settle show --json: %v\n%s", err, out)
	}
	return s, nil
}

func receiptsOf(t *testing.T, home, lease string) []api.Receipt {
	t.Helper()
	var r api.ReceiptsResponse
	out := mustCLI(t, "--home", home, "receipts", "ls", "--lease", lease, "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("receipts ls --json: %v\n%s", err, out)
	}
	return r.Receipts
}

// TestSettleThroughCLI: B leases A's offer (a receipt every second) for a
// few seconds; receipts flow while it runs; B's daemon is killed with
// SIGKILL in the middle and restarted with the same home; when the lease
// ends, both hold one settlement of the whole chain, each receipt once,
// and the ledger and invoices agree.
func TestSettleThroughCLI(t *testing.T) {
	binary(t) // skips under -short
	dir := t.TempDir()
	a, b := filepath.Join(dir, "A"), filepath.Join(dir, "B")
	mustCLI(t, "init", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0")
	daemon(t, a)
	var idA api.IDResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "id", "--home", a, "--json")), &idA); err != nil || len(idA.Addrs) == 0 {
		t.Fatalf("id of A: %v %+v", err, idA)
	}
	mustCLI(t, "init", "--home", b, "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t)), "--bootstrap", idA.Addrs[0])
	buyer := startSeller(t, b, "daemon-1.log")

	mustCLI(t, "--home", a, "offer", "add", "--profile", "c1m1", "--vcpu", "1", "--mem", "1GiB", "--disk", "1GiB",
		"--slots", "2", "--price", "0.5USD/h", "--region", "eu-de", "--min", "1s", "--max", "1h", "--formats", "bundle",
		"--key", "echo", "--receipt-interval", "1s", "--grace", "30s")
	var offerCID string
	eventually(t, 20*time.Second, func() error {
		for _, o := range bookOf(t, b).Offers {
			if o.Key == "echo" {
				offerCID = o.CID
				return nil
			}
		}
		return errors.New("offer not in B's book")
	})
	echo, err := drivertest.BuildEcho(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var appl api.Appliance
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", b, "appliance", "add", echo, "--format", "bundle", "--json")), &appl); err != nil {
		t.Fatal(err)
	}
	var l api.Lease
	out := mustCLI(t, "--home", b, "lease", "new", "--offer", offerCID, "--appliance", appl.CID, "--for", "12s", "--wait", "--json")
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.State != "running" {
		t.Fatalf("lease new: %v %+v", err, l)
	}
	// Receipts arrive and are acknowledged while it runs.
	eventually(t, 20*time.Second, func() error {
		rs := receiptsOf(t, b, l.ID)
		if len(rs) < 2 || rs[len(rs)-1].State != "acked" {
			return fmt.Errorf("%d receipts at B", len(rs))
		}
		return nil
	})
	buyer.kill9(t)
	// Receipts pile up at A, unanswered, while B is dead.
	eventually(t, 20*time.Second, func() error {
		rs := receiptsOf(t, a, l.ID)
		pending := 0
		for _, r := range rs {
			if r.State == "pending" {
				pending++
			}
		}
		if pending < 2 {
			return fmt.Errorf("%d receipts unanswered at A", pending)
		}
		return nil
	})
	startSeller(t, b, "daemon-2.log")

	var sa, sb api.LeaseSettlement
	eventually(t, 60*time.Second, func() error {
		var err error
		if sa, err = settlementOf(t, a, l.ID); err != nil {
			return err
		}
		if sb, err = settlementOf(t, b, l.ID); err != nil {
			return err
		}
		if sa.Status != "settled" || sb.Status != "settled" {
			return fmt.Errorf("A %s, B %s", sa.Status, sb.Status)
		}
		return nil
	})
	if sa.Settlement.CID != sb.Settlement.CID || !sa.Settlement.SellerSigned || !sa.Settlement.BuyerSigned {
		t.Fatalf("settlements differ or lack a signature: A %+v, B %+v", sa.Settlement, sb.Settlement)
	}
	ra, rb := receiptsOf(t, a, l.ID), receiptsOf(t, b, l.ID)
	if len(ra) != len(rb) || uint64(len(ra)) != sa.Settlement.HeadSeq || len(ra) < 8 {
		t.Fatalf("A holds %d receipts, B %d, settlement head %d", len(ra), len(rb), sa.Settlement.HeadSeq)
	}
	var sum int64
	var billed int64
	for i, r := range rb {
		if r.Seq != uint64(i+1) || r.State != "acked" || r.CID != ra[i].CID {
			t.Fatalf("receipt %d at B: seq %d state %s (A holds %s)", i+1, r.Seq, r.State, ra[i].CID)
		}
		sum += r.Amount
		billed = r.BilledMs
	}
	want, _ := protocol.Charge(protocol.Price{Micro: 500_000, Currency: "USD"}, 1, protocol.Millis(billed))
	if sum != want || sa.Settlement.Total != want || billed > 12_000 {
		t.Fatalf("receipts add up to %d over %d ms, settled %d; want %d", sum, billed, sa.Settlement.Total, want)
	}
	var bal api.BalanceResponse
	if err := json.Unmarshal([]byte(mustCLI(t, "--home", b, "balance", "--json")), &bal); err != nil {
		t.Fatal(err)
	}
	if len(bal.Balances) != 1 || bal.Balances[0].Payable != want || bal.Balances[0].Counterparty != idA.PeerID {
		t.Fatalf("B's balance %+v, want %d payable to A", bal, want)
	}
	csv := mustCLI(t, "--home", a, "invoice", "--month", time.Now().UTC().Format("2006-01"), "--csv")
	if !strings.Contains(csv, l.ID) || !strings.Contains(csv, ",seller,") {
		t.Fatalf("A's invoice:\n%s", csv)
	}
}
