package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// fetchSilence is how long FetchAppliance waits for a line of the node's
// answer, which sends one at least every heartbeatInterval.
const fetchSilence = 12 * heartbeatInterval

// ImportOptions tune Client.ImportAppliance.
type ImportOptions struct {
	// Name is the file name the appliance is known by, such as web.qcow2;
	// Format its format, such as qcow2 (empty: the node guesses it from
	// the name's extension).
	Name, Format string
	// Size is the length of the body in bytes, or -1 when unknown (the
	// body is then sent chunked). A known size lets the node refuse a file
	// over its limit before any byte is sent.
	Size int64
	// Progress, if not nil, is called with the bytes sent so far as the
	// body goes out.
	Progress func(sent uint64)
}

// ImportAppliance streams the file r to the node, which imports, stores and
// pins it, and returns what the node knows of it. The file is never held
// in memory, on either side.
func (c *Client) ImportAppliance(ctx context.Context, r io.Reader, opts ImportOptions) (Appliance, error) {
	q := url.Values{}
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	if opts.Format != "" {
		q.Set("format", opts.Format)
	}
	req, err := c.newRequest(ctx, "POST", "/v1/appliances", q, nil)
	if err != nil {
		return Appliance{}, err
	}
	req.Body = io.NopCloser(&progressReader{r: r, progress: opts.Progress})
	req.ContentLength = opts.Size
	if opts.Size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	var out Appliance
	resp, err := c.doRequest(ctx, c.stream, req)
	if err != nil {
		return out, err
	}
	return out, c.decodeAnswer(resp, &out)
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r        io.Reader
	n        uint64
	progress func(uint64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += uint64(n)
		if p.progress != nil {
			p.progress(p.n)
		}
	}
	return n, err
}

// Appliances lists the appliances the node holds, oldest first.
func (c *Client) Appliances(ctx context.Context) ([]Appliance, error) {
	r, err := doJSON[AppliancesResponse](ctx, c, "GET", "/v1/appliances", nil, nil)
	return r.Appliances, err
}

// Appliance returns what the node knows of the appliance cid.
func (c *Client) Appliance(ctx context.Context, cid string) (Appliance, error) {
	return doJSON[Appliance](ctx, c, "GET", "/v1/appliances/"+url.PathEscape(cid), nil, nil)
}

// FetchAppliance makes the node fetch the appliance cid from the network,
// verify and pin it, and returns what the node knows of it. progress, if
// not nil, is called with the bytes held so far and the size the root
// declares (0 until the root has arrived). A failure of the fetch is an
// *Error, with the status it would have had as an answer.
func (c *Client) FetchAppliance(ctx context.Context, cid string, fr FetchRequest, progress func(done, total uint64)) (Appliance, error) {
	path := "/v1/appliances/" + url.PathEscape(cid) + "/fetch"
	// The node sends a line at least every heartbeatInterval: a node
	// silent for much longer is stuck, and the fetch is given up.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silent := time.AfterFunc(fetchSilence, func() {
		cancel(fmt.Errorf("the node sent nothing for %v: %w", fetchSilence, ErrUnreachable))
	})
	defer silent.Stop()
	req, err := c.newRequest(ctx, "POST", path, nil, fr)
	if err != nil {
		return Appliance{}, err
	}
	req.Header.Set("Accept", ndjson+", application/json")
	resp, err := c.doRequest(ctx, c.stream, req)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrUnreachable) {
			return Appliance{}, fmt.Errorf("POST %s: %w", path, cause)
		}
		return Appliance{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return Appliance{}, refusal(resp, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4<<10), 1<<20)
	for sc.Scan() {
		silent.Reset(fetchSilence)
		if len(sc.Bytes()) == 0 {
			continue
		}
		var ev FetchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return Appliance{}, fmt.Errorf("POST %s: a line of the node's answer is not the JSON expected: %w (is this a spotmesh node of the same version?)", path, err)
		}
		switch {
		case ev.Error != nil:
			return Appliance{}, &Error{Status: ev.Error.Status, Code: ev.Error.Code, Message: ev.Error.Message}
		case ev.Info != nil:
			if progress != nil {
				progress(ev.Done, ev.Total)
			}
			return *ev.Info, nil
		case progress != nil:
			progress(ev.Done, ev.Total)
		}
	}
	if ctx.Err() != nil {
		return Appliance{}, fmt.Errorf("POST %s: %w", path, context.Cause(ctx))
	}
	err = sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return Appliance{}, fmt.Errorf("POST %s: the node stopped answering before the fetch ended: %w: %w", path, ErrUnreachable, err)
}

// ApplianceContent opens the bytes of the appliance cid, from local blocks
// of the node, starting at offset. It returns the body, which the caller
// closes, and its length in bytes.
func (c *Client) ApplianceContent(ctx context.Context, cid string, offset uint64) (io.ReadCloser, int64, error) {
	path := "/v1/appliances/" + url.PathEscape(cid) + "/content"
	req, err := c.newRequest(ctx, "GET", path, nil, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/octet-stream, application/json")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatUint(offset, 10)+"-")
	}
	resp, err := c.doRequest(ctx, c.stream, req)
	if err != nil {
		return nil, 0, err
	}
	want := http.StatusOK
	if offset > 0 {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, 0, refusal(resp, b)
	}
	return &unreachableOnError{rc: resp.Body, what: "GET " + path}, resp.ContentLength, nil
}

// unreachableOnError marks a body's read errors as ErrUnreachable: the
// node went away in the middle of the body.
type unreachableOnError struct {
	rc   io.ReadCloser
	what string
}

func (u *unreachableOnError) Read(p []byte) (int, error) {
	n, err := u.rc.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return n, fmt.Errorf("%s: the body ended early: %w: %w", u.what, ErrUnreachable, err)
	}
	return n, err
}

func (u *unreachableOnError) Close() error { return u.rc.Close() }

// PinAppliance pins the appliance cid for reason ("" means "get", a pin
// that RemoveAppliance removes). Every block must be on the node.
func (c *Client) PinAppliance(ctx context.Context, cid, reason string) (Appliance, error) {
	var q url.Values
	if reason != "" {
		q = url.Values{"reason": {reason}}
	}
	return doJSON[Appliance](ctx, c, "POST", "/v1/appliances/"+url.PathEscape(cid)+"/pin", q, nil)
}

// RemoveAppliance removes the user's pins ("add" and "get") of the
// appliance cid; pins of leases stay. GC then frees its blocks.
func (c *Client) RemoveAppliance(ctx context.Context, cid string) (Appliance, error) {
	return doJSON[Appliance](ctx, c, "DELETE", "/v1/appliances/"+url.PathEscape(cid), nil, nil)
}

// UnpinAppliance removes the pin of reason from the appliance cid.
func (c *Client) UnpinAppliance(ctx context.Context, cid, reason string) (Appliance, error) {
	return doJSON[Appliance](ctx, c, "DELETE", "/v1/appliances/"+url.PathEscape(cid), url.Values{"reason": {reason}}, nil)
}

// GCAppliances removes every block that no pinned appliance needs and
// returns the bytes freed.
func (c *Client) GCAppliances(ctx context.Context) (uint64, error) {
	req, err := c.newRequest(ctx, "POST", "/v1/appliances/gc", nil, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.doRequest(ctx, c.stream, req) // GC of a big store takes a while
	if err != nil {
		return 0, err
	}
	var r GCResponse
	err = c.decodeAnswer(resp, &r)
	return r.Freed, err
}

// decodeAnswer reads a JSON answer into out, or the refusal.
func (c *Client) decodeAnswer(resp *http.Response, out any) error {
	defer resp.Body.Close()
	method, path := resp.Request.Method, resp.Request.URL.Path
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w: %w", method, path, ErrUnreachable, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return refusal(resp, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: the node's answer is not the JSON expected: %w (is this a spotmesh node of the same version?)", method, path, err)
	}
	return nil
}
