package refcloud

import "time"

// The JSON bodies of the contract (docs/driver-http.yaml). Sizes are
// bytes, times RFC 3339 in UTC, durations integer milliseconds.

// Resources is an amount of vCPU, memory, disk and instance slots.
type Resources struct {
	VCPU      uint32 `json:"vcpu"`
	Memory    uint64 `json:"memory"`
	Disk      uint64 `json:"disk"`
	Instances uint32 `json:"instances"`
}

// Profile is a hardware profile and how many more instances of it fit.
type Profile struct {
	Profile  string `json:"profile"`
	VCPU     uint32 `json:"vcpu"`
	Memory   uint64 `json:"memory"`
	Disk     uint64 `json:"disk"`
	Arch     string `json:"arch,omitempty"`
	GPUs     uint32 `json:"gpus,omitempty"`
	GPUModel string `json:"gpu_model,omitempty"`
	Slots    uint32 `json:"slots"`
}

// Utilization is what the live instances use.
type Utilization struct {
	Instances uint32 `json:"instances"`
	CPUMs     uint64 `json:"cpu_ms"`
	Memory    uint64 `json:"memory"`
}

// Capacity is the answer of GET /v1/capacity.
type Capacity struct {
	Profiles    []Profile   `json:"profiles"`
	Total       Resources   `json:"total"`
	Free        Resources   `json:"free"`
	Utilization Utilization `json:"utilization"`
}

// Limits are a lease's resources.
type Limits struct {
	VCPU   uint32 `json:"vcpu"`
	Memory uint64 `json:"memory"`
	Disk   uint64 `json:"disk"`
}

// Appliance names what to run and where to pull it.
type Appliance struct {
	CID    string `json:"cid"`
	Size   uint64 `json:"size"`
	Format string `json:"format,omitempty"`
	URL    string `json:"url"`
}

// CreateInstance is the body of PUT /v1/instances/{lease_id}.
type CreateInstance struct {
	Appliance Appliance         `json:"appliance"`
	Limits    Limits            `json:"limits"`
	AccessKey string            `json:"access_key"`
	Ends      *time.Time        `json:"ends,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// ExtendInstance is the body of PATCH /v1/instances/{lease_id}.
type ExtendInstance struct {
	Ends time.Time `json:"ends"`
}

// Usage are an instance's counters.
type Usage struct {
	CPUMs      uint64 `json:"cpu_ms"`
	WallMs     uint64 `json:"wall_ms"`
	MemoryPeak uint64 `json:"memory_peak"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	Network    bool   `json:"network"`
}

// Enforcement is one limit as the cloud enforces it.
type Enforcement struct {
	Limit     string `json:"limit"`
	Mechanism string `json:"mechanism"`
	Control   string `json:"control"`
	Value     string `json:"value"`
}

// Instance is an instance as the contract reports it.
type Instance struct {
	LeaseID    string        `json:"lease_id"`
	State      string        `json:"state"`
	Endpoint   string        `json:"endpoint,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	ExitCode   int           `json:"exit_code"`
	Created    time.Time     `json:"created"`
	Started    *time.Time    `json:"started,omitempty"`
	Ended      *time.Time    `json:"ended,omitempty"`
	Ends       *time.Time    `json:"ends,omitempty"`
	Limits     Limits        `json:"limits"`
	Enforced   []Enforcement `json:"enforced"`
	LimitNotes []string      `json:"limit_notes"`
	Usage      Usage         `json:"usage"`
}

// InstanceList is the answer of GET /v1/instances.
type InstanceList struct {
	Instances []Instance `json:"instances"`
}

// Error is every error answer.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Error codes.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeExists           = "exists"
	CodeNoCapacity       = "no_capacity"
	CodeApplianceRefused = "appliance_refused"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
)

// States.
const (
	StateProvisioning = "provisioning"
	StateRunning      = "running"
	StateExited       = "exited"
	StateFailed       = "failed"
	StateTerminated   = "terminated"
)

func live(state string) bool { return state == StateProvisioning || state == StateRunning }
