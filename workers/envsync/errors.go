package envsync

import "errors"

// Sentinel errors; compare with [errors.Is].
var (
	// ErrConfig: the worker configuration is invalid.
	ErrConfig = errors.New("invalid envsync config")
	// ErrParse: the env file does not parse. The error names the line only.
	ErrParse = errors.New("env file does not parse")
	// ErrBadKey: an env key cannot be represented as a KV key.
	ErrBadKey = errors.New("env key cannot be stored")
	// ErrFileMissing: Gogs answered 404 for the env file at the pushed commit.
	ErrFileMissing = errors.New("env file not found at the pushed commit")
	// ErrBusy: another replica is applying an event to the same target right
	// now; the event is retried.
	ErrBusy = errors.New("target is being applied by another worker")
	// ErrConflict: a concurrent writer changed the target during the apply;
	// the event is retried.
	ErrConflict = errors.New("target changed during apply")
)
