package runtime

import (
	"fmt"
	"strings"
)

// MaxAccessKey is the largest access key a Spec may carry, in bytes.
const MaxAccessKey = 16 << 10

// ValidateLeaseID checks a lease ID as drivers use it: in file names,
// cgroup names and URL paths. It must be 1 to 128 characters of A-Z, a-z,
// 0-9, '.', '_' and '-', not starting with a dot. A lease CID qualifies.
func ValidateLeaseID(id string) error {
	ok := len(id) >= 1 && len(id) <= 128 && id[0] != '.'
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("lease ID %q: want 1 to 128 characters of A-Z a-z 0-9 . _ - not starting with a dot, such as the lease's CID: %w", id, ErrInvalid)
	}
	return nil
}

// ReservedEnv reports whether an environment variable is one a driver sets
// itself, which a Spec's Env may not replace.
func ReservedEnv(name string) bool {
	switch name {
	case "PORT", "HOST", "PATH", "HOME", "TMPDIR":
		return true
	}
	return strings.HasPrefix(name, "SPOTMESH_")
}

// Validate checks what every driver needs of a Spec: the lease ID, the
// appliance's CID, the limits and the environment.
func (s Spec) Validate() error {
	if err := ValidateLeaseID(s.LeaseID); err != nil {
		return err
	}
	bad := func(field, why string) error {
		return fmt.Errorf("lease %s: %s: %s: %w", s.LeaseID, field, why, ErrInvalid)
	}
	if !s.Appliance.CID.Defined() && s.Appliance.Path == "" && s.Appliance.Open == nil {
		return bad("Appliance", "no CID, Path or Open: name the appliance to run")
	}
	if s.Limits.VCPU == 0 {
		return bad("Limits.VCPU", "0: want at least 1 vCPU")
	}
	if s.Limits.Memory < 1<<20 {
		return bad("Limits.Memory", fmt.Sprintf("%d bytes: want at least 1 MiB", s.Limits.Memory))
	}
	if s.Limits.Disk < 1<<20 {
		return bad("Limits.Disk", fmt.Sprintf("%d bytes: want at least 1 MiB", s.Limits.Disk))
	}
	if len(s.AccessKey) > MaxAccessKey {
		return bad("AccessKey", fmt.Sprintf("%d bytes: want at most %d", len(s.AccessKey), MaxAccessKey))
	}
	for k, v := range s.Env {
		if !envName(k) {
			return bad("Env", fmt.Sprintf("name %q: want upper-case letters, digits and _, not starting with a digit", k))
		}
		if ReservedEnv(k) {
			return bad("Env", fmt.Sprintf("%s is set by the driver and cannot be replaced", k))
		}
		if strings.IndexByte(v, 0) >= 0 {
			return bad("Env", fmt.Sprintf("%s holds a NUL byte", k))
		}
	}
	return nil
}

func envName(k string) bool {
	if k == "" || len(k) > 128 || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
