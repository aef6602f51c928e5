package ingest

import "errors"

// Sentinel errors of this package; compare with [errors.Is].
var (
	// ErrNoSecret: the configuration has no webhook secret and does not
	// allow unsigned deliveries.
	ErrNoSecret = errors.New("no webhook secret configured and unsigned deliveries not allowed")
	// ErrInvalidConfig wraps every other problem [Config.Validate] finds.
	ErrInvalidConfig = errors.New("invalid ingest config")
	// ErrNoPublisher: [NewHandler] was given a nil [Publisher].
	ErrNoPublisher = errors.New("no publisher")
	// ErrSpoolFull is what a [Spooler] returns (wrapped or not) when it
	// cannot take another entry. The handler answers 503 then, as for any
	// other spool error, and counts it apart.
	ErrSpoolFull = errors.New("spool full")
)
