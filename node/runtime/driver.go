package runtime

import (
	"context"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spotmesh/spotmesh/protocol"
)

// Driver drives one cloud: the seller's machine (process), or a seller's
// own cloud behind a REST contract (http). Instances are named by their
// lease ID; a cloud holds at most one instance per lease. Methods are safe
// for concurrent use and every blocking one takes a context.
type Driver interface {
	// Name names the driver kind: "process", "http".
	Name() string
	// Recover is called once when the node starts, before the other
	// methods: the driver reloads the instances it knew, re-adopts those
	// that still run and marks those that ended meanwhile as exited. It
	// returns every instance it knows, as List does.
	Recover(ctx context.Context) ([]Instance, error)
	// Capacity reports the hardware profiles offered, total and free
	// resources, and utilization.
	Capacity(ctx context.Context) (Capacity, error)
	// Provision creates the instance of a lease from its appliance. It
	// returns once the instance exists, in state provisioning or running;
	// the appliance may still be on its way (an http driver's cloud pulls
	// it). It fails with ErrExists for a lease that has an instance,
	// ErrNoCapacity, ErrAppliance or ErrInvalid.
	Provision(ctx context.Context, spec Spec) (Instance, error)
	// Instance reports the state and usage of one instance, now.
	// ErrNotFound for a lease without one.
	Instance(ctx context.Context, leaseID string) (Instance, error)
	// List reports every instance the driver knows, live or ended (ended
	// ones are kept for a retention period).
	List(ctx context.Context) ([]Instance, error)
	// Terminate ends an instance: its processes are stopped (a grace
	// period, then killed) and its resources freed. It returns once they
	// are gone. Terminating an ended instance frees what is left and
	// changes nothing else; ErrNotFound for a lease without one.
	Terminate(ctx context.Context, leaseID string) (Instance, error)
	// Extend moves a live instance's end to ends (its lease was renewed):
	// the driver's backstops (wall time, CPU time) follow the new end, and
	// Instance.Ends reports it. It fails with ErrNotFound for a lease
	// without an instance, ErrInvalid for an ended instance or a zero or
	// past end.
	Extend(ctx context.Context, leaseID string, ends time.Time) (Instance, error)
	// Close releases the driver's own resources. Instances keep running:
	// they outlive the node, which re-adopts them with Recover.
	Close() error
}

// Spec is what Provision needs to create a lease's instance.
type Spec struct {
	// LeaseID names the instance: the lease's CID as a string, or any
	// name of 1 to 128 characters of A-Z a-z 0-9 . _ - (no leading dot).
	LeaseID string
	// Appliance is what runs.
	Appliance Appliance
	// Limits are the lease's resources, enforced as far as the cloud can.
	Limits Limits
	// AccessKey is the buyer's access key (an SSH public key, a token):
	// the instance finds it in a file named by SPOTMESH_ACCESS_KEY_FILE.
	AccessKey string
	// Ends is when the lease ends. The node's durable timer terminates the
	// instance then; drivers use it as a backstop (wall time, CPU time).
	// Zero means no end is known.
	Ends time.Time
	// Env is extra environment for the instance. Names are upper-case
	// letters, digits and _, and may not replace the variables the driver
	// sets (PORT, HOST, PATH, HOME, SPOTMESH_*).
	Env map[string]string
}

// Appliance is an appliance to run, as the node's appliance service holds
// it. A driver that runs it locally reads it through Open (or Path); one
// that hands it to a cloud passes CID, Size and GatewayURL on.
type Appliance struct {
	// CID names the appliance's bytes (a UnixFS file DAG).
	CID cid.Cid
	// Size is its size in bytes.
	Size uint64
	// Format is the appliance format ("bundle" for a tar archive with an
	// executable run at its root, or one executable); empty when unknown.
	Format string
	// Path, if set, is a local file with the appliance's bytes.
	Path string
	// Open, if set (and Path is not), opens the appliance's bytes.
	Open func(ctx context.Context) (io.ReadCloser, error)
	// GatewayURL is the base URL of the node's appliance gateway, from
	// which a cloud pulls <GatewayURL>/ipfs/<CID>.
	GatewayURL string
}

// Limits are the resources of one lease.
type Limits struct {
	// VCPU is the number of virtual CPUs.
	VCPU uint32
	// Memory and Disk are in bytes.
	Memory uint64
	Disk   uint64
}

// State is an instance's state.
type State string

// Instance states. Provisioning and running are live; exited, failed and
// terminated are ended and final.
const (
	// StateProvisioning: being created: appliance on its way, processes
	// starting, endpoint not answering yet.
	StateProvisioning State = "provisioning"
	// StateRunning: the endpoint accepts connections.
	StateRunning State = "running"
	// StateExited: the instance ended by itself (its main process exited)
	// or while nobody watched it.
	StateExited State = "exited"
	// StateFailed: it could not be provisioned or never came up.
	StateFailed State = "failed"
	// StateTerminated: ended by Terminate or by a driver's backstop.
	StateTerminated State = "terminated"
)

// Live reports whether s is provisioning or running.
func (s State) Live() bool { return s == StateProvisioning || s == StateRunning }

// Valid reports whether s is one of the five states.
func (s State) Valid() bool {
	switch s {
	case StateProvisioning, StateRunning, StateExited, StateFailed, StateTerminated:
		return true
	}
	return false
}

// Instance is one lease's instance as a driver sees it.
type Instance struct {
	LeaseID string
	State   State
	// Endpoint is the host:port handed to the buyer; empty until known.
	Endpoint string
	// Reason says, for an ended instance, why it ended, in words.
	Reason string
	// ExitCode is the main process's exit status when it exited and the
	// status is known, -1 otherwise (killed by a signal, not known).
	ExitCode int
	// PID is the main process's ID on this machine for a process driver's
	// instance, 0 for others.
	PID int
	// Created is when Provision was called; Started when the instance's
	// processes started; Ended when it ended (zero while live).
	Created time.Time
	Started time.Time
	Ended   time.Time
	// Ends is the lease's end as given in the Spec.
	Ends time.Time
	// Limits are the limits asked for; Enforced says how each was
	// enforced, and LimitNotes what could not be enforced and why.
	Limits     Limits
	Enforced   []Enforcement
	LimitNotes []string
	Usage      Usage
}

// Usage are an instance's counters since it started. They never decrease.
type Usage struct {
	// CPU is the CPU time (user and system) of all its processes.
	CPU time.Duration
	// Wall is the time since it started, until it ended.
	Wall time.Duration
	// MemoryPeak is the high-water mark of its resident memory, in bytes.
	MemoryPeak uint64
	// BytesIn and BytesOut count network traffic where the driver
	// measures it (Network true).
	BytesIn  uint64
	BytesOut uint64
	Network  bool
}

// Enforcement is one limit as a driver enforces it.
type Enforcement struct {
	// Limit is what is limited: one of the Limit… constants.
	Limit string
	// Mechanism is how: "rlimit", "cgroup", "driver" (the driver acts, as
	// for wall time) or "cloud" (the cloud says it enforces it).
	Mechanism string
	// Control names the knob: RLIMIT_DATA, memory.max, cpu.max, ...
	Control string
	// Value is the value set, in the control's own unit and syntax.
	Value string
}

// Limit names for Enforcement.Limit.
const (
	LimitVCPU      = "vcpu"
	LimitMemory    = "memory"
	LimitDisk      = "disk"
	LimitWallTime  = "wall_time"
	LimitCPUTime   = "cpu_time"
	LimitOpenFiles = "open_files"
	LimitPIDs      = "pids"
)

// Capacity is what a cloud can take, and how busy it is.
type Capacity struct {
	// Profiles are the hardware profiles the cloud offers, each with the
	// number of instances of it that fit in the free resources now.
	Profiles []Profile
	// Total is the cloud's size; Free what live instances leave of it.
	Total Resources
	Free  Resources
	// Utilization is what the live instances use.
	Utilization Utilization
}

// Profile is one hardware profile and how many more instances of it fit.
type Profile struct {
	Hardware protocol.Hardware
	// Slots is how many more instances of this profile fit now.
	Slots uint32
}

// Resources are an amount of vCPU, memory, disk and instance slots.
type Resources struct {
	VCPU      uint32
	Memory    uint64
	Disk      uint64
	Instances uint32
}

// Utilization is what live instances use at one moment.
type Utilization struct {
	// Instances is the number of live instances.
	Instances uint32
	// CPU is the CPU time the live instances have used so far; the
	// Runtime turns its growth between polls into a load figure.
	CPU time.Duration
	// Memory is their resident memory now, in bytes, where known.
	Memory uint64
}

// Fits reports how many instances of hw fit in r: the least of what each
// of vCPU, memory, disk and instance slots allows. A zero resource in hw
// does not limit.
func (r Resources) Fits(hw protocol.Hardware) uint32 {
	n := r.Instances
	if hw.VCPU > 0 {
		n = min(n, r.VCPU/hw.VCPU)
	}
	if hw.Memory > 0 {
		n = min(n, clamp32(r.Memory/hw.Memory))
	}
	if hw.Disk > 0 {
		n = min(n, clamp32(r.Disk/hw.Disk))
	}
	return n
}

// Covers reports whether r holds l and one instance slot.
func (r Resources) Covers(l Limits) bool {
	return r.Instances >= 1 && r.VCPU >= l.VCPU && r.Memory >= l.Memory && r.Disk >= l.Disk
}

// Sub returns r less l and one instance slot, never below zero.
func (r Resources) Sub(l Limits) Resources {
	sub32 := func(a, b uint32) uint32 {
		if a < b {
			return 0
		}
		return a - b
	}
	sub64 := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Resources{VCPU: sub32(r.VCPU, l.VCPU), Memory: sub64(r.Memory, l.Memory), Disk: sub64(r.Disk, l.Disk), Instances: sub32(r.Instances, 1)}
}

func clamp32(v uint64) uint32 {
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}
