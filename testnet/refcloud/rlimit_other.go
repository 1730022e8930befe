//go:build !linux

package refcloud

// setRlimits sets nothing off Linux: prlimit(2) is Linux's.
func setRlimits(pid int, req CreateInstance) ([]Enforcement, []string) {
	return nil, []string{"no limits enforced: the reference cloud sets rlimits on Linux only"}
}
