package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/protocol"
)

// leasePoll is how often 'lease new --wait' asks where the lease stands.
const leasePoll = 250 * time.Millisecond

var leaseGroup = group{
	name: "lease", verbs: leaseVerbs,
	aliases: map[string]string{"list": "ls", "rm": "end"},
	flags:   map[string]func() *flags{"new": helpFlags(leaseNewFlags), "renew": helpFlags(leaseRenewFlags)},
	footer:  "Run 'spotmesh help lease new' for its flags; --best takes the filters of 'book'.\n",
}

var instancesGroup = group{
	name: "instances", verbs: instancesVerbs, aliases: map[string]string{"list": "ls"},
	footer: "The seller's side: the instances of the leases this node sold.\n",
}

var denyGroup = group{
	name: "deny", verbs: denyVerbs, aliases: map[string]string{"list": "ls", "allow": "rm"},
	flags:  map[string]func() *flags{"add": helpFlags(denyAddFlags)},
	footer: "A denied buyer's proposals are refused as buyer_refused.\n",
}

func leaseVerbs() []verb {
	return []verb{
		{"new", "--offer CID | --best [book filters] --appliance CID --for 2h [--slots N] [--ssh-key FILE] [--wait]",
			"propose a lease; prints its ID (and with --wait, the instance's endpoint once it runs)", cmdLeaseNew},
		{"ls", "[--role buyer|seller]", "list the leases bought and sold (table or --json)", cmdLeaseLs},
		{"show", "ID", "show one lease, as the seller reports it now", cmdLeaseShow},
		{"renew", "ID --for 1h", "extend a lease, where its offer allows it", cmdLeaseRenew},
		{"end", "ID", "end a lease in any state, a pending proposal included", cmdLeaseEnd},
	}
}

func instancesVerbs() []verb {
	return []verb{{"ls", "", "list the instances this node runs, with usage and the limits enforced (table or --json)", cmdInstancesLs}}
}

func denyVerbs() []verb {
	return []verb{
		{"add", "PEER [--note TEXT]", "refuse a buyer's proposals", cmdDenyAdd},
		{"ls", "", "list the buyers refused", cmdDenyLs},
		{"rm", "PEER", "take a buyer off the deny list", cmdDenyRm},
	}
}

// leaseNew holds the flags of 'lease new' beyond the book's.
type leaseNew struct {
	q                        *api.BookQuery
	offer, appliance, sshKey *string
	best, wait               *bool
	length                   *time.Duration
	slots                    *uint32
}

func leaseNewFlags() (*flags, *leaseNew) {
	f, q := bookFlags()
	f.verb = "lease new"
	l := &leaseNew{q: q}
	l.offer = f.str("offer", "", "the offer to lease: the `CID` 'book --json' lists, or its offer ID seller/key")
	l.best = f.boolean("best", false, "lease the first offer of the book (with the book's filters) that grants one")
	l.appliance = f.str("appliance", "", "the `CID` of the appliance to run; this node must hold it")
	l.length = f.duration("for", 0, "the lease's length, a `duration` like 2h or 90s")
	l.slots = f.uint32("slots", 0, "`count` of the offer's slots to lease (default 1)")
	l.sshKey = f.str("ssh-key", "", "`file` of the access key handed to the instance, like ~/.ssh/id_ed25519.pub")
	l.wait = f.boolean("wait", false, "wait until the instance runs and print its endpoint")
	return f, l
}

// request turns the flags into the API's request, checking what the API
// would refuse, in the flags' words.
func (l *leaseNew) request(f *flags, pos []string) (api.LeaseRequest, error) {
	if err := noArgs(pos); err != nil {
		return api.LeaseRequest{}, err
	}
	if (*l.offer == "") == !*l.best {
		return api.LeaseRequest{}, usagef("give --offer CID or --best (with the filters of 'book'), not both")
	}
	if err := f.require("appliance", "for"); err != nil {
		return api.LeaseRequest{}, err
	}
	if *l.length <= 0 {
		return api.LeaseRequest{}, usagef("--for %s: want a positive duration, like 2h", *l.length)
	}
	if _, err := cid.Decode(*l.appliance); err != nil {
		return api.LeaseRequest{}, usagef("--appliance %q: not a CID: 'spotmesh appliance ls' lists them", *l.appliance)
	}
	req := api.LeaseRequest{Appliance: *l.appliance, For: api.Duration(*l.length), Slots: *l.slots}
	if *l.offer != "" {
		if _, _, isID := strings.Cut(*l.offer, "/"); !isID {
			if _, err := cid.Decode(*l.offer); err != nil {
				return api.LeaseRequest{}, usagef("--offer %q: not a CID nor an offer ID seller/key: 'spotmesh book --json' lists both", *l.offer)
			}
		}
		if len(l.q.Values()) > 0 {
			return api.LeaseRequest{}, usagef("the book's filters go with --best, not --offer")
		}
		req.OfferCID = *l.offer
	} else {
		vals := l.q.Values()
		if _, err := api.ParseBookQuery(vals); err != nil {
			var pe *api.ParamError
			if errors.As(err, &pe) {
				return api.LeaseRequest{}, usagef("--%s %q: %s", strings.ReplaceAll(pe.Param, "_", "-"), pe.Value, pe.Problem)
			}
			return api.LeaseRequest{}, usageError{err}
		}
		req.Best = map[string]string{}
		for k := range vals {
			req.Best[k] = vals.Get(k)
		}
	}
	if *l.sshKey != "" {
		b, err := os.ReadFile(*l.sshKey)
		if err != nil {
			return api.LeaseRequest{}, usagef("--ssh-key: %v", err)
		}
		req.SSHKey = strings.TrimSpace(string(b))
	}
	return req, nil
}

func cmdLeaseNew(ctx context.Context, c *cli, args []string) error {
	f, l := leaseNewFlags()
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	req, err := l.request(f, pos)
	if err != nil {
		return err
	}
	var attempts []api.Attempt
	ls, err := call(c, func(cl *api.Client) (api.Lease, error) {
		ls, err := cl.NewLease(ctx, req)
		var e *api.Error
		switch {
		case errors.As(err, &e) && e.Code == api.CodeRejected:
			return ls, fmt.Errorf("refused: %s (%s)", e.Words, e.Message)
		case errors.As(err, &e) && e.Code == api.CodeNoOffer:
			attempts = e.Attempts
			return ls, fmt.Errorf("no offer granted a lease (%d tried or skipped): widen the filters", len(e.Attempts))
		}
		attempts = ls.Attempts
		return ls, err
	})
	for _, a := range attempts {
		words := a.Words
		if words == "" {
			words = a.Error
		}
		fmt.Fprintf(c.stderr, "offer %s refused: %s, trying the next\n", a.OfferID, words)
	}
	if err != nil {
		return err
	}
	if *l.wait {
		if ls, err = waitRunning(ctx, c, ls); err != nil {
			return err
		}
		ls.Attempts = attempts // the lease as it runs now, and how it was found
	}
	if c.json {
		return c.printJSON(ls)
	}
	fmt.Fprintf(c.stdout, "lease %s: %s, offer %s, %s, ends %s\n", ls.Ref(), ls.State, ls.OfferID, ls.PriceText, ls.Ends.Format(time.RFC3339))
	if ls.Endpoint != "" {
		fmt.Fprintf(c.stdout, "endpoint %s\n", ls.Endpoint)
	}
	return nil
}

// waitRunning polls the lease until its instance runs, or it ends.
func waitRunning(ctx context.Context, c *cli, ls api.Lease) (api.Lease, error) {
	tick := time.NewTicker(leasePoll)
	defer tick.Stop()
	for {
		switch {
		case ls.State == string(protocol.StateRunning) && ls.Endpoint != "":
			return ls, nil
		case ls.State == string(protocol.StateEnded):
			msg := fmt.Sprintf("lease %s ended before it ran: %s", ls.Ref(), ls.Cause)
			if ls.Detail != "" {
				msg += ": " + ls.Detail
			}
			return ls, errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return ls, fmt.Errorf("waiting for lease %s (%s): %w: 'spotmesh lease show %s' tells where it stands", ls.Ref(), ls.State, ctx.Err(), ls.Ref())
		case <-tick.C:
		}
		next, err := call(c, func(cl *api.Client) (api.Lease, error) { return cl.Lease(ctx, ls.Ref()) })
		if err != nil {
			return ls, err
		}
		ls = next
	}
}

// oneLeaseID parses the one lease ID argument of a verb.
func oneLeaseID(pos []string) (string, error) {
	if len(pos) != 1 {
		return "", usagef("want one lease ID: 'spotmesh lease ls' lists them")
	}
	if _, err := cid.Decode(pos[0]); err != nil {
		return "", usagef("%q: not a lease ID: 'spotmesh lease ls' lists them", pos[0])
	}
	return pos[0], nil
}

func cmdLeaseLs(ctx context.Context, c *cli, args []string) error {
	f := newFlags("lease ls")
	role := f.str("role", "", "only the leases bought (`buyer`) or sold (seller)")
	if err := parseNoArgs(f, args); err != nil {
		return err
	}
	if *role != "" && *role != "buyer" && *role != "seller" {
		return usagef("--role %q: want buyer or seller", *role)
	}
	list, err := call(c, func(cl *api.Client) ([]api.Lease, error) { return cl.Leases(ctx, *role) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.LeasesResponse{Leases: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no leases")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tROLE\tPEER\tSTATE\tENDPOINT\tSTARTED\tENDS\tPRICE")
	now := c.now()
	for _, l := range list {
		other, state, endpoint := l.Seller, l.State, l.Endpoint
		if l.Role == "seller" {
			other = l.Buyer
		}
		if l.Cause != "" {
			state += " (" + l.Cause + ")"
		}
		if endpoint == "" {
			endpoint = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Ref(), l.Role, shortID(other.String()), state, endpoint,
			l.Start.Format(time.RFC3339), until(now, l.Ends), l.PriceText)
	}
	return w.Flush()
}

func cmdLeaseShow(ctx context.Context, c *cli, args []string) error {
	pos, err := newFlags("lease show").parse(args)
	if err != nil {
		return err
	}
	id, err := oneLeaseID(pos)
	if err != nil {
		return err
	}
	l, err := call(c, func(cl *api.Client) (api.Lease, error) { return cl.Lease(ctx, id) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(l)
	}
	printLease(c, l)
	return nil
}

func printLease(c *cli, l api.Lease) {
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s:\t%s\n", k, v)
		}
	}
	row("id", l.ID)
	row("proposal", l.Proposal)
	row("role", l.Role)
	row("state", l.State)
	row("cause", l.Cause)
	row("endpoint", l.Endpoint)
	row("detail", l.Detail)
	row("offer", l.OfferID)
	row("buyer", l.Buyer.String())
	row("seller", l.Seller.String())
	row("slots", fmt.Sprint(l.Slots))
	row("price", l.PriceText)
	if !l.Start.IsZero() {
		row("start", l.Start.Format(time.RFC3339))
	}
	if !l.Ends.IsZero() {
		row("ends", l.Ends.Format(time.RFC3339))
	}
	row("extensions", fmt.Sprint(l.Extensions))
	row("appliance", l.Appliance)
	w.Flush()
}

func leaseRenewFlags() (*flags, *time.Duration) {
	f := newFlags("lease renew")
	return f, f.duration("for", 0, "how much longer, a `duration` like 1h")
}

func cmdLeaseRenew(ctx context.Context, c *cli, args []string) error {
	f, d := leaseRenewFlags()
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := oneLeaseID(pos)
	if err != nil {
		return err
	}
	if *d <= 0 {
		return usagef("want --for DURATION, a positive one like 1h")
	}
	l, err := call(c, func(cl *api.Client) (api.Lease, error) {
		l, err := cl.RenewLease(ctx, id, api.Duration(*d))
		var e *api.Error
		if errors.As(err, &e) && e.Code == api.CodeRejected {
			return l, fmt.Errorf("refused: %s (%s)", e.Words, e.Message)
		}
		return l, err
	})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(l)
	}
	fmt.Fprintf(c.stdout, "lease %s renewed: ends %s\n", l.Ref(), l.Ends.Format(time.RFC3339))
	return nil
}

func cmdLeaseEnd(ctx context.Context, c *cli, args []string) error {
	pos, err := newFlags("lease end").parse(args)
	if err != nil {
		return err
	}
	id, err := oneLeaseID(pos)
	if err != nil {
		return err
	}
	l, err := call(c, func(cl *api.Client) (api.Lease, error) { return cl.EndLease(ctx, id) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(l)
	}
	fmt.Fprintf(c.stdout, "lease %s ended (%s)\n", l.Ref(), l.Cause)
	return nil
}

func cmdInstancesLs(ctx context.Context, c *cli, args []string) error {
	if err := parseNoArgs(newFlags("instances ls"), args); err != nil {
		return err
	}
	list, err := call(c, func(cl *api.Client) ([]api.Instance, error) { return cl.Instances(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.InstancesResponse{Instances: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no instances")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LEASE\tSTATE\tENDPOINT\tCPU\tWALL\tMEM PEAK\tENDS\tENFORCED")
	now := c.now()
	for _, in := range list {
		var enf []string
		for _, e := range in.Enforced {
			enf = append(enf, e.Limit+":"+e.Mechanism)
		}
		endpoint := in.Endpoint
		if endpoint == "" {
			endpoint = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.LeaseID, in.State, endpoint, roundDuration(in.Usage.CPU.Std()),
			roundDuration(in.Usage.Wall.Std()), protocol.FormatSize(in.Usage.MemoryPeak), until(now, in.Ends), strings.Join(enf, ","))
	}
	return w.Flush()
}

func cmdOfferPause(ctx context.Context, c *cli, args []string) error {
	return offerPause(ctx, c, args, true)
}
func cmdOfferResume(ctx context.Context, c *cli, args []string) error {
	return offerPause(ctx, c, args, false)
}

func offerPause(ctx context.Context, c *cli, args []string, paused bool) error {
	op := "resume"
	if paused {
		op = "pause"
	}
	pos, err := newFlags("offer " + op).parse(args)
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
	r, err := call(c, func(cl *api.Client) (api.PauseResponse, error) {
		r, err := cl.PauseOffer(ctx, key, paused)
		if api.IsCode(err, api.CodeNotFound) {
			return r, fmt.Errorf("no offer with key %q on this node: 'spotmesh offer ls' lists them", key)
		}
		return r, err
	})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(r)
	}
	if paused {
		fmt.Fprintf(c.stdout, "paused offer %s: it takes no new leases; running ones go on\n", key)
	} else {
		fmt.Fprintf(c.stdout, "resumed offer %s\n", key)
	}
	return nil
}

func onePeer(pos []string) (peer.ID, error) {
	if len(pos) != 1 {
		return "", usagef("want one peer ID, like 12D3KooW...")
	}
	p, err := peer.Decode(pos[0])
	if err != nil {
		return "", usagef("%q: not a peer ID: want one like 12D3KooW...", pos[0])
	}
	return p, nil
}

func denyAddFlags() (*flags, *string) {
	f := newFlags("deny add")
	return f, f.str("note", "", "a `note` for yourself: why")
}

func cmdDenyAdd(ctx context.Context, c *cli, args []string) error {
	f, note := denyAddFlags()
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	p, err := onePeer(pos)
	if err != nil {
		return err
	}
	d, err := call(c, func(cl *api.Client) (api.Denied, error) { return cl.Deny(ctx, api.DenyRequest{Peer: p, Note: *note}) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(d)
	}
	fmt.Fprintf(c.stdout, "denied %s: its proposals are refused\n", p)
	return nil
}

func cmdDenyLs(ctx context.Context, c *cli, args []string) error {
	if err := parseNoArgs(newFlags("deny ls"), args); err != nil {
		return err
	}
	list, err := call(c, func(cl *api.Client) ([]api.Denied, error) { return cl.Denied(ctx) })
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(api.DeniedResponse{Denied: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no buyer denied")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PEER\tSINCE\tNOTE")
	for _, d := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\n", d.Peer, d.At.Format(time.RFC3339), d.Note)
	}
	return w.Flush()
}

func cmdDenyRm(ctx context.Context, c *cli, args []string) error {
	pos, err := newFlags("deny rm").parse(args)
	if err != nil {
		return err
	}
	p, err := onePeer(pos)
	if err != nil {
		return err
	}
	if _, err := call(c, func(cl *api.Client) (api.Denied, error) { return cl.Allow(ctx, p.String()) }); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(c.stdout, "allowed %s again\n", p)
		return nil
	}
	return c.printJSON(api.Denied{Peer: p})
}
