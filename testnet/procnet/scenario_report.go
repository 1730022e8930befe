package procnet

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
)

// ErrScenarioFailed: a check of the scenario failed; the report says
// which and why.
var ErrScenarioFailed = errors.New("scenario failed")

// Steps of the scenario whose times the report sums up (StepStats.Step).
const (
	// StepPropagation: from a seller signing an offer to a buyer's node
	// holding it, for every offer and buyer.
	StepPropagation = "offer propagation"
	// StepImport: a buyer's node importing its appliance (chunking,
	// hashing, storing).
	StepImport = "appliance import"
	// StepRoundTrip: the buyer's best-lease request, from its start to the
	// lease countersigned by a seller (refusals and fallbacks included).
	StepRoundTrip = "lease round trip"
	// StepTransfer: from the lease's start (the buyer's proposal that
	// the seller granted) to the seller holding the whole appliance,
	// fetched from the buyer and verified block by block, and starting
	// the instance.
	StepTransfer = "appliance transfer"
	// StepRunning: from the lease's start to the instance answering HTTP.
	StepRunning = "lease to running instance"
	// StepSettle: from the buyer ending the lease to both nodes holding
	// the settlement signed by both.
	StepSettle = "settlement"
)

// Names of the scenario's checks (Check.Name).
const (
	CheckOffers        = "offers propagate"
	CheckImport        = "appliance imported"
	CheckLease         = "lease granted"
	CheckRuns          = "instance runs"
	CheckAnswers       = "instance answers"
	CheckKill          = "seller killed"
	CheckOutlives      = "instance outlives its seller"
	CheckRestart       = "seller restarts"
	CheckPartition     = "seller cut off"
	CheckHeal          = "network healed"
	CheckReceipts      = "receipts acknowledged"
	CheckEnded         = "lease ended on both sides"
	CheckSettled       = "settled on both sides"
	CheckChains        = "receipt chains agree"
	CheckStopped       = "instance stopped"
	CheckOffersRemoved = "offers withdrawn"
)

// Report is what a scenario did and measured, and its checks.
type Report struct {
	Dir     string `json:"dir"`
	Sellers int    `json:"sellers"`
	Buyers  int    `json:"buyers"`
	// Fault is the fault injected ("" for none).
	Fault   string       `json:"fault,omitempty"`
	Started time.Time    `json:"started"`
	Took    api.Duration `json:"took"`
	// OK: every check passed.
	OK bool `json:"ok"`
	// Offers are the offers the scenario published, one per seller.
	Offers []ScenarioOffer `json:"offers"`
	// Steps sum up each step's times over the offers or leases.
	Steps  []StepStats   `json:"steps"`
	Leases []LeaseReport `json:"leases"`
	Checks []Check       `json:"checks"`
	Events []Event       `json:"events"`
}

// ScenarioOffer is an offer the scenario published.
type ScenarioOffer struct {
	Seller  string `json:"seller"`
	Key     string `json:"key"`
	OfferID string `json:"offer_id"`
	CID     string `json:"cid"`
	Price   string `json:"price"`
	// Propagation is how long the last buyer took to hold it after the
	// seller signed it; 0 when some buyer never did.
	Propagation api.Duration `json:"propagation"`
}

// StepStats are one step's times: how many, and the least, median, 99th
// percentile (nearest rank: the largest below 100 samples) and largest.
type StepStats struct {
	Step string       `json:"step"`
	N    int          `json:"n"`
	Min  api.Duration `json:"min"`
	P50  api.Duration `json:"p50"`
	P99  api.Duration `json:"p99"`
	Max  api.Duration `json:"max"`
	// Rate is the median of the per-lease rates in bytes per second, for
	// the appliance's import and transfer.
	Rate uint64 `json:"rate,omitempty"`
}

// LeaseReport is one buyer's lease, step by step. Durations that were not
// measured (the step was not reached) are 0.
type LeaseReport struct {
	Buyer string `json:"buyer"`
	// Seller is the node that granted the lease.
	Seller   string `json:"seller,omitempty"`
	Lease    string `json:"lease,omitempty"`
	OfferID  string `json:"offer_id,omitempty"`
	Price    string `json:"price,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	// Refused is how many offers refused (or were skipped) before one
	// granted the lease.
	Refused int `json:"refused"`
	// Appliance is the CID of the buyer's appliance, Size its bytes.
	Appliance     string       `json:"appliance,omitempty"`
	ApplianceSize uint64       `json:"appliance_size"`
	Import        api.Duration `json:"import"`
	RoundTrip     api.Duration `json:"round_trip"`
	Transfer      api.Duration `json:"transfer"`
	// TransferRate is ApplianceSize over Transfer, bytes per second.
	TransferRate uint64       `json:"transfer_rate"`
	ToRunning    api.Duration `json:"to_running"`
	Settle       api.Duration `json:"settle"`
	// InstancePID is the instance's process on the seller's machine.
	InstancePID int `json:"instance_pid,omitempty"`
	// Receipts is the length of the receipt chain, Acked and Disputed the
	// buyer's answers.
	Receipts int `json:"receipts"`
	Acked    int `json:"acked"`
	Disputed int `json:"disputed"`
	// Total is what the buyer owes, in micro-units of Currency.
	Total    int64  `json:"total"`
	Currency string `json:"currency,omitempty"`
	// Settlement is the settlement's state (settled or disputed) and
	// SettlementCID its CID, the same on both sides.
	Settlement    string `json:"settlement,omitempty"`
	SettlementCID string `json:"settlement_cid,omitempty"`
	// SellerDown is how long the seller was down, with FaultKillSeller.
	SellerDown api.Duration `json:"seller_down,omitzero"`
}

// Check is one check of the scenario.
type Check struct {
	Name string `json:"name"`
	// Node is the buyer (or seller) it is about; empty for the market.
	Node   string `json:"node,omitempty"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Failed returns the checks that failed.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Step returns the stats of the named step.
func (r *Report) Step(name string) (StepStats, bool) {
	for _, s := range r.Steps {
		if s.Step == name {
			return s, true
		}
	}
	return StepStats{}, false
}

// err is the report's verdict: nil, or ErrScenarioFailed naming the checks
// that failed.
func (r *Report) err() error {
	bad := r.Failed()
	if len(bad) == 0 {
		return nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d of %d checks failed:", len(bad), len(r.Checks))
	for i, c := range bad {
		if i == 8 {
			fmt.Fprintf(&sb, "\n  … and %d more", len(bad)-i)
			break
		}
		sb.WriteString("\n  ")
		if c.Node != "" {
			sb.WriteString(c.Node + ": ")
		}
		sb.WriteString(c.Name)
		if c.Detail != "" {
			sb.WriteString(": " + c.Detail)
		}
	}
	return fmt.Errorf("%w: %s", ErrScenarioFailed, sb.String())
}

// stats sums up samples (zeros are steps not measured, left out).
func stats(step string, samples []time.Duration, rates []uint64) StepStats {
	var d []time.Duration
	for _, s := range samples {
		if s > 0 {
			d = append(d, s)
		}
	}
	st := StepStats{Step: step, N: len(d)}
	if len(d) == 0 {
		return st
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	rank := func(q float64) time.Duration { return d[max(int(math.Ceil(q*float64(len(d))))-1, 0)] }
	st.Min, st.P50, st.P99, st.Max = ms(d[0]), ms(rank(0.5)), ms(rank(0.99)), ms(d[len(d)-1])
	var r []uint64
	for _, x := range rates {
		if x > 0 {
			r = append(r, x)
		}
	}
	if len(r) > 0 {
		sort.Slice(r, func(i, j int) bool { return r[i] < r[j] })
		st.Rate = r[max(int(math.Ceil(0.5*float64(len(r))))-1, 0)]
	}
	return st
}

// ms rounds a duration to the millisecond, as the report shows it.
func ms(d time.Duration) api.Duration { return api.Duration(d.Round(time.Millisecond)) }

// rate is bytes over d, per second; 0 when d is not positive.
func rate(bytes uint64, d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(float64(bytes) / d.Seconds())
}
