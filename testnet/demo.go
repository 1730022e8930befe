package testnet

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spotmesh/spotmesh/node/market"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/protocol"
)

// DemoConfig sizes the demo market.
type DemoConfig struct {
	// Dir holds the nodes' homes; they stay after the demo so the CLI can
	// be pointed at them while it runs.
	Dir     string
	Sellers int
	Buyers  int
	// Once tears the market down at the end instead of waiting for ctx.
	Once bool
}

// DefaultDemoConfig is a small market: three sellers and one buyer.
func DefaultDemoConfig(dir string) DemoConfig {
	return DemoConfig{Dir: dir, Sellers: 3, Buyers: 1}
}

type demoOffer struct {
	region, profile string
	vcpu            uint32
	mem, disk       uint64
	gpuModel        string
	gpus            uint32
	price           string
}

var demoOffers = []demoOffer{
	{"eu-de", "c4m8", 4, 8 << 30, 40 << 30, "", 0, "0.040USD/h"},
	{"eu-fr", "c8m16", 8, 16 << 30, 80 << 30, "", 0, "0.075USD/h"},
	{"us-east", "c2m4", 2, 4 << 30, 20 << 30, "", 0, "0.018USD/h"},
	{"eu-de", "g1-a10", 8, 32 << 30, 200 << 30, "A10", 1, "0.60USD/h"},
	{"ap-sg", "c4m8", 4, 8 << 30, 40 << 30, "", 0, "0.045USD/h"},
	{"us-west", "c16m64", 16, 64 << 30, 160 << 30, "", 0, "0.19USD/h"},
}

// Demo boots a small market on loopback, has each seller publish offers,
// waits until every buyer's book holds them all, and prints what happens.
// Unless cfg.Once, the nodes stay up until ctx ends.
func Demo(ctx context.Context, cfg DemoConfig, w io.Writer) error {
	if cfg.Sellers < 1 || cfg.Buyers < 1 {
		return fmt.Errorf("demo: want at least one seller and one buyer")
	}
	say := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	say("spotmesh demo: a market of %d sellers and %d buyer(s), every node a real libp2p host on 127.0.0.1.", cfg.Sellers, cfg.Buyers)
	t0 := time.Now()
	net, err := Start(ctx, Config{N: cfg.Sellers + cfg.Buyers, Dir: cfg.Dir, API: true, Degree: 2})
	if err != nil {
		return err
	}
	defer net.Close()
	say("\n1. Booted %d nodes in %v. The first is everyone's bootstrap peer.", len(net.Nodes), time.Since(t0).Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   ROLE\tHOME\tPEER ID\tAPI")
	for i, n := range net.Nodes {
		role := fmt.Sprintf("seller-%d", i+1)
		if i >= cfg.Sellers {
			role = fmt.Sprintf("buyer-%d", i-cfg.Sellers+1)
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\n", role, filepath.Join(cfg.Dir, fmt.Sprintf("node-%d", i)), n.ID(), n.APIAddr())
	}
	tw.Flush()

	say("\n2. Each seller signs offers with its node's key and gossips them.")
	var ids []protocol.OfferID
	for i, d := range demoOffers {
		seller := net.Nodes[i%cfg.Sellers]
		price, err := protocol.ParsePrice(d.price)
		if err != nil {
			return err
		}
		st, err := seller.AddOffer(ctx, offers.Spec{
			Region:   d.region,
			Hardware: protocol.Hardware{Profile: d.profile, VCPU: d.vcpu, Memory: d.mem, Disk: d.disk, GPUModel: d.gpuModel, GPUs: d.gpus, Arch: "amd64"},
			Slots:    uint32(4 + i),
			Price:    price,
			MaxLease: 72 * time.Hour,
		})
		if err != nil {
			return fmt.Errorf("demo: seller-%d offer: %w", i%cfg.Sellers+1, err)
		}
		ids = append(ids, st.Current.ID())
		say("   seller-%d offers %s in %s at %s (CID %s)", i%cfg.Sellers+1, d.profile, d.region, price, st.CID)
	}
	t1 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	buyers := net.Nodes[cfg.Sellers:]
	if err := WaitFor(wctx, func() bool {
		for _, b := range buyers {
			for _, id := range ids {
				if _, ok := b.MarketBook().Get(id); !ok {
					return false
				}
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("demo: offers did not reach every buyer's book within a minute: %w", err)
	}
	say("\n3. Every buyer's book holds all %d offers, %v after the first was signed.", len(ids), time.Since(t1).Round(time.Millisecond))

	buyer := buyers[0]
	say("\n4. buyer-1's book, cheapest first (spotmesh book --sort price):")
	printBook(w, buyer.Book(market.Query{Sort: market.SortPrice}))
	maxPrice, _ := protocol.ParsePrice("0.05USD/h")
	say("\n5. A query: region eu, at least 4 vCPUs, at most 0.05USD/h (spotmesh book --region eu --vcpu '>=4' --max-price 0.05USD/h):")
	printBook(w, buyer.Book(market.Query{RegionPrefix: "eu", VCPU: market.Range{Min: 4}, MaxPrice: maxPrice, Sort: market.SortPrice}))

	home := filepath.Join(cfg.Dir, fmt.Sprintf("node-%d", cfg.Sellers))
	if cfg.Once {
		say("\nDone: the demo market is shut down.")
		return nil
	}
	say("\nThe market stays up until Ctrl-C. In another terminal, after 'go install ./cmd/spotmesh':")
	say("   spotmesh --home %s book", home)
	say("   spotmesh --home %s offer ls", filepath.Join(cfg.Dir, "node-0"))
	say("   curl -H \"Authorization: Bearer $(cat %s)\" http://%s/v1/book", filepath.Join(home, "api.token"), buyer.APIAddr())
	<-ctx.Done()
	say("\nStopping the demo market.")
	return nil
}

func printBook(w io.Writer, entries []market.Entry) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   SELLER\tKEY\tREGION\tPROFILE\tVCPU\tMEM\tDISK\tGPU\tSLOTS\tPRICE")
	for _, e := range entries {
		o := e.Offer
		gpu := "-"
		if o.Hardware.GPUs > 0 {
			gpu = fmt.Sprintf("%dx%s", o.Hardware.GPUs, o.Hardware.GPUModel)
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", shortID(o.Seller.String()), o.Key, o.Region,
			o.Hardware.Profile, o.Hardware.VCPU, protocol.FormatSize(o.Hardware.Memory), protocol.FormatSize(o.Hardware.Disk),
			gpu, o.Slots, o.Price)
	}
	tw.Flush()
}

// shortID keeps the tail of a peer ID, as the CLI's tables do.
func shortID(id string) string {
	if len(id) <= 12 {
		return id
	}
	return "…" + id[len(id)-10:]
}
