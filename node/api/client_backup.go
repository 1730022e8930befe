package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// backupSilence is how long Client.Backup waits for the next bytes of the
// backup before it gives up on the node.
const backupSilence = transferIdle

// Backup streams a consistent copy of the node's database into w (GET
// /v1/backup), made while the node runs; store.Restore reads it back. It
// returns nil only when the whole backup arrived. An answer that stops in
// the middle (the node failed or went away) or stands still for
// backupSilence wraps ErrUnreachable; an error of w is returned as is.
func (c *Client) Backup(ctx context.Context, w io.Writer) error {
	const path = "/v1/backup"
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The node may take long over a big database, but not stand still.
	silent := time.AfterFunc(backupSilence, func() {
		cancel(fmt.Errorf("GET %s: the node sent nothing for %v: %w", path, backupSilence, ErrUnreachable))
	})
	defer silent.Stop()
	stalled := func(err error) error {
		if cause := context.Cause(ctx); errors.Is(cause, ErrUnreachable) {
			return cause
		}
		return err
	}
	req, err := c.newRequest(ctx, "GET", path, nil, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/octet-stream, application/json")
	resp, err := c.doRequest(ctx, c.stream, req)
	if err != nil {
		return stalled(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return refusal(resp, b)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/octet-stream" {
		return fmt.Errorf("GET %s: the answer is of type %q, not application/octet-stream: is %s a spotmesh node?", path, resp.Header.Get("Content-Type"), c.base)
	}
	body := &unreachableOnError{rc: resp.Body, what: "GET " + path}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			silent.Reset(backupSilence)
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil && ctx.Err() != nil:
			return stalled(fmt.Errorf("GET %s: %w", path, rerr))
		case rerr != nil:
			return rerr
		}
	}
}
