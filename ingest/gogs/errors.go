package gogs

import "errors"

// Sentinel errors returned by this package; compare with [errors.Is]. The
// HTTP layer maps ErrMissingSignature and ErrBadSignature to 401,
// ErrUnsupportedMediaType to 415, ErrMalformed, ErrBadEventName and
// ErrMissingEvent to 400.
var (
	// ErrMissingSignature: the delivery carries no signature (a hook without
	// a secret sends an empty X-Gogs-Signature).
	ErrMissingSignature = errors.New("missing signature")
	// ErrBadSignature: the signature is malformed or matches no configured
	// secret.
	ErrBadSignature = errors.New("bad signature")
	// ErrUnsupportedMediaType: the content type is neither application/json
	// nor application/x-www-form-urlencoded.
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrMalformed: the body, payload or delivery id cannot be what Gogs
	// sends (not a JSON object, a required field missing, ...).
	ErrMalformed = errors.New("malformed delivery")
	// ErrBadEventName: the event name is not [a-z][a-z0-9_]{0,63}.
	ErrBadEventName = errors.New("bad event name")
	// ErrMissingEvent: the delivery names no event (no X-Gogs-Event).
	ErrMissingEvent = errors.New("missing event name")
	// ErrNoInstance: Normalize was called without a forge instance name, a
	// configuration error rather than a bad delivery.
	ErrNoInstance = errors.New("no forge instance name")
)
