package procnet

import (
	"fmt"
	"runtime"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// template is one kind of offer; sellers take them in turn.
type template struct {
	region, profile string
	vcpu            uint32
	mem, disk       uint64
	gpuModel        string
	gpus            uint32
	micro           int64 // USD micro-units per hour, before the seller's own markup
}

var catalog = []template{
	{"eu-de", "c4m8", 4, 8 << 30, 40 << 30, "", 0, 40_000},
	{"us-east", "c2m4", 2, 4 << 30, 20 << 30, "", 0, 18_000},
	{"ap-sg", "c4m8", 4, 8 << 30, 40 << 30, "", 0, 45_000},
	{"eu-fr", "c8m16", 8, 16 << 30, 80 << 30, "", 0, 75_000},
	{"us-west", "c16m64", 16, 64 << 30, 160 << 30, "", 0, 190_000},
	{"eu-de", "g1-a10", 8, 32 << 30, 200 << 30, "A10", 1, 600_000},
	{"ap-jp", "c2m4", 2, 4 << 30, 20 << 30, "", 0, 21_000},
	{"us-east", "c8m32", 8, 32 << 30, 100 << 30, "", 0, 110_000},
	{"sa-br", "c4m8", 4, 8 << 30, 40 << 30, "", 0, 38_000},
	{"eu-nl", "c2m8", 2, 8 << 30, 40 << 30, "", 0, 26_000},
}

// offerSpecs are the offers seller i (1-based) publishes: varied regions,
// profiles and prices (the catalog's, -10% to +10% by seller), short
// receipt intervals (1s to 5s) and a grace of three intervals, so that a
// scenario of leases, receipts and missed acks runs in seconds.
func offerSpecs(i, n int) []api.OfferSpec {
	out := make([]api.OfferSpec, 0, n)
	for j := 0; j < n; j++ {
		t := catalog[((i-1)*n+j)%len(catalog)]
		markup := int64(90 + (i*7+j*3)%21) // percent
		ri := time.Duration(1+(i+j)%5) * time.Second
		out = append(out, api.OfferSpec{
			Key:    fmt.Sprintf("%s-%s-%d", t.profile, t.region, j+1),
			Region: t.region,
			Hardware: api.Hardware{Profile: t.profile, VCPU: t.vcpu, Memory: t.mem, Disk: t.disk,
				GPUModel: t.gpuModel, GPUs: t.gpus, Arch: runtime.GOARCH},
			Slots:           uint32(2 + (i+j)%4),
			Price:           protocol.Price{Micro: t.micro * markup / 100, Currency: "USD"},
			MinLease:        api.Duration(10 * time.Second),
			MaxLease:        api.Duration(24 * time.Hour),
			Renewable:       true,
			ReceiptInterval: api.Duration(ri),
			PaymentGrace:    api.Duration(3 * ri),
		})
	}
	return out
}
