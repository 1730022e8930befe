package process

import (
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/spotmesh/spotmesh/node/runtime"
	"github.com/spotmesh/spotmesh/protocol"
)

// Config tunes a Driver. Start from DefaultConfig and set Dir.
type Config struct {
	// Dir is the driver's state directory, which the node gives it: one
	// directory per instance with its JSON record, its files and its
	// output. It must survive restarts: the records are how instances are
	// re-adopted.
	Dir string
	// BindHost is the address instances are told to listen on (HOST) and
	// on which free ports are picked.
	BindHost string
	// AdvertiseHost is the host in the endpoints handed to buyers; empty
	// means BindHost. Set it to the machine's public address when
	// BindHost is 0.0.0.0.
	AdvertiseHost string
	// Total is the size of the machine offered. A zero field is measured:
	// the CPUs, MemTotal of /proc/meminfo, the free space under Dir;
	// Instances defaults to 64.
	Total runtime.Resources
	// Profiles are the hardware profiles offered; empty means one profile
	// of 1 vCPU, 512 MiB of memory and 1 GiB of disk.
	Profiles []protocol.Hardware
	// Formats are the appliance formats run; an appliance of unknown
	// format ("") is run when it is a bundle.
	Formats []string
	// StartTimeout is how long an instance has to accept connections on
	// its PORT; after it, the instance failed and is stopped.
	StartTimeout time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL on Terminate.
	StopGrace time.Duration
	// WallGrace is how long past its lease's end an instance may run
	// before the driver terminates it (the node's own timer should have
	// ended it at the end).
	WallGrace time.Duration
	// CPUTimeSlack is added to the RLIMIT_CPU backstop: vCPU × the
	// lease's length + slack, per process.
	CPUTimeSlack time.Duration
	// MaxOpenFiles is RLIMIT_NOFILE of every instance.
	MaxOpenFiles uint64
	// MaxPIDs is the cgroup pids.max of every instance.
	MaxPIDs uint64
	// Cgroup says where the cgroup v2 limits go: "auto" finds a writable
	// cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid
	// machines), "off" uses none, an absolute path names the mount.
	Cgroup string
	// CgroupParent is the cgroup, under the mount, that holds every
	// instance's cgroup (under a sub-cgroup per state directory). It is
	// outside the node's own cgroup on purpose: a service manager that
	// stops the node kills its cgroup, and instances outlive the node.
	CgroupParent string
	// Retention is how long the record of an ended instance is kept.
	Retention time.Duration
}

// DefaultConfig returns the configuration of a seller that runs bundles on
// its own machine, reachable on loopback only.
func DefaultConfig() Config {
	return Config{
		BindHost:     "127.0.0.1",
		Formats:      []string{"bundle"},
		StartTimeout: 2 * time.Minute,
		StopGrace:    10 * time.Second,
		WallGrace:    time.Minute,
		CPUTimeSlack: time.Minute,
		MaxOpenFiles: 4096,
		MaxPIDs:      1024,
		Cgroup:       "auto",
		CgroupParent: "spotmesh",
		Retention:    24 * time.Hour,
	}
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("process driver config: %s = %v: %s: %w", field, v, want, runtime.ErrInvalid)
	}
	switch {
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return bad("Dir", fmt.Sprintf("%q", c.Dir), "want the absolute path of the driver's state directory")
	case net.ParseIP(c.BindHost) == nil:
		return bad("BindHost", fmt.Sprintf("%q", c.BindHost), "want an IP address such as 127.0.0.1 or 0.0.0.0")
	case c.StartTimeout <= 0:
		return bad("StartTimeout", c.StartTimeout, "want a positive duration such as 2m")
	case c.StopGrace <= 0:
		return bad("StopGrace", c.StopGrace, "want a positive duration such as 10s")
	case c.WallGrace < 0:
		return bad("WallGrace", c.WallGrace, "want a duration of 0 or more such as 1m")
	case c.CPUTimeSlack < 0:
		return bad("CPUTimeSlack", c.CPUTimeSlack, "want a duration of 0 or more such as 1m")
	case c.MaxOpenFiles < 16:
		return bad("MaxOpenFiles", c.MaxOpenFiles, "want at least 16")
	case c.MaxPIDs < 1:
		return bad("MaxPIDs", c.MaxPIDs, "want at least 1")
	case c.Cgroup != "auto" && c.Cgroup != "off" && !filepath.IsAbs(c.Cgroup):
		return bad("Cgroup", fmt.Sprintf("%q", c.Cgroup), `want "auto", "off" or the absolute path of a cgroup2 mount`)
	case c.CgroupParent == "" || filepath.IsAbs(c.CgroupParent) || filepath.Clean(c.CgroupParent) != c.CgroupParent || c.CgroupParent == ".." || len(c.CgroupParent) > 2 && c.CgroupParent[:3] == "../":
		return bad("CgroupParent", fmt.Sprintf("%q", c.CgroupParent), "want a relative cgroup path such as spotmesh")
	case c.Retention < 0:
		return bad("Retention", c.Retention, "want a duration of 0 or more such as 24h")
	}
	if c.AdvertiseHost == "" && net.ParseIP(c.BindHost).IsUnspecified() {
		return bad("AdvertiseHost", `""`, "want the host buyers reach when BindHost is "+c.BindHost)
	}
	for i, p := range c.Profiles {
		if p.Profile == "" || p.VCPU == 0 || p.Memory == 0 || p.Disk == 0 {
			return bad(fmt.Sprintf("Profiles[%d]", i), p, "want a named profile with vCPU, memory and disk")
		}
	}
	return nil
}

// endpointHost is the host in endpoints.
func (c Config) endpointHost() string {
	if c.AdvertiseHost != "" {
		return c.AdvertiseHost
	}
	return c.BindHost
}

func defaultProfiles() []protocol.Hardware {
	return []protocol.Hardware{{Profile: "p1m512", VCPU: 1, Memory: 512 << 20, Disk: 1 << 30}}
}
