package protocol

import "errors"

// Error kinds returned (wrapped) by decoding and validation. Callers tell
// them apart with errors.Is; the pubsub validators map them to verdicts:
// everything but ErrStale and ErrDuplicate means the sender misbehaved.
var (
	// ErrMalformed: the bytes are not a canonical record of the expected type.
	ErrMalformed = errors.New("malformed record")
	// ErrTooLarge: the encoded record is larger than the limit allows.
	ErrTooLarge = errors.New("record too large")
	// ErrUnknownVersion: the record's version is not one this node knows.
	ErrUnknownVersion = errors.New("unknown record version")
	// ErrBadSignature: the signature does not verify against the author's key.
	ErrBadSignature = errors.New("bad signature")
	// ErrAuthorMismatch: the record is signed, but by someone other than the
	// peer it names as its author.
	ErrAuthorMismatch = errors.New("author is not the signer")
	// ErrExpired: the record's validity ended before now (minus clock skew).
	ErrExpired = errors.New("record expired")
	// ErrFarFuture: the record claims a time too far ahead of now.
	ErrFarFuture = errors.New("record from the far future")
	// ErrInvalid: a field is out of range or inconsistent.
	ErrInvalid = errors.New("invalid record")
	// ErrStale: a newer copy of the same record is already held.
	ErrStale = errors.New("stale record")
	// ErrDuplicate: exactly this record is already held.
	ErrDuplicate = errors.New("duplicate record")
)
