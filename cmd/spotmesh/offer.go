package main

import (
	"context"
	"fmt"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// offerVerbs is the dispatch table of 'spotmesh offer'.
func offerVerbs() []verb {
	return []verb{
		{"add", "--profile P --vcpu N --mem SIZE --disk SIZE --slots N --price 0.04USD/h --region R --max 72h [flags]",
			"sign and publish an offer; prints its key and CID", cmdOfferAdd},
		{"ls", "", "list this node's offers (table or --json)", cmdOfferLs},
		{"rm", "KEY", "withdraw an offer: publish a signed withdrawal", cmdOfferRm},
		{"pause", "KEY", "pause an offer: no new leases, running ones go on", cmdOfferPause},
		{"resume", "KEY", "resume a paused offer", cmdOfferResume},
	}
}

// offerAdd holds the flags of 'offer add'.
type offerAdd struct {
	key, region, profile, gpuModel, arch, until *string
	vcpu, gpus, slots, perBuyer                 *uint32
	mem, disk, maxAppliance                     *uint64
	price                                       *protocol.Price
	min, max, receipt, grace, ttl               *time.Duration
	renewable                                   *bool
	formats                                     *[]string
}

func offerAddFlags() (*flags, *offerAdd) {
	f := newFlags("offer add")
	o := &offerAdd{
		key:          f.str("key", "", "the offer's `name` (default: the node picks one from the profile)"),
		region:       f.str("region", "", "`region`, lower-case words joined by dashes, broadest first: eu-de"),
		profile:      f.str("profile", "", "hardware profile `name`, like c4m8"),
		vcpu:         f.uint32("vcpu", 0, "`count` of vCPUs per instance"),
		mem:          f.size("mem", "memory per instance, a `size` like 8GiB"),
		disk:         f.size("disk", "disk per instance, a `size` like 40GiB"),
		gpuModel:     f.str("gpu-model", "", "GPU `model`, with --gpus"),
		gpus:         f.uint32("gpus", 0, "`count` of GPUs per instance, with --gpu-model"),
		arch:         f.str("arch", runtime.GOARCH, "CPU `architecture` as Go names it"),
		slots:        f.uint32("slots", 0, "how many leases (a `count`) the node can take now"),
		price:        f.price("price", "hourly `price`, like 0.04USD/h"),
		min:          f.duration("min", 0, "shortest lease, a `duration` (default: the node's, 1m)"),
		max:          f.duration("max", 0, "longest lease, a `duration` like 72h"),
		renewable:    f.boolean("renewable", false, "leases may be renewed"),
		formats:      f.csv("formats", "appliance `formats` accepted, comma-separated (default: the node's, bundle,qcow2,raw)"),
		maxAppliance: f.size("max-appliance", "largest appliance fetched, a `size` (default: the node's, 20GiB)"),
		receipt:      f.duration("receipt-interval", 0, "how often usage receipts go out, a `duration` (default: the node's, 1m)"),
		grace:        f.duration("grace", 0, "how long (a `duration`) payment acks may lag before the instance stops (default: the node's, 5m)"),
		perBuyer:     f.uint32("per-buyer", 0, "most leases (a `count`) one buyer may hold on this offer (default 0: no cap)"),
		ttl:          f.duration("ttl", 0, "life of each signed copy, a `duration`; republished at half of it (default: the node's offer_ttl, 10m)"),
		until:        f.str("until", "", "stop republishing at this `time` (RFC 3339) or after this duration (24h) (default: until withdrawn)"),
	}
	return f, o
}

// spec turns the flags into the API's offer spec, checking what the API
// would refuse, in the flags' words.
func (o *offerAdd) spec(f *flags, now time.Time) (api.OfferSpec, error) {
	if err := f.require("profile", "vcpu", "mem", "disk", "slots", "price", "region", "max"); err != nil {
		return api.OfferSpec{}, err
	}
	if *o.key != "" {
		if err := protocol.ValidateName("key", *o.key); err != nil {
			return api.OfferSpec{}, usagef("--key %q: want 1 to 64 characters of A-Z a-z 0-9 . _ -", *o.key)
		}
	}
	if err := protocol.ValidateRegion(*o.region); err != nil {
		return api.OfferSpec{}, usagef("--region %q: want lower-case words joined by dashes, broadest first, like eu-de", *o.region)
	}
	if err := protocol.ValidateName("profile", *o.profile); err != nil {
		return api.OfferSpec{}, usagef("--profile %q: want 1 to 64 characters of A-Z a-z 0-9 . _ -, like c4m8", *o.profile)
	}
	if *o.vcpu == 0 {
		return api.OfferSpec{}, usagef("--vcpu 0: want 1 or more")
	}
	if *o.mem == 0 {
		return api.OfferSpec{}, usagef("--mem 0: want a size like 8GiB")
	}
	if (*o.gpus == 0) != (*o.gpuModel == "") {
		return api.OfferSpec{}, usagef("--gpus %d --gpu-model %q: give both, like --gpus 1 --gpu-model A100, or neither", *o.gpus, *o.gpuModel)
	}
	if len(*o.gpuModel) > 64 {
		return api.OfferSpec{}, usagef("--gpu-model: longer than 64 characters")
	}
	if err := protocol.ValidateName("arch", *o.arch); err != nil || len(*o.arch) > 16 {
		return api.OfferSpec{}, usagef("--arch %q: want an architecture as Go names it, like amd64 or arm64", *o.arch)
	}
	if *o.max == 0 {
		return api.OfferSpec{}, usagef("--max 0s: want a duration like 72h")
	}
	if *o.min > *o.max {
		return api.OfferSpec{}, usagef("--min %s is longer than --max %s", protocol.FormatDuration(*o.min), protocol.FormatDuration(*o.max))
	}
	if len(*o.formats) > 16 {
		return api.OfferSpec{}, usagef("--formats: %d formats: want at most 16", len(*o.formats))
	}
	for _, fm := range *o.formats {
		if protocol.ValidateName("format", fm) != nil {
			return api.OfferSpec{}, usagef("--formats: %q: want names like bundle,qcow2,raw", fm)
		}
	}
	var until time.Time
	if *o.until != "" {
		if t, err := time.Parse(time.RFC3339, *o.until); err == nil {
			until = t.UTC()
		} else if d, err := time.ParseDuration(*o.until); err == nil && d > 0 {
			until = now.Add(d).UTC().Truncate(time.Second)
		} else {
			return api.OfferSpec{}, usagef("--until %q: want an RFC 3339 time like 2026-01-02T15:04:05Z or a duration from now like 24h", *o.until)
		}
		if !until.After(now) {
			return api.OfferSpec{}, usagef("--until %s is in the past: want a later time", until.Format(time.RFC3339))
		}
	}
	return api.OfferSpec{
		Key:    *o.key,
		Region: *o.region,
		Hardware: api.Hardware{Profile: *o.profile, VCPU: *o.vcpu, Memory: *o.mem, Disk: *o.disk,
			GPUModel: *o.gpuModel, GPUs: *o.gpus, Arch: *o.arch},
		Slots:            *o.slots,
		Price:            *o.price,
		MinLease:         api.Duration(*o.min),
		MaxLease:         api.Duration(*o.max),
		Renewable:        *o.renewable,
		Formats:          *o.formats,
		MaxApplianceSize: *o.maxAppliance,
		ReceiptInterval:  api.Duration(*o.receipt),
		PaymentGrace:     api.Duration(*o.grace),
		PerBuyerCap:      *o.perBuyer,
		TTL:              api.Duration(*o.ttl),
		Until:            until,
	}, nil
}

func cmdOfferAdd(ctx context.Context, c *cli, args []string) error {
	f, o := offerAddFlags()
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	spec, err := o.spec(f, c.now())
	if err != nil {
		return err
	}
	st, err := call(c, func(cl *api.Client) (api.OfferStatus, error) { return cl.AddOffer(ctx, spec) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(st)
	}
	fmt.Fprintf(c.stdout, "added offer %s (cid %s)\n", st.Key, st.CID)
	return nil
}

func cmdOfferLs(ctx context.Context, c *cli, args []string) error {
	f := newFlags("offer ls")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	list, err := call(c, func(cl *api.Client) ([]api.OfferStatus, error) { return cl.Offers(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.OffersResponse{Offers: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no offers: add one with 'spotmesh offer add'")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEY\tREGION\tPROFILE\tSLOTS\tPRICE\tEXPIRES\tWITHDRAWN")
	now := c.now()
	for _, st := range list {
		s := st.Spec
		expires := "-"
		if st.Current != nil {
			expires = until(now, st.Current.ExpiresAt)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", st.Key, s.Region, s.Hardware.Profile, s.Slots, s.Price, expires, yesNo(st.Withdrawn))
	}
	return w.Flush()
}

func cmdOfferRm(ctx context.Context, c *cli, args []string) error {
	f := newFlags("offer rm")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one offer key: 'spotmesh offer ls' lists them")
	}
	key := pos[0]
	if protocol.ValidateName("key", key) != nil {
		return usagef("%q: want an offer key as 'spotmesh offer ls' lists it", key)
	}
	st, err := call(c, func(cl *api.Client) (api.OfferStatus, error) {
		st, err := cl.WithdrawOffer(ctx, key)
		if api.IsCode(err, api.CodeNotFound) {
			return st, fmt.Errorf("no offer with key %q on this node: 'spotmesh offer ls' lists them", key)
		}
		return st, err
	})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(st)
	}
	fmt.Fprintf(c.stdout, "withdrew offer %s\n", st.Key)
	return nil
}

// until prints how long until t: "in 9m30s", or "expired".
func until(now, t time.Time) string {
	if !t.After(now) {
		return "expired"
	}
	return "in " + roundDuration(t.Sub(now))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
