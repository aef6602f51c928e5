package broker

import "errors"

var (
	// ErrListenInUse is returned when the embedded server's address is taken.
	ErrListenInUse = errors.New("listen address in use")
	// ErrNotReady is returned when the embedded server does not start in time.
	ErrNotReady = errors.New("embedded nats-server not ready")
)
