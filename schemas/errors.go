package schemas

import "errors"

// Sentinel errors returned by this package; compare with [errors.Is].
var (
	// ErrBadSubject is returned when a subject does not have the shape its
	// parser expects, or a token does not unescape.
	ErrBadSubject = errors.New("malformed subject")
	// ErrInvalid is returned (wrapped, with the details) when a document does
	// not match its JSON Schema.
	ErrInvalid = errors.New("document does not match its schema")
	// ErrUnknownType is returned when an envelope's type has no schema.
	ErrUnknownType = errors.New("unknown event type")
)
