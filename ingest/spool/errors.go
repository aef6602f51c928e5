package spool

import "errors"

// Sentinel errors returned by this package; compare with [errors.Is].
var (
	// ErrFull is returned by [Spool.Append] when the entry would take the
	// spool past its [Limits]. Nothing was written; the caller answers 503
	// with Retry-After.
	ErrFull = errors.New("spool full")
	// ErrLocked is returned by [Open] when another process (or another
	// [Spool] in this process) holds the directory's LOCK file.
	ErrLocked = errors.New("spool directory locked by another process")
	// ErrClosed is returned by any method called after [Spool.Close], and
	// by [Spool.Forward] when the spool is closed under it.
	ErrClosed = errors.New("spool closed")
	// ErrBadEntry is returned by [Spool.Append] for an entry that can never
	// be published: no MsgID or Subject, a subject with blanks or control
	// characters, or fields too large for the record format.
	ErrBadEntry = errors.New("bad spool entry")
	// ErrForwarding is returned by [Spool.Forward] when another Forward is
	// already running on the same spool: only one may, to keep the order.
	ErrForwarding = errors.New("spool already has a forwarder")
)
