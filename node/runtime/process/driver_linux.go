package process

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/protocol"
	"golang.org/x/sys/unix"
)

var _ runtime.Driver = (*Driver)(nil)

// Driver runs appliance bundles as local processes. See the package doc.
type Driver struct {
	cfg      Config
	clk      clock.Clock
	log      *slog.Logger
	cg       cgroups
	total    runtime.Resources
	profiles []protocol.Hardware

	// mu guards insts, closed and every inst's sum. Lock order: an
	// inst's mu before d.mu, never the other way.
	mu     sync.Mutex
	insts  map[string]*inst
	closed bool
}

// summary is what Capacity needs of an instance, kept beside the record so
// that Capacity and Provision never wait for an instance's mutex (held
// through a Terminate's grace).
type summary struct {
	live   bool
	limits runtime.Limits
	cpu    time.Duration
	mem    uint64 // resident now
}

// inst is one instance. Its mutex serialises the work on its processes
// (refresh, terminate), so that one slow instance holds up no other.
type inst struct {
	dir string // <Dir>/instances/<lease>

	mu  sync.Mutex // guards rec and memNow
	rec record
	// memNow is the resident memory at the last refresh.
	memNow uint64
	// sum mirrors rec for Capacity; guarded by Driver.mu.
	sum summary
	// seen: the driver saw the main process alive in this run, so that its
	// process group is known to be the instance's (guarded by mu).
	seen bool
	// ready is closed when Provision is done with the instance, staging
	// or failing; cancel cuts the staging short.
	ready  chan struct{}
	cancel context.CancelFunc
}

// New makes a process driver over its state directory, loading the
// records of the instances a previous run left. Call Recover before the
// rest (the Runtime's Start does).
func New(cfg Config, clk clock.Clock, log *slog.Logger) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clk == nil || log == nil {
		return nil, fmt.Errorf("process driver: New needs a clock and a logger: %w", runtime.ErrInvalid)
	}
	d := &Driver{cfg: cfg, clk: clk, log: log.With("driver", "process"), insts: map[string]*inst{}}
	if err := os.MkdirAll(d.instancesDir(), 0o700); err != nil {
		return nil, fmt.Errorf("process driver: state directory: %w", err)
	}
	d.total = cfg.Total
	if d.total.VCPU == 0 {
		d.total.VCPU = uint32(goruntime.NumCPU())
	}
	if d.total.Memory == 0 {
		d.total.Memory = memTotal()
	}
	if d.total.Disk == 0 {
		var st unix.Statfs_t
		if unix.Statfs(cfg.Dir, &st) == nil {
			d.total.Disk = st.Bavail * uint64(st.Bsize)
		}
	}
	if d.total.Instances == 0 {
		d.total.Instances = 64
	}
	d.profiles = slices.Clone(cfg.Profiles)
	if len(d.profiles) == 0 {
		d.profiles = defaultProfiles()
	}
	for i := range d.profiles {
		if d.profiles[i].Arch == "" {
			d.profiles[i].Arch = goruntime.GOARCH
		}
	}
	d.cg = setupCgroups(cfg)
	if d.cg.note != "" {
		d.log.Warn("cgroup v2 limits not fully available", "note", d.cg.note)
	}
	if err := d.load(); err != nil {
		return nil, err
	}
	return d, nil
}

// Name implements runtime.Driver.
func (d *Driver) Name() string { return "process" }

func (d *Driver) instancesDir() string { return filepath.Join(d.cfg.Dir, "instances") }

// load reads the records in the state directory. A record left while
// staging (no process yet) is marked failed.
func (d *Driver) load() error {
	ents, err := os.ReadDir(d.instancesDir())
	if err != nil {
		return fmt.Errorf("process driver: read state directory: %w", err)
	}
	now := d.clk.Now().UTC()
	for _, e := range ents {
		if !e.IsDir() || runtime.ValidateLeaseID(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(d.instancesDir(), e.Name())
		rec, err := loadRecord(dir)
		if errors.Is(err, os.ErrNotExist) {
			d.log.Warn("instance directory without a record: removing it", "dir", dir)
			_ = os.RemoveAll(dir)
			continue
		}
		if err != nil {
			d.log.Warn("instance record unreadable: left alone", "err", err)
			continue
		}
		in := &inst{dir: dir, rec: rec, ready: make(chan struct{})}
		close(in.ready)
		if rec.State.Live() && rec.PID == 0 {
			in.rec.State, in.rec.Reason, in.rec.Ended, in.rec.ExitCode = runtime.StateFailed, "the node stopped while provisioning it", now, -1
			d.cleanup(in, false)
			if err := in.rec.save(dir); err != nil {
				d.log.Warn("save instance record", "lease", rec.LeaseID, "err", err)
			}
		}
		in.sum = summary{live: in.rec.State.Live(), limits: in.rec.Limits, cpu: in.rec.CPU}
		d.insts[rec.LeaseID] = in
	}
	return nil
}

// publish copies an instance's record into its summary. in.mu is held.
func (d *Driver) publish(in *inst) {
	d.mu.Lock()
	in.sum = summary{live: in.rec.State.Live(), limits: in.rec.Limits, cpu: in.rec.CPU, mem: in.memNow}
	d.mu.Unlock()
}

// Recover implements runtime.Driver: every instance whose process still
// runs (same PID, same start time) is re-adopted; the others are marked
// exited.
func (d *Driver) Recover(ctx context.Context) ([]runtime.Instance, error) {
	list, err := d.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, in := range list {
		if in.State.Live() {
			d.log.Info("instance re-adopted", "lease", in.LeaseID, "pid", in.PID, "state", in.State, "endpoint", in.Endpoint)
		}
	}
	return list, nil
}

// Capacity implements runtime.Driver. It counts the limits of the live
// instances as of their last refresh.
func (d *Driver) Capacity(ctx context.Context) (runtime.Capacity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return runtime.Capacity{}, fmt.Errorf("capacity: %w", runtime.ErrClosed)
	}
	c := runtime.Capacity{Total: d.total, Free: d.freeLocked()}
	for _, in := range d.insts {
		if in.sum.live {
			c.Utilization.Instances++
			c.Utilization.CPU += in.sum.cpu
			c.Utilization.Memory += in.sum.mem
		}
	}
	for _, hw := range d.profiles {
		c.Profiles = append(c.Profiles, runtime.Profile{Hardware: hw, Slots: c.Free.Fits(hw)})
	}
	return c, nil
}

// freeLocked is the total less the limits of the live instances. d.mu is
// held.
func (d *Driver) freeLocked() runtime.Resources {
	free := d.total
	for _, in := range d.insts {
		if in.sum.live {
			free = free.Sub(in.sum.limits)
		}
	}
	return free
}

// Provision implements runtime.Driver: it unpacks the bundle into the
// instance's directory and starts ./run there, in its own session, with
// the limits set. It returns with the process started (provisioning);
// the instance is running once it accepts connections on its PORT.
func (d *Driver) Provision(ctx context.Context, spec runtime.Spec) (runtime.Instance, error) {
	if err := spec.Validate(); err != nil {
		return runtime.Instance{}, fmt.Errorf("provision: %w", err)
	}
	id := spec.LeaseID
	if f := spec.Appliance.Format; f != "" && !slices.Contains(d.cfg.Formats, f) {
		return runtime.Instance{}, fmt.Errorf("provision %s: appliance format %q: this driver runs %v: %w", id, f, d.cfg.Formats, runtime.ErrAppliance)
	}
	now := d.clk.Now().UTC()
	if !spec.Ends.IsZero() && !spec.Ends.After(now) {
		return runtime.Instance{}, fmt.Errorf("provision %s: the lease ended at %s: %w", id, spec.Ends.UTC().Format(time.RFC3339), runtime.ErrInvalid)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := &inst{dir: filepath.Join(d.instancesDir(), id), ready: make(chan struct{}), cancel: cancel}
	in.rec = record{Version: recordVersion, LeaseID: id, State: runtime.StateProvisioning, ExitCode: -1, Limits: spec.Limits, Ends: spec.Ends.UTC(), Created: now}

	d.mu.Lock()
	switch {
	case d.closed:
		d.mu.Unlock()
		return runtime.Instance{}, fmt.Errorf("provision %s: %w", id, runtime.ErrClosed)
	case d.insts[id] != nil:
		d.mu.Unlock()
		return runtime.Instance{}, fmt.Errorf("provision %s: %w", id, runtime.ErrExists)
	}
	if free := d.freeLocked(); !free.Covers(spec.Limits) {
		d.mu.Unlock()
		return runtime.Instance{}, fmt.Errorf("provision %s: want %d vCPU, %d bytes of memory, %d of disk; free: %d vCPU, %d, %d, %d instance slots: %w",
			id, spec.Limits.VCPU, spec.Limits.Memory, spec.Limits.Disk, free.VCPU, free.Memory, free.Disk, free.Instances, runtime.ErrNoCapacity)
	}
	in.sum = summary{live: true, limits: spec.Limits}
	d.insts[id] = in
	d.mu.Unlock()

	t0 := time.Now()
	err := d.start(sctx, in, spec)
	if err != nil {
		d.mu.Lock()
		delete(d.insts, id)
		d.mu.Unlock()
		_ = os.RemoveAll(in.dir)
		close(in.ready)
		if ctx.Err() == nil && sctx.Err() != nil {
			err = fmt.Errorf("%w (terminated while provisioning)", err)
		}
		return runtime.Instance{}, fmt.Errorf("provision %s: %w", id, err)
	}
	in.mu.Lock()
	out := in.rec.instance(d.clk.Now())
	in.mu.Unlock()
	close(in.ready)
	d.log.Info("instance started", "lease", id, "pid", out.PID, "endpoint", out.Endpoint, "took", time.Since(t0), "enforced", len(out.Enforced))
	return out, nil
}

// start stages the bundle and starts the instance's process, saving the
// record before (PID 0) and after.
func (d *Driver) start(ctx context.Context, in *inst, spec runtime.Spec) error {
	appDir := filepath.Join(in.dir, "app")
	tmpDir := filepath.Join(in.dir, "tmp")
	if err := os.Mkdir(in.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("directory %s is left from an earlier instance: remove it: %w", in.dir, runtime.ErrExists)
		}
		return err
	}
	for _, dir := range []string{appDir, tmpDir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	in.mu.Lock()
	err := in.rec.save(in.dir)
	in.mu.Unlock()
	if err != nil {
		return err
	}
	kind, err := stage(ctx, spec.Appliance, appDir, filepath.Join(in.dir, "bundle.tmp"), spec.Limits.Disk)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(in.dir, "access_key")
	if err := os.WriteFile(keyFile, []byte(spec.AccessKey), 0o600); err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(in.dir, "output.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	port, err := freePort(d.cfg.BindHost)
	if err != nil {
		return fmt.Errorf("pick a port on %s: %w", d.cfg.BindHost, err)
	}
	endpoint := net.JoinHostPort(d.cfg.endpointHost(), strconv.Itoa(port))

	var wall time.Duration
	if !spec.Ends.IsZero() {
		wall = spec.Ends.Sub(d.clk.Now())
	}
	rl := rlimitsFor(spec.Limits, wall, d.cfg.CPUTimeSlack, d.cfg.MaxOpenFiles)
	cgPath, cgEnf, notes := d.cg.create(spec.LeaseID, spec.Limits, d.cfg.MaxPIDs)
	var cgFile *os.File
	if cgPath != "" {
		if cgFile, err = cgroupOpen(cgPath); err != nil {
			notes = append(notes, fmt.Sprintf("cgroup %s not used: %v", cgPath, err))
			_ = removeCgroup(cgPath)
			cgPath, cgEnf = "", nil
		} else {
			defer cgFile.Close()
		}
	}
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + appDir,
		"TMPDIR=" + tmpDir,
		"PORT=" + strconv.Itoa(port),
		"HOST=" + d.cfg.BindHost,
		"SPOTMESH_LEASE_ID=" + spec.LeaseID,
		"SPOTMESH_ACCESS_KEY_FILE=" + keyFile,
		"SPOTMESH_ENDPOINT=" + endpoint,
		"SPOTMESH_VCPU=" + strconv.FormatUint(uint64(spec.Limits.VCPU), 10),
		"SPOTMESH_MEMORY=" + strconv.FormatUint(spec.Limits.Memory, 10),
		"SPOTMESH_DISK=" + strconv.FormatUint(spec.Limits.Disk, 10),
	}
	if spec.Appliance.CID.Defined() {
		env = append(env, "SPOTMESH_APPLIANCE_CID="+spec.Appliance.CID.String())
	}
	if !spec.Ends.IsZero() {
		env = append(env, "SPOTMESH_LEASE_ENDS="+spec.Ends.UTC().Format(time.RFC3339))
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	if err := ctx.Err(); err != nil {
		_ = removeCgroup(cgPath)
		return err
	}
	p, err := spawn(spawnSpec{path: filepath.Join(appDir, "run"), dir: appDir, env: env, out: out, cgroup: cgFile, rlimits: rl})
	if err != nil {
		_ = removeCgroup(cgPath)
		return fmt.Errorf("start ./run of the %s bundle: %w", kind, err)
	}
	enf := enforcements(rl)
	enf = append(enf, cgEnf...)
	if !spec.Ends.IsZero() {
		enf = append(enf, runtime.Enforcement{Limit: runtime.LimitWallTime, Mechanism: "driver", Control: "terminate after the lease's end + grace", Value: spec.Ends.Add(d.cfg.WallGrace).UTC().Format(time.RFC3339)})
	}
	if !p.early {
		notes = append(notes, "rlimits set just after the start (ptrace not permitted), not before the program ran")
	}
	notes = append(notes, "disk: RLIMIT_FSIZE caps each file's size; the total the instance writes is not capped")

	in.mu.Lock()
	defer in.mu.Unlock()
	r := &in.rec
	r.PID, r.StartTicks, r.Port, r.Endpoint, r.Cgroup = p.pid, p.start, port, endpoint, cgPath
	in.seen = true
	r.Started = d.clk.Now().UTC()
	r.Enforced, r.LimitNotes = enf, notes
	if err := r.save(in.dir); err != nil {
		// The process runs but no record says so: stop it rather than
		// lose track of it.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(p.pid, &ws, 0, nil)
		_ = removeCgroup(cgPath)
		return err
	}
	return nil
}

// freePort picks a port free on host now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// get returns an instance once Provision is done with it.
func (d *Driver) get(ctx context.Context, op, id string) (*inst, error) {
	d.mu.Lock()
	in, closed := d.insts[id], d.closed
	d.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%s %s: %w", op, id, runtime.ErrClosed)
	}
	if in == nil {
		return nil, fmt.Errorf("%s %s: %w", op, id, runtime.ErrNotFound)
	}
	select {
	case <-in.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s %s: %w", op, id, ctx.Err())
	}
	d.mu.Lock()
	still := d.insts[id] == in
	d.mu.Unlock()
	if !still {
		return nil, fmt.Errorf("%s %s: provisioning failed: %w", op, id, runtime.ErrNotFound)
	}
	return in, nil
}

// Instance implements runtime.Driver.
func (d *Driver) Instance(ctx context.Context, leaseID string) (runtime.Instance, error) {
	in, err := d.get(ctx, "instance", leaseID)
	if err != nil {
		return runtime.Instance{}, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	d.refresh(ctx, in, nil)
	d.publish(in)
	return in.rec.instance(d.clk.Now()), nil
}

// List implements runtime.Driver. It refreshes every live instance and
// forgets ended ones older than the retention.
func (d *Driver) List(ctx context.Context) ([]runtime.Instance, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, fmt.Errorf("list: %w", runtime.ErrClosed)
	}
	all := make([]*inst, 0, len(d.insts))
	for _, in := range d.insts {
		all = append(all, in)
	}
	d.mu.Unlock()

	var procs []procStat // one scan of /proc for all instances, when needed
	scanned := false
	now := d.clk.Now()
	out := make([]runtime.Instance, 0, len(all))
	for _, in := range all {
		select {
		case <-in.ready:
		default:
			in.mu.Lock()
			out = append(out, in.rec.instance(now)) // still staging
			in.mu.Unlock()
			continue
		}
		in.mu.Lock()
		if in.rec.State.Live() && in.rec.Cgroup == "" && !scanned {
			procs, _ = scanProcs()
			scanned = true
		}
		d.refresh(ctx, in, procs)
		d.publish(in)
		if !in.rec.State.Live() && d.clk.Since(in.rec.Ended) > d.cfg.Retention {
			d.forget(in)
			in.mu.Unlock()
			continue
		}
		out = append(out, in.rec.instance(d.clk.Now()))
		in.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b runtime.Instance) int { return cmp.Compare(a.LeaseID, b.LeaseID) })
	return out, nil
}

// forget drops an ended instance's record and directory. in.mu is held.
func (d *Driver) forget(in *inst) {
	d.mu.Lock()
	if d.insts[in.rec.LeaseID] == in {
		delete(d.insts, in.rec.LeaseID)
	}
	d.mu.Unlock()
	if err := os.RemoveAll(in.dir); err != nil {
		d.log.Warn("remove ended instance", "lease", in.rec.LeaseID, "err", err)
	}
}

// Terminate implements runtime.Driver: SIGTERM to the instance's process
// group (and cgroup), SIGKILL after StopGrace or when ctx ends, and it
// returns once every process is gone and reaped.
func (d *Driver) Terminate(ctx context.Context, leaseID string) (runtime.Instance, error) {
	d.mu.Lock()
	if in := d.insts[leaseID]; in != nil && in.cancel != nil {
		in.cancel() // cut a staging short
	}
	d.mu.Unlock()
	in, err := d.get(ctx, "terminate", leaseID)
	if err != nil {
		return runtime.Instance{}, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	d.refresh(ctx, in, nil)
	if in.rec.State.Live() {
		d.stop(ctx, in, runtime.StateTerminated, "terminated")
	} else {
		d.cleanup(in, false)
	}
	d.publish(in)
	return in.rec.instance(d.clk.Now()), nil
}

// Close implements runtime.Driver. Instances keep running.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.cg.base != "" {
		_ = os.Remove(d.cg.base) // fails while instances run: they keep it
	}
	return nil
}

// alive checks the instance's main process: whether it still runs, and
// when it has ended and was this process's child, its exit status and CPU
// time. A PID whose start time differs is another process: ended.
func alive(r *record) (live bool, ws *unix.WaitStatus, cpu time.Duration) {
	st, err := readStat(r.PID)
	if err != nil || st.start != r.StartTicks {
		return false, nil, 0
	}
	// It is ours (same PID and start time), running or a zombie. If it is
	// this process's child, reap it when it has ended.
	var w unix.WaitStatus
	var ru unix.Rusage
	wpid, werr := unix.Wait4(r.PID, &w, unix.WNOHANG, &ru)
	switch {
	case werr == nil && wpid == r.PID:
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		return false, &w, cpu
	case werr == nil:
		return true, nil, 0 // our child, running
	}
	return !st.gone(), nil, 0 // not our child: adopted
}

// refresh brings a live instance's record up to date: ended or not, usage,
// answering on its port, past its lease's end. in.mu is held; procs is a
// scan of /proc or nil.
func (d *Driver) refresh(ctx context.Context, in *inst, procs []procStat) {
	r := &in.rec
	if !r.State.Live() {
		return
	}
	live, ws, cpu := alive(r)
	if !live {
		d.ended(in, ws, cpu, in.seen)
		return
	}
	in.seen = true
	d.sample(in, procs)
	now := d.clk.Now()
	changed := false
	if r.State == runtime.StateProvisioning {
		if d.answers(r.Port) {
			r.State = runtime.StateRunning
			changed = true
			d.log.Info("instance running", "lease", r.LeaseID, "endpoint", r.Endpoint, "after", now.Sub(r.Started))
		} else if now.Sub(r.Started) > d.cfg.StartTimeout {
			d.stop(ctx, in, runtime.StateFailed, fmt.Sprintf("did not accept connections on PORT %d within %v of its start", r.Port, d.cfg.StartTimeout))
			return
		}
	}
	if !r.Ends.IsZero() && now.After(r.Ends.Add(d.cfg.WallGrace)) {
		d.stop(ctx, in, runtime.StateTerminated, fmt.Sprintf("the lease ended at %s: wall-time limit", r.Ends.Format(time.RFC3339)))
		return
	}
	if changed {
		d.save(in)
	}
}

// sample reads the usage of a live instance: from its cgroup where it has
// one, else from its process group.
func (d *Driver) sample(in *inst, procs []procStat) {
	r := &in.rec
	var cpu time.Duration
	var peak, now uint64
	memKnown := false
	if r.Cgroup != "" {
		cpu, _ = cgroupCPU(r.Cgroup)
		peak, now, memKnown = cgroupMemory(r.Cgroup)
	}
	if r.Cgroup == "" || !memKnown {
		if procs == nil {
			procs, _ = scanProcs()
		}
		var gcpu uint64
		for _, m := range groupMembers(procs, r.PID, r.StartTicks) {
			gcpu += m.cpu
			now += m.rss * uint64(os.Getpagesize())
			peak += vmHWM(m.pid)
		}
		if r.Cgroup == "" {
			cpu = ticks(gcpu)
		}
	}
	r.CPU = max(r.CPU, cpu)
	r.MemoryPeak = max(r.MemoryPeak, peak)
	in.memNow = now
}

// answers reports whether something accepts connections on the port.
func (d *Driver) answers(port int) bool {
	host := d.cfg.BindHost
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 250*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ended records that the main process ended by itself (or while nobody
// watched it), kills what is left of the instance and saves it.
// watched says the driver saw the process alive in this run, so that its
// process group is known to be the instance's.
func (d *Driver) ended(in *inst, ws *unix.WaitStatus, cpu time.Duration, watched bool) {
	r := &in.rec
	r.CPU = max(r.CPU, cpu)
	if r.Cgroup != "" {
		if c, ok := cgroupCPU(r.Cgroup); ok {
			r.CPU = max(r.CPU, c)
		}
	}
	r.Ended = d.clk.Now().UTC()
	r.ExitCode = -1
	switch {
	case r.Terminating:
		r.State = runtime.StateTerminated
		if r.Reason == "" {
			r.Reason = "terminated"
		}
	case ws == nil:
		r.State = runtime.StateExited
		r.Reason = "the process ended while the node was not watching it; exit status unknown"
	case ws.Exited():
		r.State, r.ExitCode = runtime.StateExited, ws.ExitStatus()
		r.Reason = fmt.Sprintf("the process exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		r.State = runtime.StateExited
		r.Reason = fmt.Sprintf("the process was killed by signal %v", ws.Signal())
		switch ws.Signal() {
		case syscall.SIGXCPU:
			r.Reason += " (CPU time limit)"
		case syscall.SIGXFSZ:
			r.Reason += " (file size limit: the lease's disk)"
		}
	default:
		r.State = runtime.StateExited
		r.Reason = "the process ended: " + strconv.Itoa(int(*ws))
	}
	d.cleanup(in, watched)
	d.save(in)
	d.log.Info("instance ended", "lease", r.LeaseID, "state", r.State, "reason", r.Reason)
}

// stop terminates a live instance: SIGTERM to its process group and
// cgroup, SIGKILL after the grace (or when ctx ends), then waits for every
// process to be gone, reaps, cleans up and records the final state.
// in.mu is held.
func (d *Driver) stop(ctx context.Context, in *inst, final runtime.State, reason string) {
	r := &in.rec
	r.Terminating = true
	r.Reason = reason
	d.save(in)
	pid := r.PID
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	signalCgroup(r.Cgroup, syscall.SIGTERM)

	grace := time.NewTimer(d.cfg.StopGrace)
	defer grace.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	killed := false
	kill := func() {
		killed = true
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		signalCgroup(r.Cgroup, syscall.SIGKILL)
	}
	var ws *unix.WaitStatus
	var cpu time.Duration
	leaderGone := false
	hardStop := time.Now().Add(d.cfg.StopGrace + 10*time.Second)
	for {
		if !leaderGone {
			var live bool
			live, ws, cpu = alive(r)
			leaderGone = !live
		}
		if leaderGone && d.groupGone(r) {
			break
		}
		if time.Now().After(hardStop) {
			d.log.Error("instance processes survive SIGKILL", "lease", r.LeaseID, "pid", pid)
			break
		}
		select {
		case <-tick.C:
		case <-grace.C:
			if !killed {
				kill()
			}
		case <-ctx.Done():
			if !killed {
				kill()
			}
		}
	}
	d.ended(in, ws, cpu, true)
	r.State = final
	r.Reason = reason
	if killed {
		r.Reason += fmt.Sprintf(" (killed after a %v grace)", d.cfg.StopGrace)
	}
	d.save(in)
}

// groupGone reports whether no process of the instance is left: none in
// its cgroup, none in its process group. It sends a SIGKILL to members
// that remain once their leader is gone only when asked, not here.
func (d *Driver) groupGone(r *record) bool {
	if r.Cgroup != "" && len(cgroupProcs(r.Cgroup)) > 0 {
		return false
	}
	procs, err := scanProcs()
	if err != nil {
		return true
	}
	return len(groupMembers(procs, r.PID, r.StartTicks)) == 0
}

// cleanup kills what is left of an ended instance and frees its
// resources: its cgroup, its files but the record and output. Members of
// its process group are killed only when watched: the driver saw the
// leader in this run, so the group cannot be another's that reused the
// number; otherwise only the cgroup tells the instance's processes.
func (d *Driver) cleanup(in *inst, watched bool) {
	r := &in.rec
	if watched && r.PID > 0 {
		if procs, err := scanProcs(); err == nil {
			for _, m := range groupMembers(procs, r.PID, r.StartTicks) {
				_ = syscall.Kill(m.pid, syscall.SIGKILL)
			}
		}
	}
	if r.Cgroup != "" {
		signalCgroup(r.Cgroup, syscall.SIGKILL)
		if err := removeCgroup(r.Cgroup); err != nil {
			d.log.Warn("remove instance cgroup", "lease", r.LeaseID, "cgroup", r.Cgroup, "err", err)
		} else {
			r.Cgroup = ""
		}
	}
	for _, p := range []string{"app", "tmp", "access_key", "bundle.tmp"} {
		_ = os.RemoveAll(filepath.Join(in.dir, p))
	}
}

// save writes the record, logging a failure: the state in memory is right
// and the next change writes it again.
func (d *Driver) save(in *inst) {
	if err := in.rec.save(in.dir); err != nil {
		d.log.Error("save instance record", "lease", in.rec.LeaseID, "err", err)
	}
}

// Extend implements runtime.Driver: the instance's record takes the new
// end, which moves the wall-time backstop (end + WallGrace), and the main
// process's RLIMIT_CPU is raised to match where the kernel lets it (a
// failure is noted in LimitNotes, not returned).
func (d *Driver) Extend(ctx context.Context, leaseID string, ends time.Time) (runtime.Instance, error) {
	op := "extend " + leaseID
	in, err := d.get(ctx, "extend", leaseID)
	if err != nil {
		return runtime.Instance{}, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	d.refresh(ctx, in, nil)
	r := &in.rec
	now := d.clk.Now()
	switch {
	case !r.State.Live():
		return runtime.Instance{}, fmt.Errorf("%s: the instance has ended (%s): %w", op, r.State, runtime.ErrInvalid)
	case ends.IsZero() || !ends.After(now):
		return runtime.Instance{}, fmt.Errorf("%s: end %s is not in the future: %w", op, ends.UTC().Format(time.RFC3339), runtime.ErrInvalid)
	}
	r.Ends = ends.UTC()
	for i, e := range r.Enforced {
		switch e.Limit {
		case runtime.LimitWallTime:
			r.Enforced[i].Value = r.Ends.Add(d.cfg.WallGrace).Format(time.RFC3339)
		case runtime.LimitCPUTime:
			if cpu, ok := d.raiseCPU(r, ends.Sub(r.Started)); ok {
				r.Enforced[i].Value = strconv.FormatUint(cpu, 10)
			} else {
				r.LimitNotes = append(r.LimitNotes, fmt.Sprintf("cpu time: RLIMIT_CPU not raised for the end %s", r.Ends.Format(time.RFC3339)))
			}
		}
	}
	d.save(in)
	d.publish(in)
	d.log.Info("instance extended", "lease", leaseID, "ends", r.Ends)
	return r.instance(now), nil
}

// raiseCPU raises the main process's RLIMIT_CPU for a wall time since its
// start, as rlimitsFor computes it. in.mu is held.
func (d *Driver) raiseCPU(r *record, wall time.Duration) (uint64, bool) {
	for _, l := range rlimitsFor(r.Limits, wall, d.cfg.CPUTimeSlack, d.cfg.MaxOpenFiles) {
		if l.resource != unix.RLIMIT_CPU {
			continue
		}
		lim := unix.Rlimit{Cur: l.value, Max: l.hard}
		if err := unix.Prlimit(r.PID, unix.RLIMIT_CPU, &lim, nil); err != nil {
			d.log.Warn("raise RLIMIT_CPU", "lease", r.LeaseID, "pid", r.PID, "err", err)
			return 0, false
		}
		return l.value, true
	}
	return 0, false
}
