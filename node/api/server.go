package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Server.
type Config struct {
	// Addr is the host:port to listen on. It must be on loopback, unless
	// OffLoopback; port 0 picks a free one (see Server.Addr).
	Addr string
	// OffLoopback lets Addr be one IP address off loopback (never 0.0.0.0
	// or ::, never a name), such as that of the network namespace a
	// testnet node runs in ('spotmesh testnet up --netns'). The API has no
	// TLS and only its token guards it: it is for an address of a network
	// inside this machine.
	OffLoopback bool
	// Token is the bearer token every route but GET /healthz requires.
	Token string
	// Logger receives one debug line per request and errors; nil discards.
	Logger *slog.Logger
	// MaxBodyBytes caps a JSON request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxApplianceBytes caps the file of an appliance import, which is
	// streamed and never held in memory; 0 means DefaultMaxApplianceBytes.
	// Set it to the appliance service's MaxSize.
	MaxApplianceBytes uint64
	// ShutdownTimeout bounds how long Close waits for requests in flight;
	// 0 means 5s. Requests still running then are cut off.
	ShutdownTimeout time.Duration
}

// DefaultMaxBodyBytes is the default cap on a JSON request body.
const DefaultMaxBodyBytes = 64 << 10

// DefaultMaxApplianceBytes is the default cap on an imported appliance:
// 64 GiB, the appliance service's default MaxSize.
const DefaultMaxApplianceBytes uint64 = 64 << 30

// DefaultConfig listens on a free loopback port. The token must be set.
func DefaultConfig() Config {
	return Config{Addr: "127.0.0.1:0", MaxBodyBytes: DefaultMaxBodyBytes, MaxApplianceBytes: DefaultMaxApplianceBytes, ShutdownTimeout: 5 * time.Second}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	check := CheckLoopback
	if c.OffLoopback {
		check = checkOneIP
	}
	if err := check(c.Addr); err != nil {
		return fmt.Errorf("api config: addr: %w", err)
	}
	if len(c.Token) < 16 {
		return errors.New("api config: token: want at least 16 characters (the home's api.token file)")
	}
	if c.MaxBodyBytes < 0 || c.ShutdownTimeout < 0 {
		return errors.New("api config: max body bytes and shutdown timeout must not be negative")
	}
	return nil
}

// CheckLoopback checks that addr is a host:port on loopback: 127.0.0.1,
// ::1 or localhost. The API has no TLS, so it never listens elsewhere.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port on loopback, like 127.0.0.1:5001", addr)
	}
	if port == "" {
		return fmt.Errorf("%q: no port: want host:port on loopback, like 127.0.0.1:5001 (port 0 picks one)", addr)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not on loopback: the API has no TLS and serves only this machine; use 127.0.0.1:<port>", addr)
}

// checkOneIP checks that addr is a host:port whose host is one IP
// address: not a name, not unspecified (0.0.0.0, ::, every interface),
// not multicast.
func checkOneIP(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%q: want ip:port, like 198.18.0.2:5001", addr)
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Errorf("%q: want one IP address of this machine, not a name or every interface: the API has no TLS", addr)
	}
	return nil
}

// Route is one route of the API.
type Route struct {
	Method string
	// Path is the path pattern, with {name} wildcards, as in OpenAPI.
	Path string
	// Public routes need no token.
	Public bool
}

// String prints "GET /v1/id".
func (r Route) String() string { return r.Method + " " + r.Path }

// route is a Route and its handler.
type route struct {
	Route
	handle func(*Server, http.ResponseWriter, *http.Request)
}

// routeTable is the one list of the API's routes: Server registers it,
// Routes exports it, and the OpenAPI test compares it with the file.
func routeTable() []route {
	return []route{
		{Route{"GET", "/healthz", true}, (*Server).health},
		{Route{"GET", "/v1/id", false}, (*Server).identity},
		{Route{"GET", "/v1/peers", false}, (*Server).peers},
		{Route{"POST", "/v1/peers", false}, (*Server).connect},
		{Route{"POST", "/v1/offers", false}, (*Server).addOffer},
		{Route{"GET", "/v1/offers", false}, (*Server).offers},
		{Route{"DELETE", "/v1/offers/{key}", false}, (*Server).withdrawOffer},
		{Route{"GET", "/v1/book", false}, (*Server).book},
		{Route{"GET", "/metrics", false}, (*Server).metrics},
		{Route{"POST", "/v1/appliances", false}, (*Server).importAppliance},
		{Route{"GET", "/v1/appliances", false}, (*Server).listAppliances},
		{Route{"POST", "/v1/appliances/gc", false}, (*Server).gcAppliances},
		{Route{"GET", "/v1/appliances/{cid}", false}, (*Server).getAppliance},
		{Route{"DELETE", "/v1/appliances/{cid}", false}, (*Server).removeAppliance},
		{Route{"POST", "/v1/appliances/{cid}/fetch", false}, (*Server).fetchAppliance},
		{Route{"GET", "/v1/appliances/{cid}/content", false}, (*Server).applianceContent},
		{Route{"POST", "/v1/appliances/{cid}/pin", false}, (*Server).pinAppliance},
		{Route{"POST", "/v1/offers/{key}/pause", false}, (*Server).pauseOffer},
		{Route{"POST", "/v1/offers/{key}/resume", false}, (*Server).resumeOffer},
		{Route{"POST", "/v1/leases", false}, (*Server).newLease},
		{Route{"GET", "/v1/leases", false}, (*Server).listLeases},
		{Route{"GET", "/v1/leases/{id}", false}, (*Server).getLease},
		{Route{"DELETE", "/v1/leases/{id}", false}, (*Server).endLease},
		{Route{"POST", "/v1/leases/{id}/renew", false}, (*Server).renewLease},
		{Route{"GET", "/v1/instances", false}, (*Server).instances},
		{Route{"GET", "/v1/deny", false}, (*Server).listDenied},
		{Route{"POST", "/v1/deny", false}, (*Server).deny},
		{Route{"DELETE", "/v1/deny/{peer}", false}, (*Server).allow},
		{Route{"GET", "/v1/backup", false}, (*Server).backup},
		{Route{"GET", "/v1/leases/{id}/receipts", false}, (*Server).listReceipts},
		{Route{"GET", "/v1/settlements", false}, (*Server).listSettlements},
		{Route{"GET", "/v1/settlements/{lease}", false}, (*Server).getSettlement},
		{Route{"GET", "/v1/balance", false}, (*Server).balance},
		{Route{"GET", "/v1/invoice", false}, (*Server).invoice},
	}
}

// Routes lists every route the server serves.
func Routes() []Route {
	t := routeTable()
	out := make([]Route, len(t))
	for i, r := range t {
		out[i] = r.Route
	}
	return out
}

// Server is the API's HTTP server.
type Server struct {
	cfg     Config
	b       Backend
	log     *slog.Logger
	handler http.Handler
	promh   http.Handler
	tokenH  [sha256.Size]byte

	mu     sync.Mutex // guards srv, addr, closed
	srv    *http.Server
	addr   string
	closed bool
	wg     sync.WaitGroup
}

// New makes a server for b. It does not listen until Start.
func New(cfg Config, b Backend) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxApplianceBytes == 0 {
		cfg.MaxApplianceBytes = DefaultMaxApplianceBytes
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, b: b, log: log, tokenH: sha256.Sum256([]byte(cfg.Token))}
	s.promh = promhttp.HandlerFor(b.Gatherer(), promhttp.HandlerOpts{ErrorLog: slogPrinter{log}})

	mux := http.NewServeMux()
	// byPath answers "which methods does this path have?" for 405s.
	byPath := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range routeTable() {
		h := s.wrap(rt)
		mux.Handle(rt.Method+" "+rt.Path, h)
		if _, ok := allowed[rt.Path]; !ok {
			byPath.Handle(rt.Path, http.NotFoundHandler())
		}
		allowed[rt.Path] = append(allowed[rt.Path], rt.Method)
	}
	mux.Handle("/", s.wrap(route{Route{"", "/", false}, func(s *Server, w http.ResponseWriter, r *http.Request) {
		if _, pat := byPath.Handler(r); pat != "" {
			w.Header().Set("Allow", strings.Join(allowed[pat], ", "))
			s.writeError(w, r, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				"%s %s: method not allowed: this path takes %s", r.Method, r.URL.Path, strings.Join(allowed[pat], ", ")))
			return
		}
		s.writeError(w, r, errorf(http.StatusNotFound, CodeNotFound,
			"no route %s %s: see docs/openapi.yaml for the API's routes", r.Method, r.URL.Path))
	}}))
	s.handler = mux
	return s
}

// Handler returns the server's HTTP handler, for tests and for mounting
// the API in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on the configured address and serves until Close. It
// refuses an address off loopback unless the config's OffLoopback allows
// one.
func (s *Server) Start(ctx context.Context) error {
	cfg := s.cfg
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("api: start: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("api: start: server is closed")
	}
	if s.srv != nil {
		return errors.New("api: start: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w (is another node using this port? pick another with --api, or port 0)", cfg.Addr, err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	srv := s.srv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api: serve", "addr", s.addr, "err", err)
		}
	}()
	s.log.Info("api listening", "addr", s.addr)
	return nil
}

// Addr is the address the server listens on, once started: with port 0 in
// the config, the port actually picked.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops the server: it stops accepting, lets requests in flight
// finish for up to the shutdown timeout, then cuts the rest off. It is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv := s.srv
	s.mu.Unlock()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		if err = srv.Shutdown(ctx); err != nil {
			err = srv.Close()
		}
	}
	s.wg.Wait()
	return err
}

// wrap adds what every route gets: panic recovery, a request log line and,
// unless the route is public, the token check.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("api: handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p)
				if sw.status == 0 {
					s.writeError(sw, r, errorf(http.StatusInternalServerError, CodeInternal, "internal error: the node's log has the details"))
				}
			}
			s.log.Debug("api request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(start))
		}()
		if !rt.Public && !s.authorized(r) {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="spotmesh"`)
			s.writeError(sw, r, errorf(http.StatusUnauthorized, CodeUnauthorized,
				"missing or wrong API token: send the header 'Authorization: Bearer <token>' with the token in the node's home, <home>/api.token"))
			return
		}
		rt.handle(s, sw, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	// Comparing fixed-length hashes keeps the time independent of the
	// token's length as well as its content.
	return subtle.ConstantTimeCompare(got[:], s.tokenH[:]) == 1
}

// statusWriter remembers the status written, for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// slogPrinter adapts a slog.Logger to promhttp's Println logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("api: metrics", "err", fmt.Sprint(v...)) }
