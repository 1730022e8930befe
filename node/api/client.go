package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a node's API. Its methods return ErrUnreachable
// (wrapped) when no node answers, and *Error when the node refuses.
type Client struct {
	base  string
	token string
	hc    *http.Client
	// stream has no overall timeout, for transfers that last as long as
	// their bytes (imports, fetches, content); it shares hc's transport.
	stream *http.Client
}

// NewClient makes a client for the API at addr (host:port, or a URL with
// http://) with the node's bearer token.
func NewClient(addr, token string) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	return &Client{
		base:   strings.TrimRight(base, "/"),
		token:  token,
		hc:     &http.Client{Timeout: 2 * time.Minute, Transport: tr},
		stream: &http.Client{Transport: tr},
	}
}

// Addr is the API's base URL.
func (c *Client) Addr() string { return c.base }

// CloseIdleConnections releases the client's idle connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Health checks that the node answers (GET /healthz, no token needed).
func (c *Client) Health(ctx context.Context) error {
	var h Health
	return c.do(ctx, "GET", "/healthz", nil, nil, &h)
}

// Identity asks who and where the node is.
func (c *Client) Identity(ctx context.Context) (IDResponse, error) {
	return doJSON[IDResponse](ctx, c, "GET", "/v1/id", nil, nil)
}

// Peers lists the node's connected peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	r, err := doJSON[PeersResponse](ctx, c, "GET", "/v1/peers", nil, nil)
	return r.Peers, err
}

// Connect makes the node dial a peer at addr, a multiaddr ending in
// /p2p/<peer id>, and returns the peer's ID.
func (c *Client) Connect(ctx context.Context, addr string) (ConnectResponse, error) {
	return doJSON[ConnectResponse](ctx, c, "POST", "/v1/peers", nil, ConnectRequest{Addr: addr})
}

// AddOffer adds, signs and publishes an offer.
func (c *Client) AddOffer(ctx context.Context, spec OfferSpec) (OfferStatus, error) {
	return doJSON[OfferStatus](ctx, c, "POST", "/v1/offers", nil, spec)
}

// Offers lists the node's own offers.
func (c *Client) Offers(ctx context.Context) ([]OfferStatus, error) {
	r, err := doJSON[OffersResponse](ctx, c, "GET", "/v1/offers", nil, nil)
	return r.Offers, err
}

// WithdrawOffer withdraws the node's offer with key.
func (c *Client) WithdrawOffer(ctx context.Context, key string) (OfferStatus, error) {
	return doJSON[OfferStatus](ctx, c, "DELETE", "/v1/offers/"+url.PathEscape(key), nil, nil)
}

// Book queries the node's order book.
func (c *Client) Book(ctx context.Context, q BookQuery) (BookResponse, error) {
	return doJSON[BookResponse](ctx, c, "GET", "/v1/book", q.Values(), nil)
}

// doJSON makes a request and decodes its JSON answer into a T.
func doJSON[T any](ctx context.Context, c *Client, method, path string, q url.Values, in any) (T, error) {
	var r T
	err := c.do(ctx, method, path, q, in, &r)
	return r, err
}

// Metrics fetches the node's Prometheus metrics as text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.send(ctx, "GET", "/metrics", nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", fmt.Errorf("GET /metrics: read: %w: %w", ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", refusal(resp, b)
	}
	return string(b), nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	return c.decodeAnswer(resp, out)
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, q, in)
	if err != nil {
		return nil, err
	}
	return c.doRequest(ctx, c.hc, req)
}

// newRequest makes a request with the token and, if in is not nil, in
// as its JSON body.
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, in any) (*http.Request, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// doRequest sends req with hc; a failure to reach the node wraps
// ErrUnreachable.
func (c *Client) doRequest(ctx context.Context, hc *http.Client, req *http.Request) (*http.Response, error) {
	method, path := req.Method, req.URL.Path
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctxErr)
		}
		return nil, fmt.Errorf("%s %s: %w at %s: %w", method, path, ErrUnreachable, c.base, err)
	}
	return resp, nil
}

// refusal reads an error answer into an *Error, keeping the status even
// when the body is not the API's error JSON (a proxy, another server).
func refusal(resp *http.Response, body []byte) error {
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(body, e) != nil || e.Code == "" {
		e.Code = codeOf(resp.StatusCode)
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		e.Message = fmt.Sprintf("%s %s: %d %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, http.StatusText(resp.StatusCode), msg)
	}
	e.Status = resp.StatusCode
	return e
}

func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedMedia
	case http.StatusBadGateway:
		return CodePeerUnreachable
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	case http.StatusGatewayTimeout:
		return CodeTimeout
	}
	return CodeInternal
}

// IsUnreachable reports whether err means no node answered.
func IsUnreachable(err error) bool { return errors.Is(err, ErrUnreachable) }
