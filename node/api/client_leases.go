package api

import (
	"context"
	"net/url"
)

// NewLease proposes a lease (POST /v1/leases). A refusal is an *Error with
// code rejected (Reason, Words) or no_offer (Attempts).
func (c *Client) NewLease(ctx context.Context, req LeaseRequest) (Lease, error) {
	return doJSON[Lease](ctx, c, "POST", "/v1/leases", nil, req)
}

// Leases lists the node's leases; role is buyer, seller or "" for both.
func (c *Client) Leases(ctx context.Context, role string) ([]Lease, error) {
	var q url.Values
	if role != "" {
		q = url.Values{"role": {role}}
	}
	r, err := doJSON[LeasesResponse](ctx, c, "GET", "/v1/leases", q, nil)
	return r.Leases, err
}

// Lease returns one lease, refreshed from the seller for a lease bought.
func (c *Client) Lease(ctx context.Context, id string) (Lease, error) {
	return doJSON[Lease](ctx, c, "GET", "/v1/leases/"+url.PathEscape(id), nil, nil)
}

// RenewLease extends a lease.
func (c *Client) RenewLease(ctx context.Context, id string, d Duration) (Lease, error) {
	return doJSON[Lease](ctx, c, "POST", "/v1/leases/"+url.PathEscape(id)+"/renew", nil, RenewRequest{For: d})
}

// EndLease ends a lease.
func (c *Client) EndLease(ctx context.Context, id string) (Lease, error) {
	return doJSON[Lease](ctx, c, "DELETE", "/v1/leases/"+url.PathEscape(id), nil, nil)
}

// Instances lists the instances the node runs.
func (c *Client) Instances(ctx context.Context) ([]Instance, error) {
	r, err := doJSON[InstancesResponse](ctx, c, "GET", "/v1/instances", nil, nil)
	return r.Instances, err
}

// PauseOffer pauses (paused true) or resumes one of the node's offers.
func (c *Client) PauseOffer(ctx context.Context, key string, paused bool) (PauseResponse, error) {
	op := "/resume"
	if paused {
		op = "/pause"
	}
	return doJSON[PauseResponse](ctx, c, "POST", "/v1/offers/"+url.PathEscape(key)+op, nil, struct{}{})
}

// Denied lists the buyers the node refuses.
func (c *Client) Denied(ctx context.Context) ([]Denied, error) {
	r, err := doJSON[DeniedResponse](ctx, c, "GET", "/v1/deny", nil, nil)
	return r.Denied, err
}

// Deny adds a buyer to the deny list.
func (c *Client) Deny(ctx context.Context, req DenyRequest) (Denied, error) {
	return doJSON[Denied](ctx, c, "POST", "/v1/deny", nil, req)
}

// Allow takes a buyer off the deny list.
func (c *Client) Allow(ctx context.Context, p string) (Denied, error) {
	return doJSON[Denied](ctx, c, "DELETE", "/v1/deny/"+url.PathEscape(p), nil, nil)
}
