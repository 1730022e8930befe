package runtime

import "errors"

// Error kinds. Every error a Driver or the Runtime returns wraps one of
// them or a context error, with the operation and the lease ID in its text;
// callers tell them apart with errors.Is.
var (
	// ErrInvalid: an argument is out of range (a lease ID, a limit, an
	// environment variable name). The text names the field.
	ErrInvalid = errors.New("invalid argument")
	// ErrExists: an instance for that lease exists already.
	ErrExists = errors.New("instance exists")
	// ErrNotFound: no instance for that lease.
	ErrNotFound = errors.New("no such instance")
	// ErrNoCapacity: the cloud has not enough free vCPU, memory, disk or
	// instance slots for the lease's limits.
	ErrNoCapacity = errors.New("no capacity")
	// ErrAppliance: the appliance was refused: a format the driver does
	// not run, not a bundle, larger than the lease's disk, or bytes that do
	// not match its CID.
	ErrAppliance = errors.New("appliance refused")
	// ErrUnavailable: the cloud cannot be reached or failed (an http
	// driver's cloud down, a 5xx answer).
	ErrUnavailable = errors.New("cloud unavailable")
	// ErrUnsupported: the driver cannot run on this machine (the process
	// driver off Linux).
	ErrUnsupported = errors.New("not supported on this machine")
	// ErrClosed: the driver or the Runtime is closed.
	ErrClosed = errors.New("closed")
)
