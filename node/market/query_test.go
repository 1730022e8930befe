package market

import (
	"cmp"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/protocol"
)

// queryBook is a small book for the query table: three sellers A < B < C
// (by peer ID, the tie-break) and offers a1..c4. c4 has expired by the
// time the queries run, without having been evicted.
func queryBook(t *testing.T) (*Book, [3]seller) {
	t.Helper()
	var ss [3]seller
	for i := range ss {
		ss[i] = newSeller(t)
	}
	slices.SortFunc(ss[:], func(a, b seller) int { return strings.Compare(string(a.id), string(b.id)) })
	A, B, C := ss[0], ss[1], ss[2]

	clk := newMock()
	now := clk.Now()
	b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	const GiB = 1 << 30
	type spec struct {
		s       seller
		key     string
		region  string
		profile string
		vcpu    uint32
		mem     uint64
		disk    uint64
		gpus    uint32
		model   string
		arch    string
		micro   int64
		cur     string
		slots   uint32
		paused  bool
		ttl     time.Duration
		age     time.Duration
	}
	for _, sp := range []spec{
		{A, "a1", "eu-de", "c4m8", 4, 8, 40, 0, "", "amd64", 40000, "USD", 10, false, time.Hour, 0},
		{A, "a2", "eu-fr", "c8m16", 8, 16, 80, 0, "", "amd64", 80000, "USD", 0, false, 2 * time.Hour, time.Minute},
		{A, "a3", "europe", "c4m8", 4, 8, 40, 0, "", "amd64", 30000, "USD", 5, false, time.Hour, 2 * time.Minute},
		{B, "b1", "eu", "c2m4", 2, 4, 20, 0, "", "arm64", 20000, "EUR", 3, false, 3 * time.Hour, 3 * time.Minute},
		{B, "b2", "eu-de-fra", "g1a100", 12, 85, 200, 1, "A100", "amd64", 2900000, "USD", 1, false, time.Hour, 4 * time.Minute},
		{B, "b3", "us-east", "c4m8", 4, 8, 40, 0, "", "amd64", 35000, "USD", 2, true, time.Hour, 5 * time.Minute},
		{C, "c1", "us-east-va", "c16m32", 16, 32, 100, 0, "", "amd64", 40000, "USD", 7, false, 30 * time.Minute, 6 * time.Minute},
		{C, "c2", "ap-sg", "g8h100", 96, 1024, 2000, 8, "H100", "amd64", 30000000, "USD", 1, false, time.Hour, 7 * time.Minute},
		{C, "c3", "eu-de", "c4m8", 4, 8, 40, 0, "", "amd64", 38000, "EUR", 4, false, time.Hour, 8 * time.Minute},
		{C, "c4", "eu-de", "c4m8", 4, 8, 40, 0, "", "amd64", 40000, "USD", 9, false, 5*time.Minute + 9*time.Minute, 9 * time.Minute},
	} {
		mustAdd(t, b, makeOffer(t, sp.s, sp.key, now, func(o *protocol.Offer) {
			o.Region = sp.region
			o.Hardware = protocol.Hardware{Profile: sp.profile, VCPU: sp.vcpu, Memory: sp.mem * GiB, Disk: sp.disk * GiB,
				GPUs: sp.gpus, GPUModel: sp.model, Arch: sp.arch}
			o.Price = protocol.Price{Micro: sp.micro, Currency: sp.cur}
			o.Slots = sp.slots
			o.Paused = sp.paused
			o.IssuedAt = protocol.TimeOf(now.Add(-sp.age))
			o.ExpiresAt = protocol.TimeOf(now.Add(-sp.age + sp.ttl))
		}))
	}
	clk.Add(10 * time.Minute) // c4 expires; the book is not started, so nothing evicts it
	return b, ss
}

func TestQuery(t *testing.T) {
	b, ss := queryBook(t)
	const GiB = 1 << 30
	usd := func(m int64) protocol.Price { return protocol.Price{Micro: m, Currency: "USD"} }
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"all by price, ties by seller", Query{}, "b1 a3 c3 a1 c1 a2 b2 c2"},
		{"include paused", Query{IncludePaused: true}, "b1 a3 b3 c3 a1 c1 a2 b2 c2"},
		{"region eu: itself and below, not europe", Query{RegionPrefix: "eu"}, "b1 c3 a1 a2 b2"},
		{"region eu-de", Query{RegionPrefix: "eu-de"}, "c3 a1 b2"},
		{"region eu-de-fra", Query{RegionPrefix: "eu-de-fra"}, "b2"},
		{"region eu-d is no word", Query{RegionPrefix: "eu-d"}, ""},
		{"region europe", Query{RegionPrefix: "europe"}, "a3"},
		{"region us, paused excluded", Query{RegionPrefix: "us"}, "c1"},
		{"region upper case", Query{RegionPrefix: "EU-DE"}, "c3 a1 b2"},
		{"region unknown", Query{RegionPrefix: "mars"}, ""},
		{"currency USD", Query{Currency: "USD"}, "a3 a1 c1 a2 b2 c2"},
		{"currency lower case", Query{Currency: "usd"}, "a3 a1 c1 a2 b2 c2"},
		{"currency EUR", Query{Currency: "EUR"}, "b1 c3"},
		{"currency unknown", Query{Currency: "JPY"}, ""},
		{"max price USD, inclusive", Query{MaxPrice: usd(40000)}, "a3 a1 c1"},
		{"max price EUR", Query{MaxPrice: protocol.Price{Micro: 40000, Currency: "EUR"}}, "b1 c3"},
		{"max price without currency does not filter", Query{MaxPrice: protocol.Price{Micro: 1}}, "b1 a3 c3 a1 c1 a2 b2 c2"},
		{"max price and currency disagree", Query{MaxPrice: usd(1e9), Currency: "EUR"}, ""},
		{"max price and same currency", Query{MaxPrice: usd(35000), Currency: "USD"}, "a3"},
		{"max price zero: free only", Query{MaxPrice: usd(0)}, ""},
		{"vcpu min", Query{VCPU: Range{Min: 4}}, "a3 c3 a1 c1 a2 b2 c2"},
		{"vcpu range", Query{VCPU: Range{Min: 4, Max: 8}}, "a3 c3 a1 a2"},
		{"vcpu max only", Query{VCPU: Range{Max: 2}}, "b1"},
		{"memory min", Query{Memory: Range{Min: 16 * GiB}}, "c1 a2 b2 c2"},
		{"disk max", Query{Disk: Range{Max: 40 * GiB}}, "b1 a3 c3 a1"},
		{"gpus min 1", Query{GPUs: Range{Min: 1}}, "b2 c2"},
		{"gpus min 2", Query{GPUs: Range{Min: 2}}, "c2"},
		{"gpu model any case", Query{GPUModel: "a100"}, "b2"},
		{"gpu model H100", Query{GPUModel: "H100"}, "c2"},
		{"gpu model unknown", Query{GPUModel: "V100"}, ""},
		{"gpu model and region", Query{GPUModel: "A100", RegionPrefix: "eu"}, "b2"},
		{"gpu model, other region", Query{GPUModel: "A100", RegionPrefix: "us"}, ""},
		{"profile, expired and paused excluded", Query{Profile: "c4m8"}, "a3 c3 a1"},
		{"profile unknown", Query{Profile: "x9"}, ""},
		{"arch", Query{Arch: "arm64"}, "b1"},
		{"seller", Query{Seller: ss[1].id}, "b1 b2"},
		{"seller with paused", Query{Seller: ss[1].id, IncludePaused: true}, "b1 b3 b2"},
		{"seller and region", Query{Seller: ss[0].id, RegionPrefix: "eu"}, "a1 a2"},
		{"seller unknown", Query{Seller: peer.ID("nobody")}, ""},
		{"min slots 1 drops sold out", Query{MinSlots: 1}, "b1 a3 c3 a1 c1 b2 c2"},
		{"min slots 5", Query{MinSlots: 5}, "a3 a1 c1"},
		{"sort vcpu", Query{Sort: SortVCPU}, "c2 c1 b2 a2 a1 a3 c3 b1"},
		{"sort memory", Query{Sort: SortMemory}, "c2 b2 c1 a2 a1 a3 c3 b1"},
		{"sort expires", Query{Sort: SortExpires}, "b1 a2 a1 a3 b2 c2 c3 c1"},
		{"sort newest", Query{Sort: SortNewest}, "a1 a2 a3 b1 b2 c1 c2 c3"},
		{"sort price explicit", Query{Sort: SortPrice}, "b1 a3 c3 a1 c1 a2 b2 c2"},
		{"sort unknown is price", Query{Sort: "cheapest"}, "b1 a3 c3 a1 c1 a2 b2 c2"},
		{"limit", Query{Limit: 3}, "b1 a3 c3"},
		{"limit cuts a tie", Query{Limit: 4}, "b1 a3 c3 a1"},
		{"limit with sort", Query{Limit: 3, Sort: SortVCPU}, "c2 c1 b2"},
		{"limit above size", Query{Limit: 1000}, "b1 a3 c3 a1 c1 a2 b2 c2"},
		{"region, vcpu, price cap", Query{RegionPrefix: "eu", VCPU: Range{Min: 4}, MaxPrice: usd(100000)}, "a1 a2"},
		{"profile, region, sort newest", Query{Profile: "c4m8", RegionPrefix: "eu", Sort: SortNewest}, "a1 c3"},
		{"gpus and sort vcpu", Query{GPUs: Range{Min: 1}, Sort: SortVCPU, Limit: 1}, "c2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keys(b.Query(tt.q)); got != tt.want {
				t.Errorf("Query(%+v)\n got %q\nwant %q", tt.q, got, tt.want)
			}
		})
	}
}

func keys(es []Entry) string {
	ks := make([]string, len(es))
	for i, e := range es {
		ks[i] = e.Offer.Key
	}
	return strings.Join(ks, " ")
}

func TestQueryDefaultLimit(t *testing.T) {
	clk := newMock()
	b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
	sy := makeSynthetic(t, DefaultLimit+50, 7, clk.Now(), false)
	for i, o := range sy.offers {
		o.Paused = false
		if err := b.Add(o, fakeCID(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(b.Query(Query{})); n != DefaultLimit {
		t.Errorf("Query without limit returned %d, want DefaultLimit %d", n, DefaultLimit)
	}
	if n := len(b.Query(Query{Limit: -1})); n != DefaultLimit {
		t.Errorf("Query with negative limit returned %d, want DefaultLimit %d", n, DefaultLimit)
	}
}

// TestQueryMatchesReference runs random queries over random books and
// compares each answer with a brute-force filter and sort, so that every
// path through the planner (seller, profile, GPU, region trees, small and
// large candidate sets, early stops) is checked.
func TestQueryMatchesReference(t *testing.T) {
	for _, nSellers := range []int{4, 40} {
		clk := newMock()
		n := 3000
		if testing.Short() {
			n = 800
		}
		sy := makeSynthetic(t, n, nSellers, clk.Now(), false)
		b := NewBook(DefaultConfig(), nil, clk, protocol.DefaultLimits(), nil)
		for i, o := range sy.offers {
			if err := b.Add(o, fakeCID(i), nil); err != nil {
				t.Fatal(err)
			}
		}
		// Withdraw a few, so the seller index holds withdrawals.
		for i := 0; i < n; i += 97 {
			w := *sy.offers[i]
			w.Withdrawn = true
			w.IssuedAt++
			if err := b.Add(&w, fakeCID(n+i), nil); err != nil {
				t.Fatal(err)
			}
			sy.offers[i] = &w
		}
		// Republish some at the same place and some elsewhere.
		for i := 1; i < n; i += 13 {
			c := *sy.offers[i]
			c.IssuedAt += 2
			c.Slots++
			if i%2 == 0 {
				c.Price.Micro++
			}
			if err := b.Add(&c, fakeCID(2*n+i), nil); err != nil && !errors.Is(err, protocol.ErrStale) {
				t.Fatal(err)
			} else if err == nil {
				sy.offers[i] = &c
			}
		}
		checkIndexes(t, b)
		clk.Add(2 * time.Hour) // some expire, not evicted
		now := clk.Now()

		rng := mrand.New(mrand.NewPCG(uint64(nSellers), 9))
		pick := func(pct int) bool { return rng.IntN(100) < pct }
		sorts := []SortKey{SortPrice, SortVCPU, SortMemory, SortExpires, SortNewest, ""}
		for range 400 {
			var q Query
			if pick(40) {
				q.RegionPrefix = []string{"eu", "eu-de", "us", "us-east", "ap", "europe", "af-za", "eu-d"}[rng.IntN(8)]
			}
			if pick(30) {
				q.VCPU = Range{Min: uint64(rng.IntN(20))}
				if pick(30) {
					q.VCPU.Max = q.VCPU.Min + uint64(rng.IntN(16))
				}
			}
			if pick(15) {
				q.Memory = Range{Min: uint64(rng.IntN(64)) << 30}
			}
			if pick(10) {
				q.Disk = Range{Max: uint64(rng.IntN(500)) << 30}
			}
			if pick(15) {
				q.GPUs = Range{Min: uint64(rng.IntN(3))}
			}
			if pick(10) {
				q.GPUModel = []string{"l4", "A100", "H100", "none"}[rng.IntN(4)]
			}
			if pick(15) {
				q.Profile = synthProfiles[rng.IntN(len(synthProfiles))].name
			}
			if pick(10) {
				q.Arch = []string{"amd64", "arm64", "riscv64"}[rng.IntN(3)]
			}
			if pick(20) {
				q.Seller = sy.offers[rng.IntN(n)].Seller
			}
			if pick(30) {
				q.MaxPrice = protocol.Price{Micro: int64(rng.IntN(300_000)), Currency: []string{"USD", "EUR", "GBP"}[rng.IntN(3)]}
			}
			if pick(20) {
				q.Currency = []string{"USD", "EUR", "GBP"}[rng.IntN(3)]
			}
			if pick(20) {
				q.MinSlots = uint32(rng.IntN(15))
			}
			q.IncludePaused = pick(30)
			q.Sort = sorts[rng.IntN(len(sorts))]
			q.Limit = []int{0, 1, 5, 50, 5000}[rng.IntN(5)]

			got := b.Query(q)
			want := refQuery(sy.offers, q, now)
			if g, w := ids(got), want; !slices.Equal(g, w) {
				t.Fatalf("sellers %d: Query(%+v):\n got %d %v\nwant %d %v", nSellers, q, len(g), head(g), len(w), head(w))
			}
		}
	}
}

func ids(es []Entry) []protocol.OfferID {
	out := make([]protocol.OfferID, len(es))
	for i, e := range es {
		out[i] = e.Offer.ID()
	}
	return out
}

func head(s []protocol.OfferID) []protocol.OfferID { return s[:min(len(s), 6)] }

// refQuery is Query by brute force, written apart from the book's code.
func refQuery(offers []*protocol.Offer, q Query, now time.Time) []protocol.OfferID {
	in := func(r Range, v uint64) bool { return v >= r.Min && (r.Max == 0 || v <= r.Max) }
	cur := strings.ToUpper(q.Currency)
	if q.MaxPrice.Currency != "" {
		if cur != "" && cur != q.MaxPrice.Currency {
			return []protocol.OfferID{}
		}
		cur = q.MaxPrice.Currency
	}
	var m []*protocol.Offer
	for _, o := range offers {
		h := o.Hardware
		switch {
		case o.Withdrawn, o.Expired(now), o.Paused && !q.IncludePaused, o.Slots < q.MinSlots,
			q.RegionPrefix != "" && o.Region != q.RegionPrefix && !strings.HasPrefix(o.Region, q.RegionPrefix+"-"),
			!in(q.VCPU, uint64(h.VCPU)), !in(q.Memory, h.Memory), !in(q.Disk, h.Disk), !in(q.GPUs, uint64(h.GPUs)),
			q.GPUModel != "" && !strings.EqualFold(q.GPUModel, h.GPUModel),
			q.Profile != "" && q.Profile != h.Profile, q.Arch != "" && q.Arch != h.Arch,
			q.Seller != "" && q.Seller != o.Seller,
			cur != "" && o.Price.Currency != cur,
			q.MaxPrice.Currency != "" && o.Price.Micro > q.MaxPrice.Micro:
			continue
		}
		m = append(m, o)
	}
	slices.SortFunc(m, func(a, b *protocol.Offer) int {
		var c int
		switch q.Sort {
		case SortVCPU:
			c = cmp.Compare(b.Hardware.VCPU, a.Hardware.VCPU)
		case SortMemory:
			c = cmp.Compare(b.Hardware.Memory, a.Hardware.Memory)
		case SortExpires:
			c = cmp.Compare(b.ExpiresAt, a.ExpiresAt)
		case SortNewest:
			c = cmp.Compare(b.IssuedAt, a.IssuedAt)
		default:
			c = cmp.Compare(a.Price.Micro, b.Price.Micro)
		}
		if c != 0 {
			return c
		}
		if c = strings.Compare(string(a.Seller), string(b.Seller)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	out := []protocol.OfferID{}
	for _, o := range m[:min(limit, len(m))] {
		out = append(out, o.ID())
	}
	return out
}

func TestQueryValidate(t *testing.T) {
	usd := protocol.Price{Micro: 40000, Currency: "USD"}
	tests := []struct {
		name string
		q    Query
		want string // substring of the error; "" for none
	}{
		{"zero", Query{}, ""},
		{"full", Query{RegionPrefix: "eu-de", VCPU: Range{4, 8}, MaxPrice: usd, Currency: "USD", Sort: SortVCPU, Limit: 10}, ""},
		{"bad region", Query{RegionPrefix: "EU_DE"}, "region"},
		{"region ends in dash", Query{RegionPrefix: "eu-"}, "region"},
		{"range upside down", Query{Memory: Range{Min: 8, Max: 4}}, "memory range"},
		{"bad currency", Query{Currency: "usd"}, "currency"},
		{"currencies disagree", Query{Currency: "EUR", MaxPrice: usd}, "one currency"},
		{"price without currency", Query{MaxPrice: protocol.Price{Micro: 5}}, "no currency"},
		{"negative price", Query{MaxPrice: protocol.Price{Micro: -1, Currency: "USD"}}, "negative"},
		{"bad sort", Query{Sort: "cheap"}, "sort"},
		{"negative limit", Query{Limit: -1}, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want an error about %q", err, tt.want)
			}
		})
	}
}

func TestParseSortKey(t *testing.T) {
	for in, want := range map[string]SortKey{"": SortPrice, "price": SortPrice, " VCPU ": SortVCPU, "mem": SortMemory,
		"memory": SortMemory, "expires": SortExpires, "newest": SortNewest} {
		if got, err := ParseSortKey(in); err != nil || got != want {
			t.Errorf("ParseSortKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseSortKey("cheapest"); err == nil {
		t.Error("ParseSortKey(cheapest) succeeded")
	}
}
