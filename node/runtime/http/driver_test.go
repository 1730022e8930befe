package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/node/runtime"
	httpdriver "github.com/spotmesh/spotmesh/node/runtime/http"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var appCID = cid.MustParse("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")

func instanceJSON(state string) string {
	return `{"lease_id":"l1","state":"` + state + `","endpoint":"10.0.0.9:4000","exit_code":-1,"created":"2030-01-01T00:00:00Z",
	"started":"2030-01-01T00:00:01Z","limits":{"vcpu":1,"memory":1048576,"disk":1048576},
	"enforced":[{"limit":"memory","mechanism":"cloud","control":"flavour","value":"small"}],"limit_notes":[],
	"usage":{"cpu_ms":1500,"wall_ms":60000,"memory_peak":4096,"bytes_in":10,"bytes_out":20,"network":true}}`
}

// stub serves canned answers and records the requests.
type stub struct {
	mu       sync.Mutex
	requests []*http.Request
	bodies   []string
	answer   func(r *http.Request, n int) (int, string)
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests = append(s.requests, r)
	s.bodies = append(s.bodies, string(b))
	n := len(s.requests)
	s.mu.Unlock()
	status, body := s.answer(r, n)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func newDriver(t *testing.T, url string, mod func(*httpdriver.Config)) *httpdriver.Driver {
	t.Helper()
	cfg := httpdriver.DefaultConfig()
	cfg.URL = url
	cfg.TerminatePoll = 5 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	d, err := httpdriver.New(cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func serve(t *testing.T, answer func(r *http.Request, n int) (int, string)) (*stub, string) {
	s := &stub{answer: answer}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func spec() runtime.Spec {
	return runtime.Spec{
		LeaseID:   "l1",
		Appliance: runtime.Appliance{CID: appCID, Size: 1234, Format: "bundle", GatewayURL: "http://127.0.0.1:8081"},
		Limits:    runtime.Limits{VCPU: 1, Memory: 1 << 20, Disk: 1 << 20},
		AccessKey: "key",
		Ends:      time.Date(2030, 1, 1, 2, 0, 0, 0, time.FixedZone("CET", 3600)),
		Env:       map[string]string{"A": "b"},
	}
}

func TestProvisionRequest(t *testing.T) {
	s, url := serve(t, func(*http.Request, int) (int, string) { return 201, instanceJSON("provisioning") })
	d := newDriver(t, url, func(c *httpdriver.Config) { c.Token = "tok"; c.GatewayURL = "http://10.0.0.5:8081/" })
	in, err := d.Provision(context.Background(), spec())
	if err != nil {
		t.Fatal(err)
	}
	if in.State != runtime.StateProvisioning || in.Endpoint != "10.0.0.9:4000" || in.Usage.CPU != 1500*time.Millisecond ||
		in.Usage.Wall != time.Minute || !in.Usage.Network || in.ExitCode != -1 || len(in.Enforced) != 1 || in.Started.IsZero() || !in.Ended.IsZero() {
		t.Errorf("instance %+v", in)
	}
	r := s.requests[0]
	if r.Method != http.MethodPut || r.URL.Path != "/v1/instances/l1" || r.Header.Get("Authorization") != "Bearer tok" {
		t.Errorf("request %s %s auth %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(s.bodies[0]), &body); err != nil {
		t.Fatal(err)
	}
	app := body["appliance"].(map[string]any)
	if app["url"] != "http://10.0.0.5:8081/ipfs/"+appCID.String() || app["cid"] != appCID.String() || app["size"] != 1234.0 {
		t.Errorf("appliance %v: want the configured gateway's /ipfs/<cid>", app)
	}
	if body["ends"] != "2030-01-01T01:00:00Z" || body["access_key"] != "key" {
		t.Errorf("body %v: want ends in UTC and the access key", body)
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		body   string
		want   error
		words  string
	}{
		{"bad request", 400, `{"error":"limits: want 1 vCPU","code":"bad_request"}`, runtime.ErrInvalid, "want 1 vCPU"},
		{"not found", 404, `{"error":"no instance","code":"not_found"}`, runtime.ErrNotFound, "no instance"},
		{"exists", 409, `{"error":"has one","code":"exists"}`, runtime.ErrExists, "has one"},
		{"no capacity", 409, `{"error":"full","code":"no_capacity"}`, runtime.ErrNoCapacity, "full"},
		{"appliance", 422, `{"error":"qcow2 only","code":"appliance_refused"}`, runtime.ErrAppliance, "qcow2 only"},
		{"token", 401, `{"error":"bad token","code":"unauthorized"}`, runtime.ErrUnavailable, "Token"},
		{"internal", 500, `{"error":"boom","code":"internal"}`, runtime.ErrUnavailable, "boom"},
		{"not json 404", 404, `nothing here`, runtime.ErrNotFound, "nothing here"},
		{"not json 502", 502, `<html>bad gateway</html>`, runtime.ErrUnavailable, "bad gateway"},
		{"unknown state", 201, instanceJSON("paused"), runtime.ErrUnavailable, "paused"},
		{"not the contract", 201, `[1,2]`, runtime.ErrUnavailable, "not the contract"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, url := serve(t, func(*http.Request, int) (int, string) { return c.status, c.body })
			d := newDriver(t, url, nil)
			_, err := d.Provision(context.Background(), spec())
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.words) {
				t.Errorf("%v, want %v saying %q", err, c.want, c.words)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	d := newDriver(t, url, nil)
	if _, err := d.List(context.Background()); !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("list from a closed cloud: %v", err)
	}
}

// TestTerminateAccepted: a 202 DELETE is followed by GETs until the
// instance has ended.
func TestTerminateAccepted(t *testing.T) {
	s, url := serve(t, func(r *http.Request, n int) (int, string) {
		switch {
		case r.Method == http.MethodDelete:
			return 202, instanceJSON("running")
		case n < 4:
			return 200, instanceJSON("running")
		}
		return 200, strings.Replace(instanceJSON("terminated"), `"exit_code":-1`, `"exit_code":-1,"ended":"2030-01-01T00:01:01Z"`, 1)
	})
	d := newDriver(t, url, nil)
	in, err := d.Terminate(context.Background(), "l1")
	if err != nil || in.State != runtime.StateTerminated || in.Ended.IsZero() {
		t.Fatalf("terminate: %v %+v", err, in)
	}
	if len(s.requests) != 4 {
		t.Errorf("%d requests, want a DELETE and 3 GETs", len(s.requests))
	}
	// A cloud that never finishes: ctx ends the wait.
	_, url = serve(t, func(r *http.Request, n int) (int, string) {
		if r.Method == http.MethodDelete {
			return 202, instanceJSON("running")
		}
		return 200, instanceJSON("running")
	})
	d = newDriver(t, url, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d.Terminate(ctx, "l1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("terminate never done: %v", err)
	}
}

func TestCapacityAndList(t *testing.T) {
	_, url := serve(t, func(r *http.Request, n int) (int, string) {
		if r.URL.Path == "/v1/capacity" {
			return 200, `{"profiles":[{"profile":"c2m4","vcpu":2,"memory":4294967296,"disk":10737418240,"arch":"arm64","slots":3}],
			"total":{"vcpu":8,"memory":17179869184,"disk":107374182400,"instances":4},
			"free":{"vcpu":6,"memory":12884901888,"disk":96636764160,"instances":3},
			"utilization":{"instances":1,"cpu_ms":2500,"memory":1000}}`
		}
		return 200, `{"instances":[` + strings.Replace(instanceJSON("running"), `"l1"`, `"l2"`, 1) + `,` + instanceJSON("exited") + `]}`
	})
	d := newDriver(t, url, nil)
	c, err := d.Capacity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Profiles) != 1 || c.Profiles[0].Hardware.Profile != "c2m4" || c.Profiles[0].Hardware.Arch != "arm64" || c.Profiles[0].Slots != 3 ||
		c.Total.Instances != 4 || c.Free.VCPU != 6 || c.Utilization.CPU != 2500*time.Millisecond {
		t.Errorf("capacity %+v", c)
	}
	list, err := d.List(context.Background())
	if err != nil || len(list) != 2 || list[0].LeaseID != "l1" || list[1].LeaseID != "l2" || list[0].State != runtime.StateExited {
		t.Errorf("list %v %+v, want l1 exited then l2", err, list)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*httpdriver.Config)
		bad  string
	}{
		{"ok", func(c *httpdriver.Config) {}, ""},
		{"no url", func(c *httpdriver.Config) { c.URL = "" }, "URL"},
		{"not http", func(c *httpdriver.Config) { c.URL = "ftp://x" }, "URL"},
		{"gateway", func(c *httpdriver.Config) { c.GatewayURL = "10.0.0.1:8081" }, "GatewayURL"},
		{"timeout", func(c *httpdriver.Config) { c.Timeout = 0 }, "Timeout"},
	} {
		cfg := httpdriver.DefaultConfig()
		cfg.URL = "http://127.0.0.1:8090"
		c.mod(&cfg)
		err := cfg.Validate()
		if (err == nil) != (c.bad == "") || err != nil && (!errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Provision needs the gateway.
	_, url := serve(t, func(*http.Request, int) (int, string) { return 201, instanceJSON("provisioning") })
	d := newDriver(t, url, nil)
	s := spec()
	s.Appliance.GatewayURL = ""
	if _, err := d.Provision(context.Background(), s); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("provision without a gateway: %v", err)
	}
}
