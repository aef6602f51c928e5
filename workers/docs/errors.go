package docs

import "errors"

// Sentinel errors; compare with [errors.Is].
var (
	// ErrConfig is returned (wrapped) for an invalid configuration.
	ErrConfig = errors.New("invalid docs config")
	// ErrBadEvent is returned (wrapped, and marked permanent) for an event
	// whose payload cannot be decoded or names something unsafe.
	ErrBadEvent = errors.New("bad event")
	// ErrBuild is returned (wrapped, and marked permanent) when the build
	// command fails, times out or leaves no site behind.
	ErrBuild = errors.New("build failed")
	// ErrPublish is returned (wrapped) when the built site cannot be
	// published; it is transient.
	ErrPublish = errors.New("publish failed")
)

// Name is the worker's name: its consumer, its results' subject token and
// its section of the config file (workers.docs).
const Name = "docs"
