package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spotmesh/spotmesh/node/appliance"
	"github.com/spotmesh/spotmesh/node/offers"
	"github.com/spotmesh/spotmesh/protocol"
)

// connectTimeout bounds POST /v1/peers.
const connectTimeout = 30 * time.Second

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

func (s *Server) identity(w http.ResponseWriter, r *http.Request) {
	id := s.b.Identity()
	resp := IDResponse{
		PeerID:      id.PeerID,
		Addrs:       orEmpty(id.Addrs),
		APIAddr:     id.APIAddr,
		GatewayAddr: id.GatewayAddr,
		Version:     id.Version,
		Started:     utc(id.Started),
	}
	if resp.APIAddr == "" {
		resp.APIAddr = s.Addr()
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) peers(w http.ResponseWriter, r *http.Request) {
	ps := s.b.Peers()
	resp := PeersResponse{Peers: make([]Peer, 0, len(ps))}
	for _, p := range ps {
		resp.Peers = append(resp.Peers, Peer{ID: p.ID, Addrs: orEmpty(p.Addrs), Latency: Duration(p.Latency)})
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	var req ConnectRequest
	if err := s.decode(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := peer.AddrInfoFromString(req.Addr); err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest,
			"field addr %q: %v: want a multiaddr ending in /p2p/<peer id>, like /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...", req.Addr, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), connectTimeout)
	defer cancel()
	id, err := s.b.Connect(ctx, req.Addr)
	if err != nil {
		e := s.mapError("connect to "+req.Addr, err)
		if e.Code == CodeInternal {
			e = errorf(http.StatusBadGateway, CodePeerUnreachable, "connect to %s: %v: check that the peer runs and that the address is current", req.Addr, err)
		}
		s.writeError(w, r, e)
		return
	}
	s.writeJSON(w, http.StatusOK, ConnectResponse{PeerID: id})
}

func (s *Server) addOffer(w http.ResponseWriter, r *http.Request) {
	var req OfferSpec
	if err := s.decode(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	spec, err := req.Spec()
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "offer spec: %v", err))
		return
	}
	st, err := s.b.AddOffer(r.Context(), spec)
	if err != nil {
		s.writeError(w, r, s.mapError("add offer", err))
		return
	}
	s.writeJSON(w, http.StatusCreated, statusJSON(st))
}

func (s *Server) offers(w http.ResponseWriter, r *http.Request) {
	list := s.b.Offers()
	resp := OffersResponse{Offers: make([]OfferStatus, 0, len(list))}
	for _, st := range list {
		resp.Offers = append(resp.Offers, statusJSON(st))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) withdrawOffer(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := protocol.ValidateName("key", key); err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "offer %v", err))
		return
	}
	st, err := s.b.WithdrawOffer(r.Context(), key)
	if err != nil {
		e := s.mapError("withdraw offer "+key, err)
		if e.Code == CodeNotFound {
			e.Message = fmt.Sprintf("withdraw offer: no offer with key %q: list this node's offers with GET /v1/offers", key)
		}
		s.writeError(w, r, e)
		return
	}
	s.writeJSON(w, http.StatusOK, statusJSON(st))
}

func (s *Server) book(w http.ResponseWriter, r *http.Request) {
	q, err := ParseBookQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, CodeBadRequest, "query parameter %v", err))
		return
	}
	entries := s.b.Book(q)
	resp := BookResponse{Offers: make([]Offer, 0, len(entries)), Total: s.b.BookSize()}
	for _, e := range entries {
		if e.Offer == nil {
			continue
		}
		resp.Offers = append(resp.Offers, entryJSON(e))
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.promh.ServeHTTP(w, r)
}

// mapError turns a Backend error into the API's answer.
func (s *Server) mapError(op string, err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrNotFound), errors.Is(err, offers.ErrNotFound):
		return errorf(http.StatusNotFound, CodeNotFound, "%s: %v", op, err)
	case errors.Is(err, offers.ErrWithdrawn), errors.Is(err, offers.ErrExists):
		return errorf(http.StatusConflict, CodeConflict, "%s: %v", op, err)
	case errors.Is(err, protocol.ErrInvalid), errors.Is(err, protocol.ErrFarFuture):
		return errorf(http.StatusBadRequest, CodeBadRequest, "%s: %v", op, err)
	case errors.Is(err, appliance.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "%s: %v", op, err)
	case errors.Is(err, appliance.ErrCorrupt):
		return errorf(http.StatusBadGateway, CodeCorrupt, "%s: %v: no honest peer had the block; name another peer that holds it", op, err)
	case errors.Is(err, appliance.ErrMalformed):
		return errorf(http.StatusBadGateway, CodeMalformed, "%s: %v: this CID does not name an appliance file", op, err)
	case errors.Is(err, appliance.ErrStalled):
		return errorf(http.StatusGatewayTimeout, CodeStalled, "%s: %v: check that a peer holding it is up and name it; blocks that arrived are kept, so trying again resumes", op, err)
	case errors.Is(err, appliance.ErrNotPinned):
		return errorf(http.StatusConflict, CodeNotPinned, "%s: %v", op, err)
	case errors.Is(err, appliance.ErrNotFound):
		return errorf(http.StatusNotFound, CodeNotFound, "%s: %v", op, err)
	case errors.Is(err, appliance.ErrInvalid):
		return errorf(http.StatusBadRequest, CodeBadRequest, "%s: %v", op, err)
	case errors.Is(err, appliance.ErrNotStarted), errors.Is(err, appliance.ErrClosed):
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%s: %v: the node is starting or stopping; try again", op, err)
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, CodeTimeout, "%s: took too long: %v: try again; if it persists, check the node's log", op, err)
	case errors.Is(err, context.Canceled):
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%s: cancelled: %v", op, err)
	}
	s.log.Error("api: request failed", "op", op, "err", err)
	return errorf(http.StatusInternalServerError, CodeInternal, "%s: %v", op, err)
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("api: encode response", "err", err)
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorf(status, CodeInternal, "encode response: %v", err))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	if e.Status >= 500 {
		s.log.Warn("api error", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", e.Message)
	}
	s.writeJSON(w, e.Status, e)
}

// decode reads a JSON body into dst strictly: one object, no unknown
// fields (names match exactly, case included), values of the right type.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any) *Error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMedia,
				"body of type %q: send JSON with the header 'Content-Type: application/json'", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "body over %d bytes: send a smaller one", mb.Limit)
		}
		return errorf(http.StatusBadRequest, CodeBadRequest, "read body: %v", err)
	}
	return decodeStrict(body, dst)
}

func decodeStrict(body []byte, dst any) *Error {
	badf := func(format string, args ...any) *Error {
		return errorf(http.StatusBadRequest, CodeBadRequest, format, args...)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badf("empty body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return badf("body is not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		return badf("body is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badf("body holds more than one JSON value: send one object")
	}
	if err := checkFields(raw, reflect.TypeOf(dst).Elem(), ""); err != nil {
		return badf("%v", err)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				return badf("body is %s: want %s", te.Value, want(te.Type))
			}
			return badf("field %s: got %s: want %s", field, te.Value, want(te.Type))
		}
		return badf("body: %v", err)
	}
	return nil
}

var (
	timeType            = reflect.TypeFor[time.Time]()
	peerIDType          = reflect.TypeFor[peer.ID]()
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// checkFields walks raw along t and fails on the first object key that no
// field of t names exactly, and on a time that is not RFC 3339. Type
// mismatches are left to json.Unmarshal, which names the field too.
func checkFields(raw json.RawMessage, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch {
	case t == timeType:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil // not a string: Unmarshal reports the type
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return fmt.Errorf("field %s: %q: want an RFC 3339 time in UTC, like 2026-01-02T15:04:05Z", path, s)
		}
		return nil
	case reflect.PointerTo(t).Implements(jsonUnmarshalerType):
		return nil
	case t.Kind() == reflect.Slice:
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return nil
		}
		for i, e := range elems {
			if err := checkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case t.Kind() != reflect.Struct:
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		fields[tag] = f.Type
		names = append(names, tag)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ft, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown field %q: the fields here are %s", name(k), strings.Join(names, ", "))
		}
		if err := checkFields(obj[k], ft, name(k)); err != nil {
			return err
		}
	}
	return nil
}

// want describes the JSON a Go type reads.
func want(t reflect.Type) string {
	switch t {
	case durationType:
		return `a Go duration string like "72h" or "90s"`
	case timeType:
		return "an RFC 3339 time string like 2026-01-02T15:04:05Z"
	case peerIDType:
		return "a peer ID string like 12D3KooW..."
	}
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<(t.Bits()-1)*2-1)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(want(t.Elem()), "a "), "an ") + "s"
	case reflect.Struct:
		return "a JSON object"
	}
	return t.String()
}
