package appliance

import "errors"

// Error kinds. Every error this package returns wraps one of them (or a
// context error), with the operation and the CID in its text; callers tell
// them apart with errors.Is.
var (
	// ErrNotFound: the appliance, or some block of it, is not on this node.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge: the content is larger than the limit of the fetch.
	ErrTooLarge = errors.New("appliance larger than the limit")
	// ErrStalled: no block arrived within the idle timeout: the peers that
	// hold the content stopped answering, or no peer holds a block.
	ErrStalled = errors.New("transfer stalled")
	// ErrCorrupt: a peer sent bytes that do not hash to the CID asked for.
	ErrCorrupt = errors.New("block does not match its CID")
	// ErrMalformed: the DAG is not a well-formed UnixFS file (a directory,
	// an unknown codec, sizes that do not add up, a block too large).
	ErrMalformed = errors.New("malformed appliance DAG")
	// ErrNotPinned: the appliance holds no pin of the given reason.
	ErrNotPinned = errors.New("not pinned")
	// ErrInvalid: an argument is out of range (a name, a reason, a CID).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotStarted: the operation needs the network and Start was not
	// called.
	ErrNotStarted = errors.New("appliance service not started")
	// ErrClosed: the service is closed.
	ErrClosed = errors.New("appliance service closed")
)
