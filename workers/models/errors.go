package models

import "errors"

// Sentinel errors; compare with [errors.Is].
var (
	// ErrConfig is returned (wrapped) for an invalid configuration.
	ErrConfig = errors.New("invalid models config")
	// ErrBadEvent is returned (wrapped, and marked permanent) for an event
	// whose payload cannot be decoded or names something unsafe.
	ErrBadEvent = errors.New("bad event")
	// ErrStatus is returned (wrapped) when the refresh endpoint answers with
	// a non-2xx status; marked permanent unless the status is 408, 429 or
	// 5xx.
	ErrStatus = errors.New("refresh endpoint refused")
	// ErrCommand is returned (wrapped, and marked permanent) when the
	// rule's command fails or times out.
	ErrCommand = errors.New("refresh command failed")
	// ErrContention is returned (wrapped, transient) when replicas kept
	// overwriting a branch's last run while this one tried to record it.
	ErrContention = errors.New("state updated concurrently")
)

// Name is the worker's name: its consumer, its results' subject token and
// its section of the config file (workers.models).
const Name = "models"
