package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/api/apitest"
)

const specPath = "../../docs/openapi.yaml"
const testBase = "http://127.0.0.1:5001"

func loadSpec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", specPath, err)
	}
	doc.Servers = openapi3.Servers{{URL: testBase}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// TestOpenAPIRoutes: every route the server registers is in the file, and
// every operation in the file is a route; public routes are exactly those
// with an empty security list.
func TestOpenAPIRoutes(t *testing.T) {
	doc, _ := loadSpec(t)
	inDoc := map[string]bool{}
	publicInDoc := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			k := method + " " + path
			inDoc[k] = true
			publicInDoc[k] = op.Security != nil && len(*op.Security) == 0
		}
	}
	inCode := map[string]bool{}
	for _, r := range api.Routes() {
		k := r.String()
		inCode[k] = true
		if !inDoc[k] {
			t.Errorf("route %s is served but not in %s", k, specPath)
			continue
		}
		if publicInDoc[k] != r.Public {
			t.Errorf("route %s: public %v in code, %v in %s", k, r.Public, publicInDoc[k], specPath)
		}
	}
	for k := range inDoc {
		if !inCode[k] {
			t.Errorf("%s documents %s, which the server does not serve", specPath, k)
		}
	}
}

type apiCase struct {
	name   string
	method string
	target string // path and query
	body   string
	// bodyFn, when set, makes the body from the case's fake.
	bodyFn func(*apitest.Fake) string
	ctype  string // default application/json when body is set; "-" sends none
	token  string // "" means the right token; "-" means none
	header map[string]string
	setup  func(*apitest.Fake)
	// setupT runs in the case's own test, for what needs its cleanup
	// (an appliance service).
	setupT func(*testing.T, *apitest.Fake)
	// config changes the server's config.
	config func(*api.Config)

	wantStatus int
	wantCode   string // for errors
	// reqInvalid: the file itself refuses this request (schema or security).
	reqInvalid bool
	check      func(t *testing.T, body []byte, f *apitest.Fake)
}

const goodSpec = `{"region":"eu-de","hardware":{"profile":"c4m8","vcpu":4,"memory":8589934592,"disk":42949672960,"arch":"amd64"},
 "slots":10,"price":{"micro":40000,"currency":"USD"},"min_lease":"1m","max_lease":"72h","renewable":true,
 "formats":["bundle"],"max_appliance_size":21474836480,"receipt_interval":"1m","payment_grace":"5m","ttl":"10m","until":"2026-04-01T00:00:00Z"}`

func specWith(t *testing.T, change func(m map[string]any)) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(goodSpec), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	b, _ := json.Marshal(m)
	return string(b)
}

func addedOffer(f *apitest.Fake) {
	spec := apitest.Spec("mine", "eu-de", 4, 40000)
	if _, err := f.AddOffer(context.Background(), spec); err != nil {
		panic(err)
	}
}

func apiCases(t *testing.T) []apiCase {
	hw := func(k string, v any) func(m map[string]any) {
		return func(m map[string]any) { m["hardware"].(map[string]any)[k] = v }
	}
	set := func(k string, v any) func(m map[string]any) { return func(m map[string]any) { m[k] = v } }
	del := func(k string) func(m map[string]any) { return func(m map[string]any) { delete(m, k) } }
	return []apiCase{
		{name: "health", method: "GET", target: "/healthz", token: "-", wantStatus: 200},
		{name: "health with a wrong token", method: "GET", target: "/healthz", token: "Bearer nope", wantStatus: 200},
		{name: "id", method: "GET", target: "/v1/id", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.IDResponse
			mustJSON(t, b, &r)
			if r.PeerID != f.ID || r.Version != "test" || !r.Started.Equal(f.Now) {
				t.Errorf("id = %+v", r)
			}
		}},
		{name: "peers", method: "GET", target: "/v1/peers", wantStatus: 200, setup: func(f *apitest.Fake) {
			_, id := apitest.NewKey(t)
			f.SetPeers(append(f.Peers(), api.PeerInfo{ID: id}))
		}, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if !strings.Contains(string(b), `"latency":"3ms"`) || !strings.Contains(string(b), `"addrs":[]`) {
				t.Errorf("peers = %s", b)
			}
		}},
		{name: "connect", method: "POST", target: "/v1/peers", body: `{"addr":"/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"}`, wantStatus: 200},
		{name: "connect, bad multiaddr", method: "POST", target: "/v1/peers", body: `{"addr":"127.0.0.1:4002"}`, wantStatus: 400, wantCode: api.CodeBadRequest},
		{name: "connect, unknown field", method: "POST", target: "/v1/peers", body: `{"addr":"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx","adr":1}`, wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "connect, peer down", method: "POST", target: "/v1/peers", body: `{"addr":"/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"}`,
			setup: func(f *apitest.Fake) { f.SetConnectErr(errors.New("dial backoff")) }, wantStatus: 502, wantCode: api.CodePeerUnreachable},
		{name: "connect, timeout", method: "POST", target: "/v1/peers", body: `{"addr":"/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx"}`,
			setup: func(f *apitest.Fake) { f.SetConnectErr(context.DeadlineExceeded) }, wantStatus: 504, wantCode: api.CodeTimeout},
		{name: "add offer", method: "POST", target: "/v1/offers", body: goodSpec, wantStatus: 201, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var st api.OfferStatus
			mustJSON(t, b, &st)
			if st.Key != "c4m8" || st.Current == nil || st.Current.PriceText != "0.04USD/h" || st.CID == "" || st.Spec.Until.IsZero() {
				t.Errorf("status = %s", b)
			}
		}},
		{name: "add offer, minimal", method: "POST", target: "/v1/offers", wantStatus: 201,
			body: `{"region":"eu","hardware":{"profile":"p","vcpu":1,"memory":1},"price":{"micro":1,"currency":"EUR"},"max_lease":"1h"}`},
		{name: "add offer, unknown field", method: "POST", target: "/v1/offers", body: specWith(t, set("colour", "red")), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage(`unknown field "colour"`)},
		{name: "add offer, unknown nested field", method: "POST", target: "/v1/offers", body: specWith(t, hw("cpu", 4)), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage(`unknown field "hardware.cpu"`)},
		{name: "add offer, field in the wrong case", method: "POST", target: "/v1/offers", body: specWith(t, set("Region", "eu")), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage(`unknown field "Region"`)},
		{name: "add offer, negative vcpu", method: "POST", target: "/v1/offers", body: specWith(t, hw("vcpu", -1)), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("field hardware.vcpu: got number -1: want a whole number from 0 to 4294967295")},
		{name: "add offer, zero vcpu", method: "POST", target: "/v1/offers", body: specWith(t, hw("vcpu", 0)), wantStatus: 400, wantCode: api.CodeBadRequest,
			check: wantMessage("hardware.vcpu")},
		{name: "add offer, memory as text", method: "POST", target: "/v1/offers", body: specWith(t, hw("memory", "8GiB")), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("field hardware.memory")},
		{name: "add offer, bad duration", method: "POST", target: "/v1/offers", body: specWith(t, set("max_lease", "3 days")), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage(`field max_lease: got string "3 days": want a Go duration string like "72h"`)},
		{name: "add offer, min over max", method: "POST", target: "/v1/offers", body: specWith(t, set("min_lease", "100h")), wantStatus: 400, wantCode: api.CodeBadRequest,
			check: wantMessage("min_lease")},
		{name: "add offer, bad time", method: "POST", target: "/v1/offers", body: specWith(t, set("until", "tomorrow")), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage(`field until: "tomorrow": want an RFC 3339 time`)},
		{name: "add offer, price as text", method: "POST", target: "/v1/offers", body: specWith(t, set("price", "0.04USD/h")), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("field price")},
		{name: "add offer, bad currency", method: "POST", target: "/v1/offers", body: specWith(t, set("price", map[string]any{"micro": 1, "currency": "usd"})), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("currency")},
		{name: "add offer, no region", method: "POST", target: "/v1/offers", body: specWith(t, del("region")), wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("field region: required")},
		{name: "add offer, gpus without model", method: "POST", target: "/v1/offers", body: specWith(t, hw("gpus", 2)), wantStatus: 400, wantCode: api.CodeBadRequest,
			check: wantMessage("hardware.gpus")},
		{name: "add offer, not JSON", method: "POST", target: "/v1/offers", body: `{"region":`, wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("not valid JSON")},
		{name: "add offer, two values", method: "POST", target: "/v1/offers", body: goodSpec + goodSpec, wantStatus: 400, wantCode: api.CodeBadRequest,
			check: wantMessage("more than one JSON value")}, // kin-openapi reads the first value only
		{name: "add offer, an array", method: "POST", target: "/v1/offers", body: `[1]`, wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true,
			check: wantMessage("want a JSON object")},
		{name: "add offer, form body", method: "POST", target: "/v1/offers", body: "region=eu", ctype: "application/x-www-form-urlencoded", wantStatus: 415, wantCode: api.CodeUnsupportedMedia, reqInvalid: true},
		{name: "add offer, too large", method: "POST", target: "/v1/offers", body: `{"region":"` + strings.Repeat("e", api.DefaultMaxBodyBytes) + `"}`, wantStatus: 413, wantCode: api.CodeTooLarge, reqInvalid: true},
		{name: "add offer, refused by the node", method: "POST", target: "/v1/offers", body: goodSpec,
			setup: func(f *apitest.Fake) { f.SetAddErr(errors.New("disk full")) }, wantStatus: 500, wantCode: api.CodeInternal},
		{name: "list offers, none", method: "GET", target: "/v1/offers", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if strings.TrimSpace(string(b)) != `{"offers":[]}` {
				t.Errorf("offers = %s", b)
			}
		}},
		{name: "list offers", method: "GET", target: "/v1/offers", setup: addedOffer, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.OffersResponse
			mustJSON(t, b, &r)
			if len(r.Offers) != 1 || r.Offers[0].Key != "mine" || r.Offers[0].Current.Hardware.Memory != 8<<30 {
				t.Errorf("offers = %s", b)
			}
		}},
		{name: "withdraw", method: "DELETE", target: "/v1/offers/mine", setup: addedOffer, wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var st api.OfferStatus
			mustJSON(t, b, &st)
			if !st.Withdrawn || !st.Current.Withdrawn || !st.NextPublish.IsZero() {
				t.Errorf("status = %s", b)
			}
		}},
		{name: "withdraw twice", method: "DELETE", target: "/v1/offers/mine", wantStatus: 409, wantCode: api.CodeConflict, setup: func(f *apitest.Fake) {
			addedOffer(f)
			f.WithdrawOffer(context.Background(), "mine")
		}},
		{name: "withdraw unknown", method: "DELETE", target: "/v1/offers/nope", wantStatus: 404, wantCode: api.CodeNotFound, check: wantMessage(`no offer with key "nope"`)},
		{name: "withdraw bad key", method: "DELETE", target: "/v1/offers/a%20b", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "book", method: "GET", target: "/v1/book", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.BookResponse
			mustJSON(t, b, &r)
			if r.Total != 3 || len(r.Offers) != 3 || r.Offers[0].ReceivedAt.IsZero() || r.Offers[0].OfferID != r.Offers[0].Seller.String()+"/a" {
				t.Errorf("book = %s", b)
			}
		}},
		{name: "book, every filter", method: "GET", wantStatus: 200,
			target: "/v1/book?region=eu&vcpu=%3E%3D4&mem=8GiB-32GiB&disk=%3C%3D1TB&gpus=%3E0&gpu_model=A100&profile=c4m8&arch=amd64&seller=12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx&max_price=0.05USD%2Fh&min_slots=1&include_paused=true&sort=newest&limit=5",
			check: func(t *testing.T, b []byte, f *apitest.Fake) {
				q := f.LastQuery()
				if q.RegionPrefix != "eu" || q.VCPU.Min != 4 || q.Memory.Min != 8<<30 || q.Memory.Max != 32<<30 || q.Disk.Max != 1e12 ||
					q.GPUs.Min != 1 || q.MaxPrice.Micro != 50000 || q.Currency != "USD" || q.MinSlots != 1 || !q.IncludePaused || q.Sort != "newest" || q.Limit != 5 {
					t.Errorf("query = %+v", q)
				}
			}},
		{name: "book, vcpu range", method: "GET", target: "/v1/book?vcpu=3-5", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			var r api.BookResponse
			mustJSON(t, b, &r)
			if r.Total != 3 || len(r.Offers) != 1 || r.Offers[0].Hardware.VCPU != 4 {
				t.Errorf("book = %s", b)
			}
		}},
		{name: "book, bad range", method: "GET", target: "/v1/book?vcpu=lots", wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage(`query parameter vcpu "lots": want a count or range`)},
		{name: "book, bad sort", method: "GET", target: "/v1/book?sort=cheap", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "book, bad limit", method: "GET", target: "/v1/book?limit=0", wantStatus: 400, wantCode: api.CodeBadRequest, reqInvalid: true},
		{name: "book, unknown parameter", method: "GET", target: "/v1/book?cpu=4", wantStatus: 400, wantCode: api.CodeBadRequest, check: wantMessage(`cpu "4": unknown parameter`)},
		{name: "metrics", method: "GET", target: "/metrics", wantStatus: 200, check: func(t *testing.T, b []byte, f *apitest.Fake) {
			if !strings.Contains(string(b), "spotmesh_test_total 1") {
				t.Errorf("metrics = %s", b)
			}
		}},
	}
}

func wantMessage(sub string) func(t *testing.T, b []byte, f *apitest.Fake) {
	return func(t *testing.T, b []byte, f *apitest.Fake) {
		t.Helper()
		var e api.Error
		mustJSON(t, b, &e)
		if !strings.Contains(e.Message, sub) {
			t.Errorf("error %q does not say %q", e.Message, sub)
		}
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// unauthorizedCases: every route but the public ones refuses a missing,
// wrong or malformed token.
func unauthorizedCases() []apiCase {
	var cs []apiCase
	for _, r := range api.Routes() {
		if r.Public {
			continue
		}
		target := strings.NewReplacer("{key}", "k1", "{cid}", testApplianceCID, "{id}", testApplianceCID, "{lease}", testApplianceCID,
			"{peer}", "12D3KooWGzBvjZ8RsGdLyqH5Rz6q3H2Wbqfkp5bn7oZcTn8uHkTx").Replace(r.Path)
		for _, tok := range []string{"-", "Bearer wrong-token-0123456789abcdef", "Basic " + apitest.Token, "Bearer", "bearer " + apitest.Token + "x"} {
			c := apiCase{name: r.String() + " token " + tok, method: r.Method, target: target, token: tok,
				wantStatus: 401, wantCode: api.CodeUnauthorized, reqInvalid: true}
			if r.Method == "POST" {
				c.body = `{}`
			}
			cs = append(cs, c)
		}
	}
	return cs
}

// TestOpenAPIConformance runs each case against a fake backend and checks
// the request and the answer against docs/openapi.yaml, and that every
// route has at least one successful case.
func TestOpenAPIConformance(t *testing.T) {
	_, router := loadSpec(t)
	registerNDJSON()
	served := map[string]bool{}
	cases := append(append(append(apiCases(t), applianceCases(t)...), leaseCases(t)...), backupCases(t)...)
	cases = append(cases, settleCases(t)...)
	for _, c := range append(cases, unauthorizedCases()...) {
		t.Run(c.name, func(t *testing.T) {
			f := apitest.NewFake(t)
			if c.setupT != nil {
				c.setupT(t, f)
			}
			if c.setup != nil {
				c.setup(f)
			}
			if c.bodyFn != nil {
				c.body = c.bodyFn(f)
			}
			cfg := api.Config{Addr: "127.0.0.1:0", Token: apitest.Token}
			if c.config != nil {
				c.config(&cfg)
			}
			s := api.New(cfg, f)
			newReq := func() *http.Request {
				var body io.Reader
				if c.body != "" {
					body = strings.NewReader(c.body)
				}
				req := httptest.NewRequest(c.method, testBase+c.target, body)
				if c.body != "" && c.ctype != "-" {
					ct := c.ctype
					if ct == "" {
						ct = "application/json"
					}
					req.Header.Set("Content-Type", ct)
				}
				for k, v := range c.header {
					req.Header.Set(k, v)
				}
				switch c.token {
				case "":
					req.Header.Set("Authorization", "Bearer "+apitest.Token)
				case "-":
				default:
					req.Header.Set("Authorization", c.token)
				}
				return req
			}

			req := newReq()
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("%s %s is not in %s: %v", c.method, c.target, specPath, err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: checkBearer}}
			err = openapi3filter.ValidateRequest(context.Background(), in)
			if c.reqInvalid && err == nil {
				t.Errorf("the file accepts this request, the server refuses it: make the file stricter")
			}
			if !c.reqInvalid && err != nil {
				t.Errorf("the file refuses this request: %v", err)
			}

			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, newReq())
			res := rec.Result()
			body := rec.Body.Bytes()
			if res.StatusCode != c.wantStatus {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, c.wantStatus, body)
			}
			if c.wantCode != "" {
				var e api.Error
				mustJSON(t, body, &e)
				if e.Code != c.wantCode || e.Message == "" {
					t.Errorf("error body %s, want code %s and a message", body, c.wantCode)
				}
			}
			if res.StatusCode == 401 && res.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			in.Request = newReq()
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
				Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
				t.Errorf("the answer does not match %s: %v\nbody: %s", specPath, err, body)
			}
			if c.check != nil {
				c.check(t, body, f)
			}
			if res.StatusCode < 300 {
				served[c.method+" "+route.Path] = true
			}
		})
	}
	var missing []string
	for _, r := range api.Routes() {
		if !served[r.String()] {
			missing = append(missing, r.String())
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no successful case for %v: add one to apiCases", missing)
	}
}

func checkBearer(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.RequestValidationInput.Request.Header.Get("Authorization") != "Bearer "+apitest.Token {
		return errors.New("wrong or missing bearer token")
	}
	return nil
}
