package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors; compare with [errors.Is].
var (
	// ErrBroken: the log does not verify. The error is a *[BrokenError].
	ErrBroken = errors.New("audit log does not verify")
	// ErrHead: the last record of FORGE_AUDIT is not one this worker may
	// chain on (unreadable, unsigned, badly signed, or another key's), so
	// nothing is appended. An operator must look.
	ErrHead = errors.New("audit head is not a valid signed record")
)

// BrokenError names the first problem verify found.
type BrokenError struct {
	// Seq is the record concerned (0 when the problem is not one record's).
	Seq uint64
	// Kind is one of the Problem* kinds.
	Kind string
	// Reason says what is wrong.
	Reason string
	// More counts the other problems found.
	More int
}

func (e *BrokenError) Error() string {
	p := Problem{Seq: e.Seq, Kind: e.Kind, Message: e.Reason}
	if e.More > 0 {
		return fmt.Sprintf("%v: %s (and %d more problems)", ErrBroken, p, e.More)
	}
	return fmt.Sprintf("%v: %s", ErrBroken, p)
}

// Unwrap returns [ErrBroken].
func (e *BrokenError) Unwrap() error { return ErrBroken }
