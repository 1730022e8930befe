package refcloud_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/node/runtime/drivertest"
	httpdriver "github.com/spotmesh/spotmesh/node/runtime/http"
	"github.com/spotmesh/spotmesh/testnet/refcloud"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const specPath = "../../docs/driver-http.yaml"

// contract loads the OpenAPI file, checks it, and returns a router for it.
func contract(t testing.TB) routers.Router {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", specPath, err)
	}
	doc.Servers = nil // match any host
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return router
}

// validating checks every request to h and every answer from it against
// the contract, failing t on a mismatch.
func validating(t *testing.T, router routers.Router, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		route, params, err := router.FindRoute(r)
		if err != nil {
			t.Errorf("%s %s is not in the contract: %v", r.Method, r.URL.Path, err)
			h.ServeHTTP(w, r)
			return
		}
		opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
		in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
		if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
			t.Errorf("request %s %s against the contract: %v", r.Method, r.URL.Path, err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		out := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Options: opts,
		}
		if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
			t.Errorf("answer %d to %s %s against the contract: %v\n%s", rec.Code, r.Method, r.URL.Path, err, rec.Body.Bytes())
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

func testLog(t testing.TB) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// newCloud starts a reference cloud on loopback, behind the contract
// check, closed when t ends.
func newCloud(t *testing.T, token string) (*refcloud.Cloud, string) {
	t.Helper()
	cfg := refcloud.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Token = token
	cfg.StopGrace = 2 * time.Second
	c, err := refcloud.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(validating(t, contract(t), c))
	t.Cleanup(func() {
		c.Close()
		srv.Close()
	})
	return c, srv.URL
}

func newDriver(t *testing.T, url, token string) *httpdriver.Driver {
	t.Helper()
	cfg := httpdriver.DefaultConfig()
	cfg.URL, cfg.Token = url, token
	d, err := httpdriver.New(cfg, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestConformance: the http driver against the reference cloud passes the
// same lifecycle suite as the process driver, with every request and
// answer checked against docs/driver-http.yaml.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	clouds := map[runtime.Driver]*refcloud.Cloud{}
	drivertest.Run(t, func(t *testing.T) runtime.Driver {
		c, url := newCloud(t, "s3cret")
		d := newDriver(t, url, "s3cret")
		if _, err := d.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		clouds[d] = c
		mu.Unlock()
		return d
	}, drivertest.WithPID(func(d runtime.Driver, leaseID string) int {
		mu.Lock()
		defer mu.Unlock()
		return clouds[d].PID(leaseID)
	}))
}

// TestImportsNothingOfNode: the reference cloud is written from the
// contract alone.
func TestImportsNothingOfNode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/spotmesh/spotmesh/") && p != "github.com/spotmesh/spotmesh/testnet/refcloud" {
			t.Errorf("refcloud depends on %s: it may import nothing of spotmesh", p)
		}
	}
}

func TestAuth(t *testing.T) {
	_, url := newCloud(t, "s3cret")
	for _, c := range []struct{ name, token string }{{"none", ""}, {"wrong", "guess"}} {
		d := newDriver(t, url, c.token)
		_, err := d.Capacity(context.Background())
		if !errors.Is(err, runtime.ErrUnavailable) || !strings.Contains(err.Error(), "token") {
			t.Errorf("%s token: %v, want ErrUnavailable about the token", c.name, err)
		}
		d.Close()
	}
	d := newDriver(t, url, "s3cret")
	defer d.Close()
	if _, err := d.Capacity(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestVerification: a gateway that sends bytes other than the CID names
// fails the instance, whatever it sends.
func TestVerification(t *testing.T) {
	gw := drivertest.NewGateway(t)
	echo := drivertest.Echo(t)
	good := gw.Add(t, echo)
	other := gw.AddBytes(t, "other", []byte("#!/bin/sh\necho other appliance\n"))
	fetch := func(path string) []byte {
		resp, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("gateway %s: %v %s", path, err, resp.Status)
		}
		return b
	}
	car := fetch("/ipfs/" + good.CID.String() + "?format=car")
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"a flipped byte", func() []byte { b := bytes.Clone(car); b[len(b)-100] ^= 0xff; return b }(), "does not match"},
		{"another DAG", fetch("/ipfs/" + other.CID.String() + "?format=car"), "roots"},
		{"blocks left out", car[:len(car)/2], "does not match"},
		{"plain bytes", fetch("/ipfs/" + good.CID.String()), "not a CAR"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/vnd.ipld.car")
				w.Write(c.body)
			}))
			defer bad.Close()
			_, url := newCloud(t, "")
			d := newDriver(t, url, "")
			defer d.Close()
			spec := drivertest.Spec(drivertest.LeaseID(), good)
			spec.Appliance.GatewayURL = bad.URL
			if _, err := d.Provision(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			in := drivertest.WaitState(t, d, spec.LeaseID, 30*time.Second, runtime.StateFailed)
			if !strings.Contains(in.Reason, c.want) {
				t.Errorf("reason %q, want it to say %q", in.Reason, c.want)
			}
		})
	}
}

// TestCloseStopsInstances: the reference cloud's instances end with it.
func TestCloseStopsInstances(t *testing.T) {
	gw := drivertest.NewGateway(t)
	app := gw.Add(t, drivertest.Echo(t))
	c, url := newCloud(t, "")
	d := newDriver(t, url, "")
	defer d.Close()
	spec := drivertest.Spec(drivertest.LeaseID(), app)
	if _, err := d.Provision(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	in := drivertest.WaitState(t, d, spec.LeaseID, 30*time.Second, runtime.StateRunning)
	pid := c.PID(spec.LeaseID)
	if pid == 0 {
		t.Fatal("no PID")
	}
	c.Close()
	if _, err := os.Stat("/proc/" + itoa(pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("process %d of %s survived Close: %v", pid, in.Endpoint, err)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
