package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
)

// cliExit runs one CLI command to completion and returns what it printed
// and its exit code, whatever the code.
func cliExit(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("spotmesh %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// decodeJSON parses the --json output of a command into v.
func decodeJSON(t *testing.T, what, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s --json: %v\n%s", what, err, out)
	}
}

// TestLeaseVerbsThroughCLI drives the lease verbs that
// TestLeaseThroughCLI leaves aside, between one seller A and one buyer B:
// lease new --best (and its fallback past a paused offer), offer
// pause/resume, lease renew, lease end (running, not yet running, already
// ended), the deny list, lease new --offer with a replaced copy's CID,
// and the exit codes and --json outputs of each.
func TestLeaseVerbsThroughCLI(t *testing.T) {
	binary(t) // skips under -short
	started := time.Now()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "A"), filepath.Join(dir, "B")
	mustCLI(t, "init", "--home", a, "--listen", "/ip4/127.0.0.1/tcp/0")
	daemon(t, a)
	var idA, idB api.IDResponse
	decodeJSON(t, "id", mustCLI(t, "id", "--home", a, "--json"), &idA)
	if len(idA.Addrs) == 0 {
		t.Fatalf("id of A: no addresses: %+v", idA)
	}
	mustCLI(t, "init", "--home", b, "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", idA.Addrs[0])
	daemon(t, b)
	decodeJSON(t, "id", mustCLI(t, "id", "--home", b, "--json"), &idB)

	// Three offers of A: two in the EU at different prices, the cheaper
	// renewable and capped at one lease per buyer, and a cheaper one still
	// outside the EU that --best --region eu must pass over.
	for _, o := range []struct {
		key, region, price, perBuyer string
		renewable                    bool
	}{
		{"cheap", "eu-de", "0.01USD/h", "1", true},
		{"dear", "eu-fr", "0.02USD/h", "0", false},
		{"far", "us-east", "0.005USD/h", "0", true},
	} {
		args := []string{"--home", a, "offer", "add", "--profile", "c1m1", "--vcpu", "1", "--mem", "1GiB", "--disk", "1GiB",
			"--slots", "3", "--price", o.price, "--region", o.region, "--min", "1s", "--max", "1h", "--formats", "bundle",
			"--per-buyer", o.perBuyer, "--key", o.key, "--json"}
		if o.renewable {
			args = append(args, "--renewable")
		}
		var st api.OfferStatus
		decodeJSON(t, "offer add", mustCLI(t, args...), &st)
		if st.Key != o.key {
			t.Fatalf("offer add --key %s: %+v", o.key, st)
		}
	}
	// firstCID is the CID of each offer's copy in B's book when B first
	// holds all three.
	firstCID := map[string]string{}
	eventually(t, 20*time.Second, func() error {
		for _, o := range bookOf(t, b).Offers {
			if o.Seller == idA.PeerID {
				firstCID[o.Key] = o.CID
			}
		}
		if len(firstCID) != 3 {
			return fmt.Errorf("B's book holds %v of A's 3 offers", firstCID)
		}
		return nil
	})
	offerID := func(key string) string { return idA.PeerID.String() + "/" + key }

	echo, err := drivertest.BuildEcho(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var appl api.Appliance
	decodeJSON(t, "appliance add", mustCLI(t, "--home", b, "appliance", "add", echo, "--format", "bundle", "--json"), &appl)

	// Every instance is stopped by its PID when the test ends, whatever
	// the daemons did: its process group SIGTERM, then SIGKILL.
	var pids []int
	t.Cleanup(func() {
		for _, pid := range pids {
			if procAlive(pid) {
				_ = syscall.Kill(-pid, syscall.SIGTERM)
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, pid := range pids {
			for procAlive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if procAlive(pid) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	// leaseNew runs 'lease new ... --json' on B, wants exit 0, and with
	// --wait a running instance whose endpoint answers.
	var lastStderr string // of the last leaseNew
	leaseNew := func(t *testing.T, args ...string) api.Lease {
		t.Helper()
		args = append([]string{"--home", b, "lease", "new", "--appliance", appl.CID}, args...)
		stdout, stderr, code := cliExit(t, append(args, "--json")...)
		if code != 0 {
			t.Fatalf("spotmesh %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		lastStderr = stderr
		var l api.Lease
		decodeJSON(t, "lease new", stdout, &l)
		if l.ID == "" || l.Role != "buyer" || l.Seller != idA.PeerID || l.Buyer != idB.PeerID {
			t.Fatalf("lease new: %+v", l)
		}
		if in, ok := instancesOf(t, a)[l.ID]; ok && in.PID > 0 {
			pids = append(pids, in.PID)
		}
		if !slices.Contains(args, "--wait") {
			return l
		}
		if l.State != "running" || l.Endpoint == "" {
			t.Fatalf("lease new --wait: %+v", l)
		}
		if got, err := echoSays(l.Endpoint); err != nil || !strings.Contains(got, "lease "+l.ID) {
			t.Fatalf("the endpoint of %s says %q, %v", l.ID, got, err)
		}
		return l
	}
	// buyerLease is B's 'lease show ID --json'.
	buyerLease := func(t *testing.T, id string) api.Lease {
		t.Helper()
		var l api.Lease
		decodeJSON(t, "lease show", mustCLI(t, "--home", b, "lease", "show", id, "--json"), &l)
		return l
	}
	// bookCID is the CID of the copy of offer key in B's book, "" if
	// absent (paused copies included).
	bookCID := func(t *testing.T, key string) (cid string, paused bool) {
		t.Helper()
		for _, o := range bookOf(t, b, "--include-paused").Offers {
			if o.Seller == idA.PeerID && o.Key == key {
				return o.CID, o.Paused
			}
		}
		return "", false
	}
	best := []string{"--best", "--region", "eu", "--vcpu", ">=1", "--max-price", "0.05USD/h", "--for", "20s"}

	// cheapLease runs on the renewable offer, dearLease on the other.
	var cheapLease, dearLease api.Lease

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"lease", "renew", firstCID["cheap"]},
			{"lease", "renew", firstCID["cheap"], "--for", "-1s"},
			{"lease", "renew", "not-a-lease", "--for", "30s"},
			{"lease", "new", "--offer", firstCID["cheap"], "--best", "--appliance", appl.CID, "--for", "20s"},
			{"lease", "new", "--offer", firstCID["cheap"], "--appliance", appl.CID},
			{"lease", "new", "--offer", firstCID["cheap"], "--region", "eu", "--appliance", appl.CID, "--for", "20s"},
			{"lease", "new", "--best", "--vcpu", "lots", "--appliance", appl.CID, "--for", "20s"},
			{"lease", "end"},
			{"lease", "end", "not-a-lease"},
			{"deny", "add", "not-a-peer"},
			{"deny", "rm"},
			{"offer", "pause"},
			{"offer", "resume", "a key/with a slash"},
		} {
			_, stderr, code := cliExit(t, append([]string{"--home", b}, args...)...)
			if code != exitUsage || strings.TrimSpace(stderr) == "" {
				t.Errorf("spotmesh %s: exit %d, want %d with words on stderr; stderr:\n%s", strings.Join(args, " "), code, exitUsage, stderr)
			}
		}
		// A CID that names no offer B's book ever held: refused, exit 1.
		_, stderr, code := cliExit(t, "--home", b, "lease", "new", "--offer", appl.CID, "--appliance", appl.CID, "--for", "20s")
		if code != exitFailed || !strings.Contains(stderr, "no offer") {
			t.Errorf("lease new --offer <unknown CID>: exit %d, want 1 and \"no offer\"; stderr:\n%s", code, stderr)
		}
		// Pausing an offer A does not have: exit 1, in words.
		_, stderr, code = cliExit(t, "--home", a, "offer", "pause", "nosuch")
		if code != exitFailed || !strings.Contains(stderr, "no offer with key") {
			t.Errorf("offer pause nosuch: exit %d, want 1 and \"no offer with key\"; stderr:\n%s", code, stderr)
		}
	})

	t.Run("best", func(t *testing.T) {
		cheapLease = leaseNew(t, append(best, "--wait")...)
		if cheapLease.OfferID != offerID("cheap") || cheapLease.PriceText != "0.01USD/h" {
			t.Fatalf("lease new --best leased %s at %s, want %s at 0.01USD/h", cheapLease.OfferID, cheapLease.PriceText, offerID("cheap"))
		}

		// B holds the one lease the cheaper offer allows a buyer, which its
		// book does not show: A refuses the next proposal and --best
		// leases the dearer offer.
		dearLease = leaseNew(t, append(best, "--wait")...)
		if dearLease.OfferID != offerID("dear") || dearLease.PriceText != "0.02USD/h" {
			t.Fatalf("lease new --best past a refusal leased %s at %s, want %s", dearLease.OfferID, dearLease.PriceText, offerID("dear"))
		}
		if want := "offer " + offerID("cheap") + " refused: buyer refused, trying the next"; !strings.Contains(lastStderr, want) {
			t.Errorf("lease new --best past a refusal: stderr %q, want %q", lastStderr, want)
		}
		if at := dearLease.Attempts; len(at) != 1 || at[0].OfferID != offerID("cheap") || at[0].Reason != "buyer_refused" || at[0].Words != "buyer refused" {
			t.Errorf("lease new --best --wait --json past a refusal: attempts %+v, want %s refused as buyer_refused", at, offerID("cheap"))
		}

		// Paused, the cheaper offer is passed over: --best leases the
		// dearer one, whether B's book already holds the paused copy or
		// A refuses the proposal as offer_paused.
		var pr api.PauseResponse
		decodeJSON(t, "offer pause", mustCLI(t, "--home", a, "offer", "pause", "cheap", "--json"), &pr)
		if pr.Key != "cheap" || !pr.Paused {
			t.Fatalf("offer pause --json: %+v", pr)
		}
		l := leaseNew(t, best...)
		if l.OfferID != offerID("dear") || l.PriceText != "0.02USD/h" {
			t.Fatalf("lease new --best with %s paused leased %s at %s, want %s", offerID("cheap"), l.OfferID, l.PriceText, offerID("dear"))
		}
		t.Logf("lease new --best with the cheaper offer paused: %d offers refused first", len(l.Attempts))
		for _, at := range l.Attempts {
			if at.OfferID != offerID("cheap") || at.Reason != "offer_paused" && at.Reason != "buyer_refused" {
				t.Errorf("lease new --best: attempt %+v, want only %s refused as offer_paused or buyer_refused", at, offerID("cheap"))
			}
		}
		mustCLI(t, "--home", b, "lease", "end", l.ID)
		eventually(t, 20*time.Second, func() error {
			if has(bookOf(t, b), "cheap") {
				return errors.New("the paused offer is still in B's book (without --include-paused)")
			}
			if _, paused := bookCID(t, "cheap"); !paused {
				return errors.New("B's book does not hold the offer paused")
			}
			return nil
		})
		// Its running lease goes on.
		if got, err := echoSays(cheapLease.Endpoint); err != nil || !strings.Contains(got, "lease "+cheapLease.ID) {
			t.Errorf("the paused offer's running lease: endpoint says %q, %v", got, err)
		}
		// By its offer ID it is refused, in words.
		_, stderr, code := cliExit(t, "--home", b, "lease", "new", "--offer", offerID("cheap"), "--appliance", appl.CID, "--for", "20s")
		if code != exitFailed || !strings.Contains(stderr, "paused") {
			t.Errorf("lease new --offer <paused offer>: exit %d, want 1 and the reason in words; stderr:\n%s", code, stderr)
		}

		// Resumed, it is back in B's book, the cheapest again.
		decodeJSON(t, "offer resume", mustCLI(t, "--home", a, "offer", "resume", "cheap", "--json"), &pr)
		if pr.Key != "cheap" || pr.Paused {
			t.Fatalf("offer resume --json: %+v", pr)
		}
		eventually(t, 20*time.Second, func() error {
			got := bookOf(t, b, "--region", "eu", "--vcpu", ">=1", "--max-price", "0.05USD/h")
			if len(got.Offers) == 0 || got.Offers[0].Key != "cheap" {
				return fmt.Errorf("B's book after the resume: %+v", got.Offers)
			}
			return nil
		})
	})

	t.Run("renew", func(t *testing.T) {
		if cheapLease.ID == "" || dearLease.ID == "" {
			t.Skip("needs the leases of the best subtest")
		}
		before := buyerLease(t, cheapLease.ID)
		if before.State != "running" || before.Ends.IsZero() {
			t.Fatalf("B's lease before the renewal: %+v", before)
		}
		want := before.Ends.Add(30 * time.Second)

		var got api.Lease
		decodeJSON(t, "lease renew", mustCLI(t, "--home", b, "lease", "renew", cheapLease.ID, "--for", "30s", "--json"), &got)
		if got.ID != cheapLease.ID || !got.Ends.Equal(want) || got.Extensions != before.Extensions+1 {
			t.Fatalf("lease renew --for 30s: ends %v, %d extensions; want ends %v, %d extensions",
				got.Ends, got.Extensions, want, before.Extensions+1)
		}
		eventually(t, 10*time.Second, func() error {
			if l := buyerLease(t, cheapLease.ID); !l.Ends.Equal(want) || l.State != "running" {
				return fmt.Errorf("B's lease show: %s, ends %v, want running until %v", l.State, l.Ends, want)
			}
			if l := sellerLeases(t, a)[cheapLease.ID]; !l.Ends.Equal(want) || l.State != "running" {
				return fmt.Errorf("A's lease ls --role seller: %s, ends %v, want running until %v", l.State, l.Ends, want)
			}
			if in := instancesOf(t, a)[cheapLease.ID]; !in.Ends.Equal(want) {
				return fmt.Errorf("A's instances ls: ends %v, want %v", in.Ends, want)
			}
			return nil
		})
		// The text output says so too.
		if out := mustCLI(t, "--home", b, "lease", "renew", cheapLease.ID, "--for", "1s"); !strings.Contains(out, "renewed") {
			t.Errorf("lease renew: %q", out)
		}
		want = want.Add(time.Second)

		// The dearer offer is not renewable: refused, exit 1, in words;
		// nothing changes on either side.
		dearBefore := buyerLease(t, dearLease.ID)
		_, stderr, code := cliExit(t, "--home", b, "lease", "renew", dearLease.ID, "--for", "30s")
		if code != exitFailed || !strings.Contains(stderr, "not renewable") {
			t.Errorf("lease renew <non-renewable>: exit %d, want 1 and \"not renewable\"; stderr:\n%s", code, stderr)
		}
		t.Logf("lease renew <non-renewable>: %s", strings.TrimSpace(stderr))
		if l := buyerLease(t, dearLease.ID); !l.Ends.Equal(dearBefore.Ends) || l.Extensions != dearBefore.Extensions {
			t.Errorf("the refused renewal moved B's lease: %v -> %v", dearBefore.Ends, l.Ends)
		}
		if l := sellerLeases(t, a)[dearLease.ID]; !l.Ends.Equal(dearBefore.Ends) {
			t.Errorf("the refused renewal moved A's lease: %v -> %v", dearBefore.Ends, l.Ends)
		}
		// Without --for: usage, exit 2, and nothing renewed.
		if _, _, code := cliExit(t, "--home", b, "lease", "renew", cheapLease.ID); code != exitUsage {
			t.Errorf("lease renew without --for: exit %d, want 2", code)
		}
		if l := buyerLease(t, cheapLease.ID); !l.Ends.Equal(want) {
			t.Errorf("B's lease ends %v after the usage error, want %v", l.Ends, want)
		}
	})

	t.Run("end", func(t *testing.T) {
		if cheapLease.ID == "" || dearLease.ID == "" {
			t.Skip("needs the leases of the best subtest")
		}
		for _, l := range []api.Lease{cheapLease, dearLease} {
			in := instancesOf(t, a)[l.ID]
			if in.State != "running" || !procAlive(in.PID) {
				t.Fatalf("A's instance of %s before the end: %+v (alive %v)", l.ID, in, procAlive(in.PID))
			}
			var got api.Lease
			decodeJSON(t, "lease end", mustCLI(t, "--home", b, "lease", "end", l.ID, "--json"), &got)
			if got.ID != l.ID || got.State != "ended" || got.Cause != "ended_by_buyer" {
				t.Errorf("lease end --json: %+v, want ended, ended_by_buyer", got)
			}
			eventually(t, 10*time.Second, func() error {
				if procAlive(in.PID) {
					return fmt.Errorf("the instance of %s (PID %d) still runs", l.ID, in.PID)
				}
				if in := instancesOf(t, a)[l.ID]; in.State == "running" || in.State == "provisioning" || in.Ended.IsZero() {
					return fmt.Errorf("A's instances ls: %s %s, ended at %v", l.ID, in.State, in.Ended)
				}
				if s := sellerLeases(t, a)[l.ID]; s.State != "ended" || s.Cause != "ended_by_buyer" {
					return fmt.Errorf("A's lease ls --role seller: %s %s (%s)", l.ID, s.State, s.Cause)
				}
				return nil
			})
			if got := buyerLease(t, l.ID); got.State != "ended" || got.Cause != "ended_by_buyer" {
				t.Errorf("B's lease show after the end: %+v", got)
			}
			if _, err := echoSays(l.Endpoint); err == nil {
				t.Errorf("the endpoint of ended lease %s still answers", l.ID)
			}
		}

		// Ending an ended lease again: exit 0, still ended the same way.
		stdout, stderr, code := cliExit(t, "--home", b, "lease", "end", cheapLease.ID, "--json")
		if code != 0 {
			t.Errorf("lease end <ended lease>: exit %d, want 0; stderr:\n%s", code, stderr)
		} else {
			var got api.Lease
			decodeJSON(t, "lease end", stdout, &got)
			if got.State != "ended" || got.Cause != "ended_by_buyer" {
				t.Errorf("lease end <ended lease>: %+v", got)
			}
		}

		// A lease ended before its instance runs: lease new without
		// --wait answers once A grants it, then lease end at once.
		l := leaseNew(t, "--offer", offerID("dear"), "--for", "20s")
		t.Logf("lease %s ended in state %q", l.ID, l.State)
		var got api.Lease
		decodeJSON(t, "lease end", mustCLI(t, "--home", b, "lease", "end", l.ID, "--json"), &got)
		if got.State != "ended" || got.Cause != "ended_by_buyer" {
			t.Errorf("lease end of a lease just made: %+v", got)
		}
		eventually(t, 10*time.Second, func() error {
			if s := sellerLeases(t, a)[l.ID]; s.State != "ended" {
				return fmt.Errorf("A's lease ls --role seller: %s %s", l.ID, s.State)
			}
			in, ok := instancesOf(t, a)[l.ID]
			if ok && in.PID > 0 {
				pids = append(pids, in.PID)
			}
			if ok && (in.State == "running" || in.State == "provisioning" || procAlive(in.PID)) {
				return fmt.Errorf("A's instance of the ended lease %s: %s, PID %d alive %v", l.ID, in.State, in.PID, procAlive(in.PID))
			}
			return nil
		})
		// No instance of any of these leases runs on A.
		for id, in := range instancesOf(t, a) {
			if in.State == "running" || procAlive(in.PID) {
				t.Errorf("A still runs the instance of %s: %+v", id, in)
			}
		}
	})

	t.Run("deny", func(t *testing.T) {
		var d api.Denied
		decodeJSON(t, "deny add", mustCLI(t, "--home", a, "deny", "add", idB.PeerID.String(), "--note", "e2e test", "--json"), &d)
		if d.Peer != idB.PeerID {
			t.Fatalf("deny add --json: %+v", d)
		}
		var ls api.DeniedResponse
		decodeJSON(t, "deny ls", mustCLI(t, "--home", a, "deny", "ls", "--json"), &ls)
		if len(ls.Denied) != 1 || ls.Denied[0].Peer != idB.PeerID || ls.Denied[0].Note != "e2e test" || ls.Denied[0].At.IsZero() {
			t.Errorf("deny ls --json: %+v, want %s noted \"e2e test\"", ls, idB.PeerID)
		}
		if table := mustCLI(t, "--home", a, "deny", "ls"); !strings.Contains(table, idB.PeerID.String()) {
			t.Errorf("deny ls:\n%s", table)
		}

		// B is refused by offer ID, and by --best on every offer of A.
		_, stderr, code := cliExit(t, "--home", b, "lease", "new", "--offer", offerID("cheap"), "--appliance", appl.CID, "--for", "20s")
		if code != exitFailed || !strings.Contains(stderr, "buyer refused") {
			t.Errorf("lease new --offer by a denied buyer: exit %d, want 1 and \"buyer refused\"; stderr:\n%s", code, stderr)
		}
		t.Logf("lease new --offer by a denied buyer: %s", strings.TrimSpace(stderr))
		_, stderr, code = cliExit(t, append([]string{"--home", b, "lease", "new", "--appliance", appl.CID}, best...)...)
		if code != exitFailed || strings.Count(stderr, "buyer refused") != 2 || !strings.Contains(stderr, "no offer granted") {
			t.Errorf("lease new --best by a denied buyer: exit %d, want 1, \"buyer refused\" for both EU offers and \"no offer granted\"; stderr:\n%s", code, stderr)
		}
		for _, l := range sellerLeases(t, a) {
			if l.State != "ended" {
				t.Errorf("A holds a lease of the denied buyer: %+v", l)
			}
		}

		// Allowed again, B leases.
		var rm api.Denied
		decodeJSON(t, "deny rm", mustCLI(t, "--home", a, "deny", "rm", idB.PeerID.String(), "--json"), &rm)
		if rm.Peer != idB.PeerID {
			t.Errorf("deny rm --json: %+v", rm)
		}
		decodeJSON(t, "deny ls", mustCLI(t, "--home", a, "deny", "ls", "--json"), &ls)
		if len(ls.Denied) != 0 {
			t.Errorf("deny ls --json after deny rm: %+v", ls)
		}
		l := leaseNew(t, "--offer", offerID("dear"), "--for", "20s", "--wait")
		mustCLI(t, "--home", b, "lease", "end", l.ID)
		// A peer not on the list (A itself): deny rm says so, exit 1.
		if _, stderr, code := cliExit(t, "--home", a, "deny", "rm", idA.PeerID.String()); code != exitFailed || !strings.Contains(stderr, "not on the deny list") {
			t.Errorf("deny rm of a peer not denied: exit %d, want 1; stderr:\n%s", code, stderr)
		}
	})

	t.Run("old-cid", func(t *testing.T) {
		// The leases and the pause made A republish the offer: B's book
		// holds a newer copy than the one it first held.
		old := firstCID["cheap"]
		eventually(t, 20*time.Second, func() error {
			now, paused := bookCID(t, "cheap")
			if now == "" || now == old || paused {
				return fmt.Errorf("B's book holds %q (paused %v), want a copy newer than %s", now, paused, old)
			}
			return nil
		})
		l := leaseNew(t, "--offer", old, "--for", "20s", "--wait")
		if l.OfferID != offerID("cheap") {
			t.Errorf("lease new --offer <replaced CID> leased %s, want %s", l.OfferID, offerID("cheap"))
		}
		mustCLI(t, "--home", b, "lease", "end", l.ID)
	})
	t.Logf("the whole test took %v", time.Since(started).Round(time.Millisecond))
}
