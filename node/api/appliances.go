package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multicodec"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/protocol"
)

// The appliance routes. Imports, fetches and content reads last as long
// as their bytes: they move the connection's deadlines forward while bytes
// flow (see idleDeadline) instead of living under the server's
// ReadTimeout and WriteTimeout.

const (
	// transferIdle is how long a streamed body or answer may stand still
	// before the server gives up on the connection.
	transferIdle = 2 * time.Minute
	// progressInterval is the most often a fetch writes a progress line.
	progressInterval = 200 * time.Millisecond
	// heartbeatInterval is the longest a fetch stays silent: a progress
	// line goes out even when nothing arrived, so that the client knows
	// the node is still at it.
	heartbeatInterval = 5 * time.Second
	// maxFetchPeers caps the peers a fetch request may name.
	maxFetchPeers = 64
	// ndjson is the media type of streamed answers.
	ndjson = "application/x-ndjson"
)

// cidExample is a CID as people see them, for error messages.
const cidExample = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"

// appliances returns the node's appliance store, or an error when it has
// none.
func (s *Server) appliances() (Appliances, *Error) {
	a := s.b.Appliances()
	if a == nil {
		return nil, errorf(http.StatusServiceUnavailable, CodeUnavailable, "this node has no appliance store (is it still starting?)")
	}
	return a, nil
}

// applianceRequest returns the appliance service after checking that the
// query holds only the allowed parameters; on a failure it writes the
// error and returns false.
func (s *Server) applianceRequest(w http.ResponseWriter, r *http.Request, allowed ...string) (Appliances, bool) {
	a, e := s.appliances()
	if e == nil {
		e = onlyParams(r.URL.Query(), allowed...)
	}
	if e != nil {
		s.writeError(w, r, e)
		return nil, false
	}
	return a, true
}

// cidRequest is applianceRequest for a route with a {cid} in its path,
// which it checks first.
func (s *Server) cidRequest(w http.ResponseWriter, r *http.Request, allowed ...string) (cid.Cid, Appliances, bool) {
	c, e := pathCID(r)
	if e != nil {
		s.writeError(w, r, e)
		return cid.Undef, nil, false
	}
	a, ok := s.applianceRequest(w, r, allowed...)
	return c, a, ok
}

// ParseApplianceCID reads the CID of an appliance: a CIDv1 (bafy...) or
// CIDv0 (Qm...) whose codec is dag-pb, or raw for a file of one block.
func ParseApplianceCID(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("%q is not a CID: want a CID like %s (or Qm... for CIDv0), as 'spotmesh appliance add' prints it", s, cidExample)
	}
	if t := c.Type(); t != cid.DagProtobuf && t != cid.Raw {
		return cid.Undef, fmt.Errorf("CID %s has codec %s: an appliance's root is a UnixFS file, codec dag-pb (or raw for a file of one block)", s, codecName(t))
	}
	return c, nil
}

func codecName(t uint64) string {
	if name := multicodec.Code(t).String(); !strings.HasPrefix(name, "Code(") {
		return name
	}
	return fmt.Sprintf("0x%x", t)
}

// pathCID reads the {cid} of the request's path.
func pathCID(r *http.Request) (cid.Cid, *Error) {
	c, err := ParseApplianceCID(r.PathValue("cid"))
	if err != nil {
		return cid.Undef, errorf(http.StatusBadRequest, CodeBadRequest, "path: %v", err)
	}
	return c, nil
}

// onlyParams refuses query parameters other than those allowed, and
// repeated ones, so that a typo is not silently ignored.
func onlyParams(q url.Values, allowed ...string) *Error {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		switch {
		case !ok && len(allowed) == 0:
			return errorf(http.StatusBadRequest, CodeBadRequest, "query parameter %s: unknown parameter: this route takes none", k)
		case !ok:
			return errorf(http.StatusBadRequest, CodeBadRequest, "query parameter %s: unknown parameter: this route takes %s", k, strings.Join(allowed, ", "))
		case len(q[k]) > 1:
			return errorf(http.StatusBadRequest, CodeBadRequest, "query parameter %s: given %d times: give it once", k, len(q[k]))
		}
	}
	return nil
}

// reasonParam reads the optional pin reason of the query, or def.
func reasonParam(q url.Values, def string) (string, *Error) {
	reason, ok := q["reason"]
	if !ok {
		return def, nil
	}
	if err := appliance.ValidateReason(reason[0]); err != nil {
		return "", errorf(http.StatusBadRequest, CodeBadRequest, "query parameter reason: %v", err)
	}
	return reason[0], nil
}

func (s *Server) importAppliance(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := onlyParams(q, "name", "format"); e != nil {
		s.writeError(w, r, e)
		return
	}
	meta := appliance.Meta{Name: q.Get("name"), Format: q.Get("format")}
	if meta.Format == "" {
		meta.Format = appliance.GuessFormat(meta.Name)
	}
	if err := meta.Validate(); err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "query parameters name and format: %v", err))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/octet-stream" {
			s.writeError(w, r, errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMedia,
				"body of type %q: send the file's bytes as the body with 'Content-Type: application/octet-stream', as curl --data-binary @web.qcow2 -H 'Content-Type: application/octet-stream' does", ct))
			return
		}
	}
	a, e := s.appliances()
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	limit := s.cfg.MaxApplianceBytes
	tooLarge := func() *Error {
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge,
			"the appliance is larger than this node's limit of %s (%d bytes): import a smaller file, or raise the node's limit", protocol.FormatSize(limit), limit)
	}
	if r.ContentLength > 0 && uint64(r.ContentLength) > limit {
		s.writeError(w, r, tooLarge())
		return
	}
	rc := http.NewResponseController(w)
	body := &limitedBody{r: r.Body, left: limit, deadline: idleDeadline{set: rc.SetReadDeadline}}
	info, err := a.Import(r.Context(), body, meta, nil)
	// The import may outlast the write deadline the server set when the
	// request came in: give the answer its own.
	_ = rc.SetWriteDeadline(time.Now().Add(transferIdle))
	body.mu.Lock()
	over, readErr := body.over, body.err
	body.mu.Unlock()
	switch {
	case over:
		s.writeError(w, r, tooLarge())
		return
	case err != nil && readErr != nil:
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "import %q: read the body: %v: nothing was added; send it again", meta.Name, readErr))
		return
	case err != nil:
		s.writeError(w, r, s.mapError(fmt.Sprintf("import %q", meta.Name), err))
		return
	}
	w.Header().Set("Location", "/v1/appliances/"+info.CID.String())
	s.writeJSON(w, http.StatusCreated, applianceJSON(info))
}

// limitedBody reads a request body up to a limit, moving the read
// deadline forward as bytes arrive, and remembers why it stopped.
type limitedBody struct {
	r        io.Reader
	left     uint64
	deadline idleDeadline

	mu   sync.Mutex // guards over and err: Import may read from another goroutine
	over bool       // the body is longer than the limit
	err  error      // a read error other than EOF
}

func (b *limitedBody) Read(p []byte) (int, error) {
	b.deadline.touch()
	if uint64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if uint64(n) > b.left {
		b.mu.Lock()
		b.over = true
		b.mu.Unlock()
		return 0, errors.New("body over the size limit")
	}
	b.left -= uint64(n)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// idleDeadline moves a connection's read or write deadline to
// transferIdle from now, at most once a second: a transfer lives as long
// as its bytes flow, and a peer that stops dead is cut off.
type idleDeadline struct {
	set  func(time.Time) error
	next time.Time
}

func (d *idleDeadline) touch() {
	now := time.Now()
	if now.Before(d.next) {
		return
	}
	d.next = now.Add(time.Second)
	_ = d.set(now.Add(transferIdle)) // not every writer supports it (tests' recorders): then the server's timeouts hold
}

func (s *Server) listAppliances(w http.ResponseWriter, r *http.Request) {
	a, ok := s.applianceRequest(w, r)
	if !ok {
		return
	}
	list, err := a.List(r.Context())
	if err != nil {
		s.writeError(w, r, s.mapError("list appliances", err))
		return
	}
	resp := AppliancesResponse{Appliances: make([]Appliance, 0, len(list))}
	for _, i := range list {
		resp.Appliances = append(resp.Appliances, applianceJSON(i))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getAppliance(w http.ResponseWriter, r *http.Request) {
	c, a, ok := s.cidRequest(w, r)
	if !ok {
		return
	}
	info, err := a.Get(r.Context(), c)
	if err != nil {
		s.writeError(w, r, s.notHere(c, "appliance "+c.String(), err))
		return
	}
	s.writeJSON(w, http.StatusOK, applianceJSON(info))
}

// notHere maps an error, saying how to get the appliance when the node
// does not have it.
func (s *Server) notHere(c cid.Cid, op string, err error) *Error {
	e := s.mapError(op, err)
	if e.Code == CodeNotFound {
		e.Message = fmt.Sprintf("%s: not on this node: fetch it with POST /v1/appliances/%s/fetch (spotmesh appliance get %s); GET /v1/appliances lists what is here", op, c, c)
	}
	return e
}

func (s *Server) pinAppliance(w http.ResponseWriter, r *http.Request) {
	c, a, ok := s.cidRequest(w, r, "reason")
	if !ok {
		return
	}
	q := r.URL.Query()
	reason, e := reasonParam(q, appliance.ReasonGet)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	info, err := a.Pin(r.Context(), c, reason)
	if err != nil {
		e := s.mapError("pin "+c.String(), err)
		if e.Code == CodeNotFound {
			e.Message = fmt.Sprintf("pin %s: the appliance is not (wholly) on this node: fetch it first with POST /v1/appliances/%s/fetch (spotmesh appliance get %s), which pins it", c, c, c)
		}
		s.writeError(w, r, e)
		return
	}
	s.writeJSON(w, http.StatusOK, applianceJSON(info))
}

func (s *Server) removeAppliance(w http.ResponseWriter, r *http.Request) {
	c, a, ok := s.cidRequest(w, r, "reason")
	if !ok {
		return
	}
	q := r.URL.Query()
	reason, e := reasonParam(q, "")
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	var info appliance.Info
	var err error
	if reason == "" {
		info, err = a.Remove(r.Context(), c)
	} else {
		info, err = a.Unpin(r.Context(), c, reason)
	}
	if err != nil {
		e := s.mapError("remove "+c.String(), err)
		switch e.Code {
		case CodeNotFound:
			e.Message = fmt.Sprintf("remove %s: no such appliance on this node: GET /v1/appliances lists them", c)
		case CodeNotPinned:
			e.Message = fmt.Sprintf("unpin %s: it holds no pin of reason %q: GET /v1/appliances/%s lists its pins", c, reason, c)
		}
		s.writeError(w, r, e)
		return
	}
	s.writeJSON(w, http.StatusOK, applianceJSON(info))
}

func (s *Server) gcAppliances(w http.ResponseWriter, r *http.Request) {
	a, ok := s.applianceRequest(w, r)
	if !ok {
		return
	}
	freed, err := a.GC(r.Context())
	if err != nil {
		s.writeError(w, r, s.mapError("gc", err))
		return
	}
	s.writeJSON(w, http.StatusOK, GCResponse{Freed: freed})
}

// options checks a fetch request and turns it into the service's options.
func (req FetchRequest) options() (appliance.FetchOptions, error) {
	var opts appliance.FetchOptions
	if len(req.Peers) > maxFetchPeers {
		return opts, fmt.Errorf("field peers: %d peers: name at most %d", len(req.Peers), maxFetchPeers)
	}
	byID := map[peer.ID]int{}
	for i, a := range req.Peers {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return opts, fmt.Errorf("field peers[%d] %q: %v: want a multiaddr ending in /p2p/<peer id>, as 'spotmesh id' on that node prints them", i, a, err)
		}
		if j, ok := byID[ai.ID]; ok {
			opts.Peers[j].Addrs = append(opts.Peers[j].Addrs, ai.Addrs...)
			continue
		}
		byID[ai.ID] = len(opts.Peers)
		opts.Peers = append(opts.Peers, *ai)
	}
	switch req.Transport {
	case "", "auto":
		opts.Transport = appliance.TransportAuto
	case "bitswap":
		opts.Transport = appliance.TransportBitswap
	case "stream":
		opts.Transport = appliance.TransportStream
	default:
		return opts, fmt.Errorf("field transport %q: want auto, bitswap or stream", req.Transport)
	}
	opts.MaxSize = req.MaxSize
	opts.Meta = appliance.Meta{Name: req.Name, Format: req.Format}
	if err := opts.Meta.Validate(); err != nil {
		return opts, fmt.Errorf("fields name and format: %v", err)
	}
	return opts, nil
}

// fetchAppliance runs a fetch and streams its progress as NDJSON: a line
// {"done":…,"total":…} at most every progressInterval while blocks arrive
// (and every heartbeatInterval regardless), then a last line with "info"
// or "error". Once the request is valid the status is 200, and a failure
// comes in the last line, with the status it would have had.
func (s *Server) fetchAppliance(w http.ResponseWriter, r *http.Request) {
	c, e := pathCID(r)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	var req FetchRequest
	if r.ContentLength != 0 { // no body: the defaults
		if e := s.decode(w, r, &req); e != nil {
			s.writeError(w, r, e)
			return
		}
	}
	opts, err := req.options()
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "fetch %s: %v", c, err))
		return
	}
	a, e := s.appliances()
	if e != nil {
		s.writeError(w, r, e)
		return
	}

	var (
		mu          sync.Mutex // guards done and total, set by Fetch's progress
		done, total uint64
	)
	opts.Progress = func(d, t uint64) {
		mu.Lock()
		done, total = d, t
		mu.Unlock()
	}
	type result struct {
		info appliance.Info
		err  error
	}
	res := make(chan result, 1)
	// The request's context ends the fetch when the client goes away;
	// what arrived stays for the next try.
	go func() {
		info, err := a.Fetch(r.Context(), c, opts)
		res <- result{info, err}
	}()

	rc := http.NewResponseController(w)
	dl := idleDeadline{set: rc.SetWriteDeadline}
	h := w.Header()
	h.Set("Content-Type", ndjson)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(ev FetchEvent) {
		dl.touch()
		if err := enc.Encode(ev); err == nil {
			_ = rc.Flush()
		}
	}
	send(FetchEvent{}) // the headers and a first line go out at once
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	var sent FetchEvent
	lastSent := time.Now()
	for {
		select {
		case out := <-res:
			mu.Lock()
			ev := FetchEvent{Done: done, Total: total}
			mu.Unlock()
			if out.err != nil {
				e := s.mapError("fetch "+c.String(), out.err)
				if e.Status >= 500 {
					s.log.Warn("api: fetch failed", "cid", c, "status", e.Status, "err", e.Message)
				}
				ev.Error = &StreamError{Message: e.Message, Code: e.Code, Status: e.Status}
				send(ev)
				return
			}
			info := applianceJSON(out.info)
			ev.Done, ev.Total, ev.Info = out.info.Size, out.info.Size, &info
			send(ev)
			return
		case now := <-tick.C:
			mu.Lock()
			ev := FetchEvent{Done: done, Total: total}
			mu.Unlock()
			if ev != sent || now.Sub(lastSent) >= heartbeatInterval {
				send(ev)
				sent, lastSent = ev, now
			}
		}
	}
}

// applianceContent serves the bytes of an appliance from local blocks,
// with range requests (http.ServeContent): 200 with the whole file, 206
// with a range, 416 for a range past the end.
func (s *Server) applianceContent(w http.ResponseWriter, r *http.Request) {
	c, a, ok := s.cidRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	// A record exists once the whole DAG is here (an import or a fetch
	// finished), so a node does not start a body it cannot finish.
	info, err := a.Get(ctx, c)
	if err != nil {
		s.writeError(w, r, s.notHere(c, "read "+c.String(), err))
		return
	}
	f, err := a.Open(ctx, c)
	if err != nil {
		s.writeError(w, r, s.notHere(c, "read "+c.String(), err))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", `"`+c.String()+`"`)
	if cd := mime.FormatMediaType("attachment", map[string]string{"filename": info.Name}); info.Name != "" && cd != "" {
		h.Set("Content-Disposition", cd)
	}
	rc := http.NewResponseController(w)
	http.ServeContent(&deadlineWriter{ResponseWriter: w, dl: idleDeadline{set: rc.SetWriteDeadline}}, r, "", time.Time{}, &sizedFile{f: f})
}

// deadlineWriter moves the write deadline forward as the body goes out.
type deadlineWriter struct {
	http.ResponseWriter
	dl idleDeadline
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.dl.touch()
	return w.ResponseWriter.Write(p)
}

// sizedFile answers http.ServeContent's seek to the end from the file's
// size, without walking the DAG to its last leaf and back.
type sizedFile struct {
	f       appliance.File
	pending int64 // a position to seek to before the next read; -1 none
	set     bool
}

func (s *sizedFile) Read(p []byte) (int, error) {
	if s.set {
		s.set = false
		if _, err := s.f.Seek(s.pending, io.SeekStart); err != nil {
			return 0, err
		}
	}
	return s.f.Read(p)
}

func (s *sizedFile) Seek(offset int64, whence int) (int64, error) {
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekEnd:
		pos = int64(s.f.Size()) + offset
	default:
		if s.set {
			return s.Seek(s.pending+offset, io.SeekStart)
		}
		return s.f.Seek(offset, whence)
	}
	if pos < 0 {
		return 0, errors.New("seek before the start of the file")
	}
	s.pending, s.set = pos, true
	return pos, nil
}
