package refcloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
)

// inst is one instance.
type inst struct {
	id   string
	dir  string
	req  CreateInstance
	root cid.Cid

	mu       sync.Mutex // guards the fields below
	state    string
	reason   string
	exitCode int
	created  time.Time
	started  time.Time
	ended    time.Time
	endpoint string
	port     int
	pid      int // 0 until started
	cpu      time.Duration
	memPeak  uint64
	enforced []Enforcement
	notes    []string
	// stopping: a stop began; the provisioning goroutine starts nothing.
	stopping bool
	// done is closed once the process has been reaped (or never started
	// and never will).
	done   chan struct{}
	cancel context.CancelFunc
}

// reserved: the instance holds capacity (live).
func (in *inst) reserved() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return live(in.state)
}

// view reports the instance.
func (in *inst) view(c *Cloud) Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	ts := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC()
		return &t
	}
	v := Instance{
		LeaseID: in.id, State: in.state, Endpoint: in.endpoint, Reason: in.reason, ExitCode: in.exitCode,
		Created: in.created, Started: ts(in.started), Ended: ts(in.ended), Ends: in.req.Ends,
		Limits: in.req.Limits, Enforced: slices.Clone(in.enforced), LimitNotes: slices.Clone(in.notes),
		Usage: Usage{CPUMs: uint64(in.cpu / time.Millisecond), MemoryPeak: in.memPeak},
	}
	if v.Enforced == nil {
		v.Enforced = []Enforcement{}
	}
	if v.LimitNotes == nil {
		v.LimitNotes = []string{}
	}
	if !in.started.IsZero() {
		end := time.Now()
		if !in.ended.IsZero() {
			end = in.ended
		}
		v.Usage.WallMs = uint64(max(0, end.Sub(in.started)) / time.Millisecond)
	}
	return v
}

// refresh samples a live instance's usage, notices it answers on its
// port, fails it when it does not in time, and returns its view.
func (c *Cloud) refresh(in *inst) Instance {
	in.mu.Lock()
	if in.pid != 0 && live(in.state) {
		cpu, peak := groupUsage(in.pid)
		in.cpu, in.memPeak = max(in.cpu, cpu), max(in.memPeak, peak)
		if in.state == StateProvisioning {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(dialHost(c.cfg.BindHost), strconv.Itoa(in.port)), 250*time.Millisecond)
			if err == nil {
				conn.Close()
				in.state = StateRunning
				c.log.Info("instance running", "lease", in.id, "endpoint", in.endpoint)
			} else if time.Since(in.started) > c.cfg.StartTimeout {
				in.mu.Unlock()
				c.stop(in, StateFailed, fmt.Sprintf("did not accept connections on PORT %d within %v", in.port, c.cfg.StartTimeout))
				return in.view(c)
			}
		}
	}
	in.mu.Unlock()
	return in.view(c)
}

func dialHost(h string) string {
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return h
}

// fail ends an instance that could not be provisioned.
func (c *Cloud) fail(in *inst, reason string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if live(in.state) {
		in.state, in.reason, in.ended = StateFailed, reason, time.Now().UTC()
	}
	select {
	case <-in.done:
	default:
		close(in.done)
	}
	_ = os.RemoveAll(filepath.Join(in.dir, "app"))
	c.log.Info("instance failed", "lease", in.id, "reason", reason)
}

// provision pulls, verifies, unpacks and starts an instance.
func (c *Cloud) provision(ctx context.Context, in *inst) {
	defer c.wg.Done()
	defer in.cancel()
	app := filepath.Join(in.dir, "app")
	tmp := filepath.Join(in.dir, "tmp")
	for _, d := range []string{in.dir, app, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			c.fail(in, "create the instance's directory: "+err.Error())
			return
		}
	}
	bundle := filepath.Join(in.dir, "bundle")
	if err := pull(ctx, c.pull, in.req.Appliance.URL, in.root, in.req.Appliance.Size, bundle, filepath.Join(in.dir, "appliance.car")); err != nil {
		c.fail(in, err.Error())
		return
	}
	if err := unpack(bundle, app, in.req.Limits.Disk); err != nil {
		_ = os.Remove(bundle)
		c.fail(in, "appliance "+in.root.String()+": "+err.Error())
		return
	}
	_ = os.Remove(bundle)
	keyFile := filepath.Join(in.dir, "access_key")
	if err := os.WriteFile(keyFile, []byte(in.req.AccessKey), 0o600); err != nil {
		c.fail(in, err.Error())
		return
	}
	out, err := os.OpenFile(filepath.Join(in.dir, "output.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.fail(in, err.Error())
		return
	}
	defer out.Close()
	l, err := net.Listen("tcp", net.JoinHostPort(c.cfg.BindHost, "0"))
	if err != nil {
		c.fail(in, "pick a port: "+err.Error())
		return
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	host := c.cfg.AdvertiseHost
	if host == "" {
		host = c.cfg.BindHost
	}
	endpoint := net.JoinHostPort(host, strconv.Itoa(port))
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + app, "TMPDIR=" + tmp,
		"PORT=" + strconv.Itoa(port), "HOST=" + c.cfg.BindHost,
		"SPOTMESH_LEASE_ID=" + in.id, "SPOTMESH_ACCESS_KEY_FILE=" + keyFile, "SPOTMESH_ENDPOINT=" + endpoint,
		"SPOTMESH_VCPU=" + strconv.FormatUint(uint64(in.req.Limits.VCPU), 10),
		"SPOTMESH_MEMORY=" + strconv.FormatUint(in.req.Limits.Memory, 10),
		"SPOTMESH_DISK=" + strconv.FormatUint(in.req.Limits.Disk, 10),
		"SPOTMESH_APPLIANCE_CID=" + in.root.String(),
	}
	in.mu.Lock() // an extension may change the end meanwhile
	if in.req.Ends != nil {
		env = append(env, "SPOTMESH_LEASE_ENDS="+in.req.Ends.UTC().Format(time.RFC3339))
	}
	in.mu.Unlock()
	for k, v := range in.req.Env {
		env = append(env, k+"="+v)
	}
	run := filepath.Join(app, "run")
	cmd := &exec.Cmd{Path: run, Args: []string{run}, Dir: app, Env: env, Stdout: out, Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}}

	in.mu.Lock()
	if in.stopping || ctx.Err() != nil {
		in.mu.Unlock()
		c.fail(in, "stopped while provisioning")
		return
	}
	for attempt := 0; ; attempt++ {
		err = cmd.Start()
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 20 {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond) // a concurrent fork holds the new file open for a moment
		cmd = &exec.Cmd{Path: cmd.Path, Args: cmd.Args, Dir: cmd.Dir, Env: cmd.Env, Stdout: out, Stderr: out, SysProcAttr: cmd.SysProcAttr}
	}
	if err != nil {
		in.mu.Unlock()
		c.fail(in, "start ./run: "+err.Error())
		return
	}
	pid := cmd.Process.Pid
	in.enforced, in.notes = setRlimits(pid, in.req)
	in.pid, in.port, in.endpoint, in.started = pid, port, endpoint, time.Now().UTC()
	in.mu.Unlock()
	c.log.Info("instance started", "lease", in.id, "pid", pid, "endpoint", endpoint)

	c.wg.Add(1)
	go c.wait(in, cmd)
}

// wait reaps the instance's process and records how it ended.
func (c *Cloud) wait(in *inst, cmd *exec.Cmd) {
	defer c.wg.Done()
	_ = cmd.Wait()
	// What the process left in its group goes with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	in.mu.Lock()
	defer in.mu.Unlock()
	if ps := cmd.ProcessState; ps != nil {
		in.cpu = max(in.cpu, ps.UserTime()+ps.SystemTime())
		if live(in.state) {
			in.exitCode = ps.ExitCode()
			switch {
			case in.stopping:
				in.state = StateTerminated
			default:
				in.state = StateExited
				in.reason = "the process ended: " + ps.String()
			}
		}
	}
	if in.ended.IsZero() {
		in.ended = time.Now().UTC()
	}
	_ = os.RemoveAll(filepath.Join(in.dir, "app"))
	_ = os.RemoveAll(filepath.Join(in.dir, "tmp"))
	_ = os.Remove(filepath.Join(in.dir, "access_key"))
	close(in.done)
	c.log.Info("instance ended", "lease", in.id, "state", in.state, "reason", in.reason)
}

// stop ends an instance: the pull is canceled; a started process gets
// SIGTERM on its process group, SIGKILL after the grace; stop returns
// once it is reaped. A live instance ends in state final with reason.
func (c *Cloud) stop(in *inst, final, reason string) {
	in.mu.Lock()
	wasLive := live(in.state)
	in.stopping = true
	pid := in.pid
	if in.cancel != nil {
		in.cancel()
	}
	in.mu.Unlock()
	if wasLive && pid != 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(c.cfg.StopGrace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-in.done
		}
	} else if wasLive {
		<-in.done // the provisioning goroutine sees stopping and ends
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if wasLive {
		in.state, in.reason = final, reason
		if in.ended.IsZero() {
			in.ended = time.Now().UTC()
		}
	}
}
