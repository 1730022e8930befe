package refcloud

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// Config tunes a Cloud. Start from DefaultConfig and set Dir.
type Config struct {
	// Dir holds a directory per instance.
	Dir string
	// Token, if set, is the bearer token every request must carry.
	Token string
	// BindHost is where instances listen (HOST); AdvertiseHost, if set,
	// is the host in their endpoints.
	BindHost      string
	AdvertiseHost string
	// Total is the cloud's size.
	Total Resources
	// Profiles are the hardware profiles offered (Slots is computed).
	Profiles []Profile
	// Formats are the appliance formats run ("" is run when it is a
	// bundle).
	Formats []string
	// MaxAppliance is the largest appliance pulled, in bytes.
	MaxAppliance uint64
	// PullTimeout bounds the pull of an appliance; StartTimeout the time
	// from the start to accepting connections on PORT; StopGrace the time
	// from SIGTERM to SIGKILL.
	PullTimeout  time.Duration
	StartTimeout time.Duration
	StopGrace    time.Duration
	// Retention is how long ended instances are kept.
	Retention time.Duration
}

// DefaultConfig returns a cloud of 4 vCPU, 8 GiB, 64 GiB and 16 instance
// slots on loopback, offering one profile of 1 vCPU, 512 MiB and 1 GiB.
func DefaultConfig() Config {
	return Config{
		BindHost:     "127.0.0.1",
		Total:        Resources{VCPU: 4, Memory: 8 << 30, Disk: 64 << 30, Instances: 16},
		Profiles:     []Profile{{Profile: "r1m512", VCPU: 1, Memory: 512 << 20, Disk: 1 << 30, Arch: goruntime.GOARCH}},
		Formats:      []string{"bundle"},
		MaxAppliance: 4 << 30,
		PullTimeout:  10 * time.Minute,
		StartTimeout: 2 * time.Minute,
		StopGrace:    10 * time.Second,
		Retention:    24 * time.Hour,
	}
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("refcloud config: %s = %v: %s", field, v, want)
	}
	switch {
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return bad("Dir", c.Dir, "want an absolute directory")
	case net.ParseIP(c.BindHost) == nil:
		return bad("BindHost", c.BindHost, "want an IP address")
	case c.Total.VCPU == 0 || c.Total.Memory == 0 || c.Total.Disk == 0 || c.Total.Instances == 0:
		return bad("Total", c.Total, "want vCPU, memory, disk and instances")
	case len(c.Profiles) == 0:
		return bad("Profiles", c.Profiles, "want at least one profile")
	case c.PullTimeout <= 0 || c.StartTimeout <= 0 || c.StopGrace <= 0:
		return bad("PullTimeout/StartTimeout/StopGrace", []time.Duration{c.PullTimeout, c.StartTimeout, c.StopGrace}, "want positive durations")
	}
	return nil
}

// Cloud is the reference cloud: an http.Handler serving the contract.
type Cloud struct {
	cfg  Config
	log  *slog.Logger
	mux  *http.ServeMux
	pull *http.Client

	mu     sync.Mutex // guards insts and closed
	insts  map[string]*inst
	closed bool

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // pulls and process waiters
}

// New makes a cloud.
func New(cfg Config, log *slog.Logger) (*Cloud, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	c := &Cloud{
		cfg: cfg, log: log.With("service", "refcloud"), insts: map[string]*inst{},
		pull: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mux = http.NewServeMux()
	c.mux.HandleFunc("GET /v1/capacity", c.handleCapacity)
	c.mux.HandleFunc("GET /v1/instances", c.handleList)
	c.mux.HandleFunc("PUT /v1/instances/{lease_id}", c.handleCreate)
	c.mux.HandleFunc("GET /v1/instances/{lease_id}", c.handleGet)
	c.mux.HandleFunc("DELETE /v1/instances/{lease_id}", c.handleDelete)
	c.mux.HandleFunc("PATCH /v1/instances/{lease_id}", c.handleExtend)
	return c, nil
}

// ServeHTTP implements http.Handler.
func (c *Cloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Token != "" {
		auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(c.cfg.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="refcloud"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token: send Authorization: Bearer <the cloud's token>")
			return
		}
	}
	if _, pattern := c.mux.Handler(r); pattern == "" {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no route %s %s: see docs/driver-http.yaml", r.Method, r.URL.Path))
		return
	}
	c.mux.ServeHTTP(w, r)
}

// Close stops every instance (SIGTERM, SIGKILL after the grace) and waits
// for the cloud's goroutines. Idempotent.
func (c *Cloud) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	all := make([]*inst, 0, len(c.insts))
	for _, in := range c.insts {
		all = append(all, in)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range all {
		wg.Go(func() { c.stop(in, StateTerminated, "the cloud closed") })
	}
	wg.Wait()
	c.cancel()
	c.wg.Wait()
	c.pull.CloseIdleConnections()
	return nil
}

// PID returns the PID of an instance's main process, 0 when it has none.
func (c *Cloud) PID(leaseID string) int {
	c.mu.Lock()
	in := c.insts[leaseID]
	c.mu.Unlock()
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.pid
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, Error{Error: msg, Code: code})
}

func (c *Cloud) freeLocked() Resources {
	free := c.cfg.Total
	for _, in := range c.insts {
		if in.reserved() {
			free = sub(free, in.req.Limits)
		}
	}
	return free
}

func sub(r Resources, l Limits) Resources {
	r.VCPU -= min(r.VCPU, l.VCPU)
	r.Memory -= min(r.Memory, l.Memory)
	r.Disk -= min(r.Disk, l.Disk)
	r.Instances -= min(r.Instances, 1)
	return r
}

func fits(r Resources, p Profile) uint32 {
	n := r.Instances
	if p.VCPU > 0 {
		n = min(n, r.VCPU/p.VCPU)
	}
	if p.Memory > 0 {
		n = min(n, uint32(min(r.Memory/p.Memory, 1<<32-1)))
	}
	if p.Disk > 0 {
		n = min(n, uint32(min(r.Disk/p.Disk, 1<<32-1)))
	}
	return n
}

func (c *Cloud) handleCapacity(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	all := c.all()
	free := c.freeLocked()
	c.mu.Unlock()
	out := Capacity{Total: c.cfg.Total, Free: free}
	for _, in := range all {
		v := in.view(c)
		if live(v.State) {
			out.Utilization.Instances++
			out.Utilization.CPUMs += v.Usage.CPUMs
		}
	}
	for _, p := range c.cfg.Profiles {
		p.Slots = fits(free, p)
		out.Profiles = append(out.Profiles, p)
	}
	writeJSON(w, http.StatusOK, out)
}

// all returns the instances; c.mu is held.
func (c *Cloud) all() []*inst {
	out := make([]*inst, 0, len(c.insts))
	for _, in := range c.insts {
		out = append(out, in)
	}
	return out
}

func (c *Cloud) handleList(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	all := c.all()
	c.mu.Unlock()
	out := InstanceList{Instances: []Instance{}}
	for _, in := range all {
		v := c.refresh(in)
		if !live(v.State) && v.Ended != nil && time.Since(*v.Ended) > c.cfg.Retention {
			c.mu.Lock()
			delete(c.insts, v.LeaseID)
			c.mu.Unlock()
			_ = os.RemoveAll(in.dir)
			continue
		}
		out.Instances = append(out.Instances, v)
	}
	slices.SortFunc(out.Instances, func(a, b Instance) int { return cmp.Compare(a.LeaseID, b.LeaseID) })
	writeJSON(w, http.StatusOK, out)
}

func (c *Cloud) lookup(w http.ResponseWriter, r *http.Request) *inst {
	id := r.PathValue("lease_id")
	c.mu.Lock()
	in := c.insts[id]
	c.mu.Unlock()
	if in == nil {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no instance for lease %q", id))
	}
	return in
}

func (c *Cloud) handleGet(w http.ResponseWriter, r *http.Request) {
	if in := c.lookup(w, r); in != nil {
		writeJSON(w, http.StatusOK, c.refresh(in))
	}
}

func (c *Cloud) handleDelete(w http.ResponseWriter, r *http.Request) {
	if in := c.lookup(w, r); in != nil {
		c.stop(in, StateTerminated, "terminated")
		writeJSON(w, http.StatusOK, in.view(c))
	}
}

// handleExtend moves a live instance's end (its lease was renewed).
func (c *Cloud) handleExtend(w http.ResponseWriter, r *http.Request) {
	in := c.lookup(w, r)
	if in == nil {
		return
	}
	var req ExtendInstance
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Ends.IsZero() {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "body: want an ExtendInstance JSON object with a non-zero ends")
		return
	}
	in.mu.Lock()
	if !live(in.state) {
		st := in.state
		in.mu.Unlock()
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("the instance has ended (%s)", st))
		return
	}
	ends := req.Ends.UTC()
	in.req.Ends = &ends
	in.mu.Unlock()
	writeJSON(w, http.StatusOK, in.view(c))
}

// validLeaseID: 1 to 128 of A-Z a-z 0-9 . _ -, no leading dot.
func validLeaseID(id string) bool {
	if len(id) < 1 || len(id) > 128 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_') {
			return false
		}
	}
	switch k {
	case "PORT", "HOST", "PATH", "HOME", "TMPDIR":
		return false
	}
	return !strings.HasPrefix(k, "SPOTMESH_")
}

func (c *Cloud) handleCreate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("lease_id")
	bad := func(msg string) { writeError(w, http.StatusBadRequest, CodeBadRequest, msg) }
	if !validLeaseID(id) {
		bad(fmt.Sprintf("lease_id %q: want 1 to 128 characters of A-Z a-z 0-9 . _ - not starting with a dot", id))
		return
	}
	var req CreateInstance
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		bad("body: " + err.Error() + ": want a CreateInstance JSON object")
		return
	}
	root, err := cid.Decode(req.Appliance.CID)
	switch {
	case err != nil:
		bad(fmt.Sprintf("appliance.cid %q: not a CID", req.Appliance.CID))
		return
	case !strings.HasPrefix(req.Appliance.URL, "http://") && !strings.HasPrefix(req.Appliance.URL, "https://"):
		bad(fmt.Sprintf("appliance.url %q: want an http(s) URL of the gateway's /ipfs/<cid>", req.Appliance.URL))
		return
	case req.Limits.VCPU == 0 || req.Limits.Memory < 1<<20 || req.Limits.Disk < 1<<20:
		bad(fmt.Sprintf("limits %+v: want at least 1 vCPU, 1 MiB of memory and of disk", req.Limits))
		return
	case len(req.AccessKey) > 16<<10:
		bad("access_key: more than 16 KiB")
		return
	}
	for k := range req.Env {
		if !validEnvName(k) {
			bad(fmt.Sprintf("env %q: want upper-case letters, digits and _, not one the cloud sets (PORT, HOST, PATH, HOME, TMPDIR, SPOTMESH_*)", k))
			return
		}
	}
	if f := req.Appliance.Format; f != "" && !slices.Contains(c.cfg.Formats, f) {
		writeError(w, http.StatusUnprocessableEntity, CodeApplianceRefused, fmt.Sprintf("appliance format %q: this cloud runs %v", f, c.cfg.Formats))
		return
	}
	if req.Appliance.Size > c.cfg.MaxAppliance || req.Appliance.Size > req.Limits.Disk {
		writeError(w, http.StatusUnprocessableEntity, CodeApplianceRefused, fmt.Sprintf("appliance of %d bytes: larger than the lease's disk or this cloud's limit of %d", req.Appliance.Size, c.cfg.MaxAppliance))
		return
	}

	in := &inst{id: id, dir: filepath.Join(c.cfg.Dir, id), req: req, root: root, state: StateProvisioning, exitCode: -1, created: time.Now().UTC(), done: make(chan struct{})}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "the cloud is shutting down")
		return
	case c.insts[id] != nil:
		c.mu.Unlock()
		writeError(w, http.StatusConflict, CodeExists, fmt.Sprintf("lease %s has an instance already: GET it, or DELETE it first", id))
		return
	}
	free := c.freeLocked()
	if free.Instances < 1 || free.VCPU < req.Limits.VCPU || free.Memory < req.Limits.Memory || free.Disk < req.Limits.Disk {
		c.mu.Unlock()
		writeError(w, http.StatusConflict, CodeNoCapacity, fmt.Sprintf("want %+v; free %+v", req.Limits, free))
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.PullTimeout)
	in.cancel = cancel
	c.insts[id] = in
	c.wg.Add(1)
	c.mu.Unlock()
	go c.provision(ctx, in)
	c.log.Info("instance created", "lease", id, "cid", root, "size", req.Appliance.Size)
	writeJSON(w, http.StatusCreated, in.view(c))
}
