package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes in error bodies. They are stable: clients switch on them.
const (
	CodeBadRequest       = "bad_request"            // 400: a parameter or body is wrong
	CodeUnauthorized     = "unauthorized"           // 401: missing or wrong bearer token
	CodeNotFound         = "not_found"              // 404: no such route or object
	CodeMethodNotAllowed = "method_not_allowed"     // 405
	CodeConflict         = "conflict"               // 409: the state forbids it (offer already withdrawn)
	CodeTooLarge         = "too_large"              // 413: body or appliance over the limit
	CodeUnsupportedMedia = "unsupported_media_type" // 415: body is not JSON
	CodePeerUnreachable  = "peer_unreachable"       // 502: a peer could not be dialled
	CodeTimeout          = "timeout"                // 504: the node took too long
	CodeInternal         = "internal"               // 500: a bug or a failure inside the node
	CodeUnavailable      = "unavailable"            // 503: the node is stopping, or the request was cancelled
	CodeStalled          = "stalled"                // 504: a transfer stopped: no block arrived for a while
	CodeCorrupt          = "corrupt"                // 502: a peer sent bytes that do not match their CID
	CodeMalformed        = "malformed"              // 502: the content is not a well-formed appliance DAG
	CodeNotPinned        = "not_pinned"             // 409: no pin of the reason given
	CodeRejected         = "rejected"               // 409: the seller refused the lease; reason and words say why
	CodeNoOffer          = "no_offer"               // 422: no offer of the book granted a lease; attempts say why
)

// ErrNotFound is what a Backend may wrap when the object asked for does not
// exist; the API answers 404. offers.ErrNotFound means the same.
var ErrNotFound = errors.New("not found")

// ErrUnreachable means no node answered at the API address: it is not
// running, or runs elsewhere. A Client wraps it in every transport failure.
var ErrUnreachable = errors.New("node unreachable")

// Error is a refusal by the API: the error body and the HTTP status. It is
// the body the server writes and the error the Client returns.
type Error struct {
	// Status is the HTTP status (not in the body).
	Status int `json:"-"`
	// Message says what was wrong and what to do.
	Message string `json:"error"`
	// Code is one of the Code constants.
	Code string `json:"code"`
	// Reason is a seller's refusal code (protocol reason) and Words the
	// same for people, with code rejected.
	Reason string `json:"reason,omitempty"`
	Words  string `json:"words,omitempty"`
	// Attempts are the offers tried, with code no_offer.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Error implements error.
func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%d %s (%s)", e.Status, http.StatusText(e.Status), e.Code)
	}
	return e.Message
}

// IsCode reports whether err is an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}
