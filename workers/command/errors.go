package command

import "errors"

// Sentinel errors returned by [Run]; compare with [errors.Is].
var (
	// ErrNoArgv is returned when the argv list is empty.
	ErrNoArgv = errors.New("empty argv")
	// ErrTimeout is returned when the command ran past its timeout and its
	// process group was killed.
	ErrTimeout = errors.New("command timed out")
	// ErrExit is returned (wrapped) when the command exited non-zero or was
	// killed by a signal.
	ErrExit = errors.New("command failed")
	// ErrIsolation is returned (wrapped) when a command's user or sandbox
	// settings are wrong or cannot be met on this machine.
	ErrIsolation = errors.New("command isolation")
)
