package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
	"github.com/spotmesh/spotmesh/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startServer(t *testing.T, f *apitest.Fake) (*api.Server, *api.Client) {
	t.Helper()
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: apitest.Token}, f)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(s.Addr(), apitest.Token)
	t.Cleanup(func() {
		c.CloseIdleConnections()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, c
}

func TestStartRefusesOffLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:5001", "[::]:0", "example.com:80", "127.0.0.1", ""} {
		s := api.New(api.Config{Addr: addr, Token: apitest.Token}, apitest.NewFake(t))
		err := s.Start(context.Background())
		if err == nil {
			s.Close()
			t.Errorf("Start(%q) listens", addr)
			continue
		}
		if !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Start(%q): %v: does not say why", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0", "127.0.0.2:0"} {
		if err := api.CheckLoopback(addr); err != nil {
			t.Errorf("api.CheckLoopback(%q) = %v", addr, err)
		}
	}
}

func TestStartRefusesShortToken(t *testing.T) {
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: "short"}, apitest.NewFake(t))
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "token") {
		s.Close()
		t.Fatalf("Start with a short token: %v", err)
	}
}

func TestStartCloseIdempotent(t *testing.T) {
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: apitest.Token}, apitest.NewFake(t))
	if err := s.Close(); err != nil { // before Start
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start after Close works")
	}
	s2, _ := startServer(t, apitest.NewFake(t))
	if err := s2.Start(context.Background()); err == nil {
		t.Fatal("second Start works")
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", s2.Addr(), time.Second); err == nil {
		t.Fatal("port still open after Close")
	}
}

func TestPortInUse(t *testing.T) {
	s, _ := startServer(t, apitest.NewFake(t))
	s2 := api.New(api.Config{Addr: s.Addr(), Token: apitest.Token}, apitest.NewFake(t))
	err := s2.Start(context.Background())
	if err == nil {
		s2.Close()
		t.Fatal("two servers on one port")
	}
	if !strings.Contains(err.Error(), "--api") {
		t.Errorf("error %q gives no way out", err)
	}
}

func TestClientRoundTrip(t *testing.T) {
	f := apitest.NewFake(t)
	s, c := startServer(t, f)
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := c.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.PeerID != f.ID || id.APIAddr != s.Addr() {
		t.Errorf("identity %+v", id)
	}
	ps, err := c.Peers(ctx)
	if err != nil || len(ps) != 1 || ps[0].Latency.Std() != 3*time.Millisecond {
		t.Errorf("peers %+v, %v", ps, err)
	}
	cr, err := c.Connect(ctx, "/ip4/127.0.0.1/tcp/4002/p2p/"+f.ID.String())
	if err != nil || cr.PeerID != f.ID {
		t.Errorf("connect %+v, %v", cr, err)
	}
	spec := api.OfferSpec{Key: "k1", Region: "eu-de",
		Hardware: api.Hardware{Profile: "c4m8", VCPU: 4, Memory: 8 << 30, Disk: 40 << 30, Arch: "amd64"},
		Slots:    10, Price: protocol.Price{Micro: 40000, Currency: "USD"}, MaxLease: api.Duration(72 * time.Hour), Formats: []string{"bundle"}}
	st, err := c.AddOffer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if st.Key != "k1" || st.Current == nil || st.Current.Price != (protocol.Price{Micro: 40000, Currency: "USD"}) || st.Current.MaxLease.Std() != 72*time.Hour {
		t.Errorf("added %+v", st)
	}
	list, err := c.Offers(ctx)
	if err != nil || len(list) != 1 || list[0].CID != st.CID {
		t.Errorf("offers %+v, %v", list, err)
	}
	st, err = c.WithdrawOffer(ctx, "k1")
	if err != nil || !st.Withdrawn {
		t.Errorf("withdraw %+v, %v", st, err)
	}
	_, err = c.WithdrawOffer(ctx, "k2")
	var e *api.Error
	if !errors.As(err, &e) || e.Status != 404 || e.Code != api.CodeNotFound || !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("withdraw unknown: %v", err)
	}
	book, err := c.Book(ctx, api.BookQuery{VCPU: ">=4", Memory: ">=8GiB", MaxPrice: "0.1USD/h", Sort: "vcpu", Limit: 2})
	if err != nil || book.Total != 3 || len(book.Offers) != 2 {
		t.Errorf("book %+v, %v", book, err)
	}
	if q := f.LastQuery(); q.VCPU.Min != 4 || q.Memory.Min != 8<<30 || q.Sort != "vcpu" || q.Limit != 2 || q.MaxPrice.Micro != 100000 {
		t.Errorf("query %+v", q)
	}
	m, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(m, "spotmesh_test_total") {
		t.Errorf("metrics %q, %v", m, err)
	}
}

func TestClientErrors(t *testing.T) {
	f := apitest.NewFake(t)
	s, _ := startServer(t, f)
	ctx := context.Background()

	bad := api.NewClient(s.Addr(), "wrong-token")
	defer bad.CloseIdleConnections()
	_, err := bad.Identity(ctx)
	if !api.IsCode(err, api.CodeUnauthorized) || errors.Is(err, api.ErrUnreachable) {
		t.Errorf("wrong token: %v", err)
	}
	if err := bad.Health(ctx); err != nil {
		t.Errorf("health needs no token: %v", err)
	}

	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down := api.NewClient(addr, apitest.Token)
	defer down.CloseIdleConnections()
	_, err = down.Identity(ctx)
	if !errors.Is(err, api.ErrUnreachable) || !api.IsUnreachable(err) {
		t.Errorf("no node: %v", err)
	}
	var e *api.Error
	if errors.As(err, &e) {
		t.Errorf("no node is a refusal: %v", err)
	}

	// A cancelled context is neither.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = api.NewClient(s.Addr(), apitest.Token).Identity(cctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, api.ErrUnreachable) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	s, c := startServer(t, apitest.NewFake(t))
	_ = c
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/v2/nothing", 404, api.CodeNotFound, ""},
		{"PUT", "/v1/offers", 405, api.CodeMethodNotAllowed, "POST, GET"},
		{"POST", "/v1/id", 405, api.CodeMethodNotAllowed, "GET"},
		{"GET", "/v1/offers/k1", 405, api.CodeMethodNotAllowed, "DELETE"},
		{"PUT", "/v1/appliances", 405, api.CodeMethodNotAllowed, "POST, GET"},
		{"GET", "/v1/appliances/gc", 400, api.CodeBadRequest, ""}, // a CID named gc
		{"GET", "/v1/appliances/" + testApplianceCID + "/pin", 405, api.CodeMethodNotAllowed, "POST"},
		{"PUT", "/v1/appliances/" + testApplianceCID, 405, api.CodeMethodNotAllowed, "GET, DELETE"},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+s.Addr()+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+apitest.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		err = decodeBody(resp, &e)
		if resp.StatusCode != tc.status || e.Code != tc.code || err != nil || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d %+v allow %q (%v)", tc.method, tc.path, resp.StatusCode, e, resp.Header.Get("Allow"), err)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestPanicIs500(t *testing.T) {
	f := apitest.NewFake(t)
	s := api.New(api.Config{Addr: "127.0.0.1:0", Token: apitest.Token}, panicky{f})
	req, _ := http.NewRequest("GET", "/v1/peers", nil)
	req.Header.Set("Authorization", "Bearer "+apitest.Token)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"code":"internal"`) {
		t.Errorf("panic gives %d %s", rec.Code, rec.Body)
	}
}

type panicky struct{ *apitest.Fake }

func (panicky) Peers() []api.PeerInfo { panic("boom") }

func decodeBody(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
