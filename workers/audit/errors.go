package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors; compare with [errors.Is].
var (
	// ErrBroken: the chain does not verify. The error is a *[BrokenError].
	ErrBroken = errors.New("audit chain is broken")
	// ErrHead: the last record of FORGE_AUDIT cannot be read as a record, so
	// nothing can be chained to it. An operator must look.
	ErrHead = errors.New("audit head is not a valid record")
)

// BrokenError names the first record that does not verify.
type BrokenError struct {
	// Index is the 0-based position of the record in the file or walk.
	Index int
	// Seq is the record's sequence, when it could be read (0 otherwise).
	Seq uint64
	// Reason says what is wrong.
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("%v at record %d (seq %d): %s", ErrBroken, e.Index+1, e.Seq, e.Reason)
}

// Unwrap returns [ErrBroken].
func (e *BrokenError) Unwrap() error { return ErrBroken }
