package http

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	nethttp "net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/protocol"
)

var _ runtime.Driver = (*Driver)(nil)

// Config tunes a Driver. Start from DefaultConfig and set URL.
type Config struct {
	// URL is the cloud's base URL; the contract's paths (/v1/...) go
	// under it.
	URL string
	// Token, if set, is sent as a bearer token on every request.
	Token string
	// GatewayURL, if set, replaces the Spec's Appliance.GatewayURL: the
	// node's gateway as the cloud reaches it (the node knows its loopback
	// address; a cloud on another machine needs another).
	GatewayURL string
	// Timeout bounds one request.
	Timeout time.Duration
	// TerminatePoll is the period of polling an instance whose DELETE was
	// accepted (202) until it has ended.
	TerminatePoll time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Timeout: 30 * time.Second, TerminatePoll: 200 * time.Millisecond}
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("http driver config: %s = %v: %s: %w", field, v, want, runtime.ErrInvalid)
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("URL", fmt.Sprintf("%q", c.URL), "want the cloud's base URL, such as https://cloud.example:8443")
	}
	if c.GatewayURL != "" {
		if u, err := url.Parse(c.GatewayURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("GatewayURL", fmt.Sprintf("%q", c.GatewayURL), "want the node's gateway URL as the cloud reaches it, such as http://10.0.0.5:8081")
		}
	}
	if c.Timeout <= 0 {
		return bad("Timeout", c.Timeout, "want a positive duration such as 30s")
	}
	if c.TerminatePoll <= 0 {
		return bad("TerminatePoll", c.TerminatePoll, "want a positive duration such as 200ms")
	}
	return nil
}

// Driver drives a cloud through the REST contract of
// docs/driver-http.yaml.
type Driver struct {
	cfg  Config
	base string
	hc   *nethttp.Client
	log  *slog.Logger
}

// New makes a driver for the cloud at cfg.URL. hc may be nil for a client
// of its own.
func New(cfg Config, hc *nethttp.Client, log *slog.Logger) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		return nil, fmt.Errorf("http driver: New needs a logger: %w", runtime.ErrInvalid)
	}
	if hc == nil {
		hc = &nethttp.Client{Transport: nethttp.DefaultTransport.(*nethttp.Transport).Clone()}
	}
	return &Driver{cfg: cfg, base: strings.TrimRight(cfg.URL, "/"), hc: hc, log: log.With("driver", "http", "cloud", cfg.URL)}, nil
}

// Name implements runtime.Driver.
func (d *Driver) Name() string { return "http" }

// Close implements runtime.Driver: idle connections are closed; the
// cloud's instances are left alone.
func (d *Driver) Close() error {
	d.hc.CloseIdleConnections()
	return nil
}

// do sends one request and decodes a 2xx answer into out. Errors carry the
// cloud's words and map its code to the runtime's error kinds.
func (d *Driver) do(parent context.Context, op, method, path string, body, out any) (int, error) {
	ctx, cancel := context.WithTimeout(parent, d.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := nethttp.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %w", op, err, runtime.ErrInvalid)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if d.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.cfg.Token)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		if perr := parent.Err(); perr != nil {
			return 0, fmt.Errorf("%s: %w", op, perr) // the caller gave up
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%s: cloud %s did not answer within %v: %w", op, d.cfg.URL, d.cfg.Timeout, runtime.ErrUnavailable)
		}
		return 0, fmt.Errorf("%s: cloud %s: %v: %w", op, d.cfg.URL, err, runtime.ErrUnavailable)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s: read the cloud's answer: %v: %w", op, err, runtime.ErrUnavailable)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s: %w", op, cloudError(resp.StatusCode, b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: the cloud's answer is not the contract's JSON: %v: %w", op, err, runtime.ErrUnavailable)
		}
	}
	return resp.StatusCode, nil
}

// cloudError maps an error answer to the runtime's error kinds, by its
// code, else by its status.
func cloudError(status int, body []byte) error {
	var e wireError
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
		if len(e.Error) > 200 {
			e.Error = e.Error[:200] + "..."
		}
	}
	kind := runtime.ErrUnavailable
	switch e.Code {
	case "bad_request":
		kind = runtime.ErrInvalid
	case "not_found":
		kind = runtime.ErrNotFound
	case "exists":
		kind = runtime.ErrExists
	case "no_capacity":
		kind = runtime.ErrNoCapacity
	case "appliance_refused":
		kind = runtime.ErrAppliance
	case "unauthorized":
		return fmt.Errorf("the cloud refused the token (%s): check the driver's Token: %w", e.Error, runtime.ErrUnavailable)
	case "":
		switch status {
		case nethttp.StatusBadRequest:
			kind = runtime.ErrInvalid
		case nethttp.StatusNotFound:
			kind = runtime.ErrNotFound
		case nethttp.StatusConflict:
			kind = runtime.ErrExists
		case nethttp.StatusUnprocessableEntity:
			kind = runtime.ErrAppliance
		}
	}
	return fmt.Errorf("cloud answered %d %s: %s: %w", status, e.Code, e.Error, kind)
}

// Recover implements runtime.Driver: the cloud keeps its instances; the
// driver lists them.
func (d *Driver) Recover(ctx context.Context) ([]runtime.Instance, error) {
	return d.List(ctx)
}

// Capacity implements runtime.Driver.
func (d *Driver) Capacity(ctx context.Context) (runtime.Capacity, error) {
	var w wireCapacity
	if _, err := d.do(ctx, "capacity", nethttp.MethodGet, "/v1/capacity", nil, &w); err != nil {
		return runtime.Capacity{}, err
	}
	c := runtime.Capacity{
		Total: w.Total.resources(), Free: w.Free.resources(),
		Utilization: runtime.Utilization{Instances: w.Utilization.Instances, CPU: time.Duration(w.Utilization.CPUMs) * time.Millisecond, Memory: w.Utilization.Memory},
	}
	for _, p := range w.Profiles {
		c.Profiles = append(c.Profiles, runtime.Profile{
			Hardware: protocol.Hardware{Profile: p.Profile, VCPU: p.VCPU, Memory: p.Memory, Disk: p.Disk, GPUs: p.GPUs, GPUModel: p.GPUModel, Arch: p.Arch},
			Slots:    p.Slots,
		})
	}
	return c, nil
}

// Provision implements runtime.Driver: PUT /v1/instances/{lease_id}. The
// cloud pulls the appliance from <gateway>/ipfs/<cid> after answering.
func (d *Driver) Provision(ctx context.Context, spec runtime.Spec) (runtime.Instance, error) {
	if err := spec.Validate(); err != nil {
		return runtime.Instance{}, fmt.Errorf("provision: %w", err)
	}
	op := "provision " + spec.LeaseID
	gw := cmp.Or(d.cfg.GatewayURL, spec.Appliance.GatewayURL)
	if !spec.Appliance.CID.Defined() || gw == "" {
		return runtime.Instance{}, fmt.Errorf("%s: the http driver needs the appliance's CID and the node's gateway URL: %w", op, runtime.ErrInvalid)
	}
	req := wireCreate{
		Appliance: wireAppliance{
			CID: spec.Appliance.CID.String(), Size: spec.Appliance.Size, Format: spec.Appliance.Format,
			URL: strings.TrimRight(gw, "/") + "/ipfs/" + spec.Appliance.CID.String(),
		},
		Limits:    wireLimits{VCPU: spec.Limits.VCPU, Memory: spec.Limits.Memory, Disk: spec.Limits.Disk},
		AccessKey: spec.AccessKey,
		Env:       spec.Env,
	}
	if !spec.Ends.IsZero() {
		t := spec.Ends.UTC()
		req.Ends = &t
	}
	var w wireInstance
	if _, err := d.do(ctx, op, nethttp.MethodPut, "/v1/instances/"+url.PathEscape(spec.LeaseID), req, &w); err != nil {
		return runtime.Instance{}, err
	}
	return w.instance(op)
}

// Instance implements runtime.Driver.
func (d *Driver) Instance(ctx context.Context, leaseID string) (runtime.Instance, error) {
	op := "instance " + leaseID
	if err := runtime.ValidateLeaseID(leaseID); err != nil {
		return runtime.Instance{}, fmt.Errorf("%s: %w", op, err)
	}
	var w wireInstance
	if _, err := d.do(ctx, op, nethttp.MethodGet, "/v1/instances/"+url.PathEscape(leaseID), nil, &w); err != nil {
		return runtime.Instance{}, err
	}
	return w.instance(op)
}

// List implements runtime.Driver.
func (d *Driver) List(ctx context.Context) ([]runtime.Instance, error) {
	var w wireList
	if _, err := d.do(ctx, "list", nethttp.MethodGet, "/v1/instances", nil, &w); err != nil {
		return nil, err
	}
	out := make([]runtime.Instance, 0, len(w.Instances))
	for _, wi := range w.Instances {
		in, err := wi.instance("list")
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b runtime.Instance) int { return cmp.Compare(a.LeaseID, b.LeaseID) })
	return out, nil
}

// Terminate implements runtime.Driver: DELETE /v1/instances/{lease_id};
// when the cloud accepts it for later (202), the driver polls the instance
// until it has ended or ctx ends.
func (d *Driver) Terminate(ctx context.Context, leaseID string) (runtime.Instance, error) {
	op := "terminate " + leaseID
	if err := runtime.ValidateLeaseID(leaseID); err != nil {
		return runtime.Instance{}, fmt.Errorf("%s: %w", op, err)
	}
	var w wireInstance
	status, err := d.do(ctx, op, nethttp.MethodDelete, "/v1/instances/"+url.PathEscape(leaseID), nil, &w)
	if err != nil {
		return runtime.Instance{}, err
	}
	in, err := w.instance(op)
	if err != nil || status != nethttp.StatusAccepted {
		return in, err
	}
	t := time.NewTicker(d.cfg.TerminatePoll)
	defer t.Stop()
	for in.State.Live() {
		select {
		case <-ctx.Done():
			return in, fmt.Errorf("%s: the cloud is still stopping it: %w", op, ctx.Err())
		case <-t.C:
		}
		if in, err = d.Instance(ctx, leaseID); err != nil {
			return in, err
		}
	}
	return in, nil
}

// The contract's JSON bodies (docs/driver-http.yaml).

type wireError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

type wireResources struct {
	VCPU      uint32 `json:"vcpu"`
	Memory    uint64 `json:"memory"`
	Disk      uint64 `json:"disk"`
	Instances uint32 `json:"instances"`
}

func (r wireResources) resources() runtime.Resources {
	return runtime.Resources{VCPU: r.VCPU, Memory: r.Memory, Disk: r.Disk, Instances: r.Instances}
}

type wireProfile struct {
	Profile  string `json:"profile"`
	VCPU     uint32 `json:"vcpu"`
	Memory   uint64 `json:"memory"`
	Disk     uint64 `json:"disk"`
	Arch     string `json:"arch"`
	GPUs     uint32 `json:"gpus"`
	GPUModel string `json:"gpu_model"`
	Slots    uint32 `json:"slots"`
}

type wireCapacity struct {
	Profiles    []wireProfile `json:"profiles"`
	Total       wireResources `json:"total"`
	Free        wireResources `json:"free"`
	Utilization struct {
		Instances uint32 `json:"instances"`
		CPUMs     uint64 `json:"cpu_ms"`
		Memory    uint64 `json:"memory"`
	} `json:"utilization"`
}

type wireLimits struct {
	VCPU   uint32 `json:"vcpu"`
	Memory uint64 `json:"memory"`
	Disk   uint64 `json:"disk"`
}

type wireAppliance struct {
	CID    string `json:"cid"`
	Size   uint64 `json:"size"`
	Format string `json:"format,omitempty"`
	URL    string `json:"url"`
}

type wireCreate struct {
	Appliance wireAppliance     `json:"appliance"`
	Limits    wireLimits        `json:"limits"`
	AccessKey string            `json:"access_key"`
	Ends      *time.Time        `json:"ends,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

type wireInstance struct {
	LeaseID  string     `json:"lease_id"`
	State    string     `json:"state"`
	Endpoint string     `json:"endpoint"`
	Reason   string     `json:"reason"`
	ExitCode *int       `json:"exit_code"`
	Created  time.Time  `json:"created"`
	Started  *time.Time `json:"started"`
	Ended    *time.Time `json:"ended"`
	Ends     *time.Time `json:"ends"`
	Limits   wireLimits `json:"limits"`
	Enforced []struct {
		Limit     string `json:"limit"`
		Mechanism string `json:"mechanism"`
		Control   string `json:"control"`
		Value     string `json:"value"`
	} `json:"enforced"`
	LimitNotes []string `json:"limit_notes"`
	Usage      struct {
		CPUMs      uint64 `json:"cpu_ms"`
		WallMs     uint64 `json:"wall_ms"`
		MemoryPeak uint64 `json:"memory_peak"`
		BytesIn    uint64 `json:"bytes_in"`
		BytesOut   uint64 `json:"bytes_out"`
		Network    bool   `json:"network"`
	} `json:"usage"`
}

type wireList struct {
	Instances []wireInstance `json:"instances"`
}

// instance checks and converts a cloud's instance.
func (w wireInstance) instance(op string) (runtime.Instance, error) {
	st := runtime.State(w.State)
	if !st.Valid() || runtime.ValidateLeaseID(w.LeaseID) != nil {
		return runtime.Instance{}, fmt.Errorf("%s: the cloud answered lease %q in state %q, not one of the contract's: %w", op, w.LeaseID, w.State, runtime.ErrUnavailable)
	}
	t := func(p *time.Time) time.Time {
		if p == nil {
			return time.Time{}
		}
		return p.UTC()
	}
	in := runtime.Instance{
		LeaseID: w.LeaseID, State: st, Endpoint: w.Endpoint, Reason: w.Reason, ExitCode: -1,
		Created: w.Created.UTC(), Started: t(w.Started), Ended: t(w.Ended), Ends: t(w.Ends),
		Limits:     runtime.Limits{VCPU: w.Limits.VCPU, Memory: w.Limits.Memory, Disk: w.Limits.Disk},
		LimitNotes: w.LimitNotes,
		Usage: runtime.Usage{
			CPU: time.Duration(w.Usage.CPUMs) * time.Millisecond, Wall: time.Duration(w.Usage.WallMs) * time.Millisecond,
			MemoryPeak: w.Usage.MemoryPeak, BytesIn: w.Usage.BytesIn, BytesOut: w.Usage.BytesOut, Network: w.Usage.Network,
		},
	}
	if w.ExitCode != nil {
		in.ExitCode = *w.ExitCode
	}
	for _, e := range w.Enforced {
		in.Enforced = append(in.Enforced, runtime.Enforcement{Limit: e.Limit, Mechanism: e.Mechanism, Control: e.Control, Value: e.Value})
	}
	return in, nil
}

// wireExtend is the body of PATCH /v1/instances/{lease_id}.
type wireExtend struct {
	Ends time.Time `json:"ends"`
}

// Extend implements runtime.Driver: PATCH /v1/instances/{lease_id} with
// the new end.
func (d *Driver) Extend(ctx context.Context, leaseID string, ends time.Time) (runtime.Instance, error) {
	op := "extend " + leaseID
	if err := runtime.ValidateLeaseID(leaseID); err != nil {
		return runtime.Instance{}, fmt.Errorf("%s: %w", op, err)
	}
	if ends.IsZero() {
		return runtime.Instance{}, fmt.Errorf("%s: no end given: %w", op, runtime.ErrInvalid)
	}
	var w wireInstance
	if _, err := d.do(ctx, op, nethttp.MethodPatch, "/v1/instances/"+url.PathEscape(leaseID), wireExtend{Ends: ends.UTC()}, &w); err != nil {
		return runtime.Instance{}, err
	}
	return w.instance(op)
}
