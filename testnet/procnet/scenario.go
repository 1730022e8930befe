package procnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spotmesh/spotmesh/node"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// Faults a scenario can inject (ScenarioConfig.Fault).
const (
	// FaultKillSeller kills (SIGKILL) the seller of the first buyer's
	// lease once the buyer has acknowledged a receipt, keeps it down for
	// ScenarioConfig.Downtime and starts it again from its home. The
	// instance runs on meanwhile; the restarted seller re-adopts it and
	// catches up on the receipts it owes. The lease must still end settled
	// or disputed, the same on both sides: never lost.
	FaultKillSeller = "kill-seller"
	// FaultPartitionSeller cuts the seller of the first buyer's lease off
	// from every other node (testnet partition) after its first
	// acknowledged receipt, for Downtime, then heals: the lease must end
	// settled, or disputed as the rules say (the buyer's probes may find
	// the instance unreachable), the same on both sides. It needs a
	// testnet made with --netns.
	FaultPartitionSeller = "partition-seller"
)

// ScenarioProfile is the hardware profile of the offers a scenario
// publishes: one vCPU, 1 GiB of memory and of disk, which any machine that
// runs a testnet can hold once per seller.
const ScenarioProfile = "c1m1"

// ScenarioConfig tunes a scenario.
type ScenarioConfig struct {
	// Lease is the length of each buyer's lease. The buyer ends it once
	// Receipts receipts are acknowledged, or it expires first.
	Lease time.Duration
	// ReceiptInterval is the receipt interval of the scenario's offers;
	// their payment grace is ten times it.
	ReceiptInterval time.Duration
	// Receipts is how many receipts each buyer acknowledges before it ends
	// its lease.
	Receipts int
	// Fault is a fault to inject: "" or FaultKillSeller.
	Fault string
	// Downtime is how long the killed seller stays down.
	Downtime time.Duration
	// Timeout bounds the whole scenario.
	Timeout time.Duration
	// Progress, if not nil, receives what happens as it happens, one call
	// at a time.
	Progress func(Event)
}

// DefaultScenarioConfig leases for a minute with a receipt every second
// and ends each lease after three acknowledged receipts, a few seconds
// after its instance runs. The lease's length is only a bound: it leaves
// room for slow transfers on a loaded machine (40 sellers and 10 buyers
// on two cores take 20 to 30 s from a lease's start to its running
// instance).
func DefaultScenarioConfig() ScenarioConfig {
	return ScenarioConfig{
		Lease:           time.Minute,
		ReceiptInterval: time.Second,
		Receipts:        3,
		Downtime:        2 * time.Second,
		Timeout:         2 * time.Minute,
	}
}

// Validate names the first bad field.
func (c ScenarioConfig) Validate() error {
	switch {
	case c.Lease < 2*time.Second || c.Lease > time.Hour:
		return fmt.Errorf("scenario: lease %v: want 2s to 1h", c.Lease)
	case c.ReceiptInterval < 100*time.Millisecond || c.ReceiptInterval > c.Lease:
		return fmt.Errorf("scenario: receipt interval %v: want 100ms up to the lease's length (%v)", c.ReceiptInterval, c.Lease)
	case c.Receipts < 1:
		return fmt.Errorf("scenario: receipts %d: want at least 1", c.Receipts)
	case c.Fault != "" && c.Fault != FaultKillSeller && c.Fault != FaultPartitionSeller:
		return fmt.Errorf("scenario: fault %q: want %q, %q (a --netns testnet) or none", c.Fault, FaultKillSeller, FaultPartitionSeller)
	case c.Fault != "" && (c.Downtime <= 0 || c.Downtime > 10*time.Minute):
		return fmt.Errorf("scenario: downtime %v: want a positive duration up to 10m", c.Downtime)
	case c.Timeout <= 0:
		return fmt.Errorf("scenario: timeout %v: want a positive duration", c.Timeout)
	}
	return nil
}

// Event is one thing a scenario did or saw, for people.
type Event struct {
	At time.Time `json:"at"`
	// Node is the node it is about, a buyer mostly; empty for the market.
	Node string `json:"node,omitempty"`
	// Step is offers, appliance, lease, instance, receipts, fault, end,
	// settle or cleanup.
	Step string `json:"step"`
	Text string `json:"text"`
}

// Scenario runs the market's full cycle on the testnet, as its operator
// would check it: each seller publishes an offer sized for this machine
// (ScenarioProfile), and the time it takes to reach every buyer's book is
// measured; then every buyer at once packs and imports an appliance (a
// small bundle that serves HTTP, see EchoVerb), takes the best lease for
// its demand, waits until the instance answers, lets receipts run, ends
// the lease, and checks the settlement and the receipt chains on both
// sides and that the seller stopped the instance. Finally the sellers
// withdraw the offers.
//
// It returns the report with every check, and ErrScenarioFailed (wrapped,
// naming the failed checks) when a check failed. A scenario interrupted
// by ctx ends the leases it made before it returns. Every node must run.
func (n *Net) Scenario(ctx context.Context, cfg ScenarioConfig) (*Report, error) {
	if !supported {
		return nil, ErrUnsupported
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := n.Manifest()
	r := &run{n: n, cfg: cfg, bin: m.Binary, rep: &Report{Dir: m.Dir, Fault: cfg.Fault, Started: time.Now().UTC(),
		Offers: []ScenarioOffer{}, Steps: []StepStats{}, Leases: []LeaseReport{}, Checks: []Check{}, Events: []Event{}},
		clients: map[string]*nodeClient{},
		web:     &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}}
	defer r.close()
	for _, nd := range m.Nodes {
		switch nd.Role {
		case RoleSeller:
			r.sellers = append(r.sellers, nd.Name)
		case RoleBuyer:
			r.buyers = append(r.buyers, nd.Name)
		}
		if ok, why, _ := n.Running(nd.Name); !ok {
			return nil, fmt.Errorf("scenario: %s is not running (%s): start it with 'spotmesh testnet start --dir %s %s'", nd.Name, why, m.Dir, nd.Name)
		}
	}
	r.rep.Sellers, r.rep.Buyers = len(r.sellers), len(r.buyers)
	if len(r.sellers) == 0 || len(r.buyers) == 0 {
		return nil, fmt.Errorf("scenario: the testnet at %s has %d sellers and %d buyers: want one of each at least", m.Dir, len(r.sellers), len(r.buyers))
	}
	r.slots = (len(r.buyers) + len(r.sellers) - 1) / len(r.sellers)
	if r.slots > runtime.NumCPU() {
		return nil, fmt.Errorf("scenario: %d buyers and %d sellers: each seller would run %d instances of 1 vCPU on this machine of %d CPUs: run it with more sellers", len(r.buyers), len(r.sellers), r.slots, runtime.NumCPU())
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t0 := time.Now()

	offersOK := r.publishOffers(ctx)
	if offersOK {
		r.rep.Leases = make([]LeaseReport, len(r.buyers))
		var wg sync.WaitGroup
		for i, b := range r.buyers {
			r.rep.Leases[i].Buyer = b
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.buyer(ctx, i, &r.rep.Leases[i])
			}()
		}
		wg.Wait()
	}
	r.withdrawOffers(ctx)
	r.summarize()
	r.rep.Took = ms(time.Since(t0))
	r.rep.OK = len(r.rep.Failed()) == 0
	if err := ctx.Err(); err != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return r.rep, fmt.Errorf("scenario interrupted: %w (its leases are ended)", context.Canceled)
	}
	err := r.rep.err()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w\n(the scenario's timeout of %s passed: a loaded machine may need a longer one)", err, protocol.FormatDuration(cfg.Timeout))
	}
	return r.rep, err
}

// run is one scenario's state.
type run struct {
	n       *Net
	cfg     ScenarioConfig
	bin     string
	sellers []string
	buyers  []string
	slots   int
	web     *http.Client

	// offerKey is the key of the scenario's offers.
	offerKey string

	// mu guards rep's Checks and Events, clients, and the calls of
	// cfg.Progress. The buyers' goroutines each write their own
	// rep.Leases element.
	mu      sync.Mutex
	rep     *Report
	clients map[string]*nodeClient
}

// nodeClient is a node's API client for the API address it was made for:
// a restarted node answers at another.
type nodeClient struct {
	addr string
	c    *api.Client
}

func (r *run) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.clients {
		c.c.CloseIdleConnections()
	}
	r.web.CloseIdleConnections()
}

// client is the API client of the named node, at its current address.
func (r *run) client(name string) (*api.Client, error) {
	nd, err := r.n.Node(name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[name]; ok && c.addr == nd.APIAddr {
		return c.c, nil
	} else if ok {
		c.c.CloseIdleConnections()
	}
	tok, err := node.ReadToken(nd.Home)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := api.NewClient(nd.APIAddr, tok)
	r.clients[name] = &nodeClient{addr: nd.APIAddr, c: c}
	return c, nil
}

// say reports an event.
func (r *run) say(nodeName, step, format string, args ...any) {
	ev := Event{At: time.Now().UTC(), Node: nodeName, Step: step, Text: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Events = append(r.rep.Events, ev)
	if r.cfg.Progress != nil {
		r.cfg.Progress(ev)
	}
}

// check records a check and returns ok.
func (r *run) check(name, nodeName string, ok bool, format string, args ...any) bool {
	c := Check{Name: name, Node: nodeName, OK: ok, Detail: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	r.rep.Checks = append(r.rep.Checks, c)
	r.mu.Unlock()
	if !ok {
		r.say(nodeName, "check", "FAILED: %s: %s", name, c.Detail)
	}
	return ok
}

// scenarioSpec is the offer seller i (from 1) publishes for the scenario:
// one vCPU, prices spread over the sellers, a receipt every
// cfg.ReceiptInterval.
func (r *run) scenarioSpec(i int, key string) api.OfferSpec {
	t := catalog[(i-1)%len(catalog)]
	s := len(r.sellers)
	return api.OfferSpec{
		Key:    key,
		Region: t.region,
		Hardware: api.Hardware{Profile: ScenarioProfile, VCPU: 1, Memory: 1 << 30, Disk: 1 << 30,
			Arch: runtime.GOARCH},
		Slots:            uint32(r.slots),
		Price:            protocol.Price{Micro: int64(12_000 + 500*((i*7)%s)), Currency: "USD"},
		MinLease:         api.Duration(time.Second),
		MaxLease:         api.Duration(time.Hour),
		Formats:          []string{"bundle"},
		MaxApplianceSize: 1 << 30,
		ReceiptInterval:  api.Duration(r.cfg.ReceiptInterval),
		PaymentGrace:     api.Duration(10 * r.cfg.ReceiptInterval),
		// It stops by itself should the scenario never withdraw it.
		Until: time.Now().Add(r.cfg.Timeout + 10*time.Minute),
	}
}

// publishOffers has every seller publish its scenario offer and waits
// until every buyer's book holds them all; propagation is measured from
// each copy's signing to its arrival at each buyer (the book's received
// time), both on this machine's clock.
func (r *run) publishOffers(ctx context.Context) bool {
	r.offerKey = fmt.Sprintf("scenario-%d", time.Now().UnixMilli())
	offers := make([]ScenarioOffer, len(r.sellers))
	issued := make([]time.Time, len(r.sellers))
	errs := make([]error, len(r.sellers))
	var wg sync.WaitGroup
	for i, s := range r.sellers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.client(s)
			if err != nil {
				errs[i] = err
				return
			}
			spec := r.scenarioSpec(i+1, r.offerKey)
			st, err := c.AddOffer(ctx, spec)
			if err == nil && st.Current == nil {
				err = errors.New("no signed copy published")
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: add offer %s: %w", s, spec.Key, err)
				return
			}
			offers[i] = ScenarioOffer{Seller: s, Key: st.Key, OfferID: st.Current.OfferID, CID: st.CID, Price: spec.Price.String()}
			issued[i] = st.Current.IssuedAt
			r.say(s, "offers", "%s offers %s (1 vCPU, 1GiB) in %s at %s, %d slot(s), a usage receipt every %s",
				s, ScenarioProfile, spec.Region, spec.Price, spec.Slots, protocol.FormatDuration(r.cfg.ReceiptInterval))
		}()
	}
	wg.Wait()
	r.rep.Offers = offers
	if err := errors.Join(errs...); err != nil {
		return r.check(CheckOffers, "", false, "%v", err)
	}
	// Wait until every buyer holds every copy (or a later one).
	t0 := time.Now()
	latest := make([]time.Time, len(offers)) // the last buyer's arrival, per offer
	waiting := ""
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		for i := range latest {
			latest[i] = time.Time{}
		}
		for _, b := range r.buyers {
			c, err := r.client(b)
			if err != nil {
				return false, err
			}
			book, err := c.Book(ctx, api.BookQuery{Profile: ScenarioProfile, IncludePaused: true, Limit: api.MaxBookLimit})
			if err != nil {
				waiting = b + "'s book: " + err.Error()
				return false, nil
			}
			byID := map[string]api.Offer{}
			for _, o := range book.Offers {
				byID[o.OfferID] = o
			}
			for i, o := range offers {
				got, ok := byID[o.OfferID]
				if !ok || got.IssuedAt.Before(issued[i]) {
					waiting = fmt.Sprintf("%s's book lacks %s's offer", b, o.Seller)
					return false, nil
				}
				at := got.ReceivedAt
				if got.CID != o.CID || at.IsZero() {
					at = time.Now() // a later copy: this one arrived by now
				}
				if at.After(latest[i]) {
					latest[i] = at
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return r.check(CheckOffers, "", false, "after %s: %s (%v)", time.Since(t0).Round(time.Millisecond), waiting, err)
	}
	var slowest time.Duration
	for i := range offers {
		d := max(latest[i].Sub(issued[i]), time.Millisecond)
		offers[i].Propagation = ms(d)
		slowest = max(slowest, d)
	}
	r.say("", "offers", "every buyer's book holds the %d new offer(s): the slowest arrived %s after it was signed",
		len(offers), slowest.Round(time.Millisecond))
	return r.check(CheckOffers, "", true, "%d offers in %d books within %s", len(offers), len(r.buyers), slowest.Round(time.Millisecond))
}

// withdrawOffers has every seller withdraw its scenario offer.
func (r *run) withdrawOffers(ctx context.Context) {
	if r.offerKey == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for _, s := range r.sellers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.client(s)
			if err == nil {
				_, err = c.WithdrawOffer(ctx, r.offerKey)
			}
			var e *api.Error
			if err != nil && !(errors.As(err, &e) && e.Code == api.CodeNotFound) {
				mu.Lock()
				bad = append(bad, s+": "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		r.check(CheckOffersRemoved, "", false, "%s", strings.Join(bad, "; "))
		return
	}
	r.say("", "cleanup", "the sellers withdraw the scenario's offers (key %s)", r.offerKey)
}

// summarize fills the report's step stats.
func (r *run) summarize() {
	var prop []time.Duration
	for _, o := range r.rep.Offers {
		prop = append(prop, o.Propagation.Std())
	}
	var imp, rtt, xfer, running, settle []time.Duration
	var impRate, xferRate []uint64
	for _, l := range r.rep.Leases {
		imp = append(imp, l.Import.Std())
		impRate = append(impRate, rate(l.ApplianceSize, l.Import.Std()))
		rtt = append(rtt, l.RoundTrip.Std())
		xfer = append(xfer, l.Transfer.Std())
		xferRate = append(xferRate, l.TransferRate)
		running = append(running, l.ToRunning.Std())
		settle = append(settle, l.Settle.Std())
	}
	r.rep.Steps = []StepStats{
		stats(StepPropagation, prop, nil),
		stats(StepImport, imp, impRate),
		stats(StepRoundTrip, rtt, nil),
		stats(StepTransfer, xfer, xferRate),
		stats(StepRunning, running, nil),
		stats(StepSettle, settle, nil),
	}
}

// get asks the instance at endpoint for its page.
func (r *run) get(ctx context.Context, endpoint string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+endpoint+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := r.web.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("HTTP %s", resp.Status)
	}
	return string(b), nil
}
