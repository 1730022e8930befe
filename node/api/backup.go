package api

import (
	"errors"
	"net/http"

	"github.com/spotmesh/spotmesh/store"
)

// GET /v1/backup streams a consistent copy of the node's database, made
// while the node runs (store.DB.Backup: badger's backup format). The body
// goes out chunked as the database is read. A failure before the first
// byte is an error answer; a failure after it cuts the connection, so that
// the client sees a body without its last chunk instead of a short backup
// that looks whole.

// backupFile is the file name the answer suggests.
const backupFile = "spotmesh-db.backup"

func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if e := onlyParams(r.URL.Query()); e != nil {
		s.writeError(w, r, e)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="`+backupFile+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	cw := &countingWriter{w: &deadlineWriter{ResponseWriter: w, dl: idleDeadline{set: rc.SetWriteDeadline}}}
	err := s.b.Backup(cw)
	if err == nil {
		return
	}
	if cw.n == 0 {
		h.Del("Content-Disposition")
		var e *Error
		switch {
		case errors.Is(err, store.ErrClosed):
			e = errorf(http.StatusServiceUnavailable, CodeUnavailable, "backup: %v: the node is stopping; back it up while it runs", err)
		default:
			e = s.mapError("backup", err)
		}
		s.writeError(w, r, e)
		return
	}
	s.log.Error("api: backup failed after the first bytes: cutting the connection", "bytes", cw.n, "err", err)
	panic(http.ErrAbortHandler)
}

// countingWriter counts the bytes written through it. The backend writes
// from one goroutine at a time, and the handler reads n after it returned.
type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
