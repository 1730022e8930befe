package api

import (
	"context"
	"net/url"
)

// Receipts lists a lease's usage receipts with the buyer's answers (GET
// /v1/leases/{id}/receipts). An unknown lease is an *Error with code
// not_found.
func (c *Client) Receipts(ctx context.Context, lease string) (ReceiptsResponse, error) {
	return doJSON[ReceiptsResponse](ctx, c, "GET", "/v1/leases/"+url.PathEscape(lease)+"/receipts", nil, nil)
}

// Settlements lists the billing of every lease the node sold or bought,
// the most recently changed first.
func (c *Client) Settlements(ctx context.Context) ([]LeaseSettlement, error) {
	r, err := doJSON[SettlementsResponse](ctx, c, "GET", "/v1/settlements", nil, nil)
	return r.Settlements, err
}

// Settlement returns one lease's billing: both chain heads, disputes, the
// settlement and the claim.
func (c *Client) Settlement(ctx context.Context, lease string) (LeaseSettlement, error) {
	return doJSON[LeaseSettlement](ctx, c, "GET", "/v1/settlements/"+url.PathEscape(lease), nil, nil)
}

// Balance lists what each counterparty and the node owe each other, per
// currency.
func (c *Client) Balance(ctx context.Context) ([]Balance, error) {
	r, err := doJSON[BalanceResponse](ctx, c, "GET", "/v1/balance", nil, nil)
	return r.Balances, err
}

// Invoice returns the acknowledged receipts of a month, given as YYYY-MM.
func (c *Client) Invoice(ctx context.Context, month string) (Invoice, error) {
	return doJSON[Invoice](ctx, c, "GET", "/v1/invoice", url.Values{"month": {month}}, nil)
}
