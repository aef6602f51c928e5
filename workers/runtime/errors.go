package runtime

import "errors"

// Sentinel errors returned by this package; compare with [errors.Is].
var (
	// ErrInvalidSettings is returned (wrapped, with the field) when a
	// worker's runtime settings, policy or config section are not usable.
	ErrInvalidSettings = errors.New("invalid worker settings")
	// ErrInvalidWorker is returned (wrapped) when a worker has no usable
	// name, subjects or handler.
	ErrInvalidWorker = errors.New("invalid worker")
	// ErrBadEnvelope is the (permanent) error of an event whose bytes do not
	// decode as a CloudEvents envelope.
	ErrBadEnvelope = errors.New("event is not a forgebus envelope")
	// ErrTooManyDeliveries is the error of an event delivered more often
	// than MaxDeliver allows, because replicas died while handling it: it is
	// dead-lettered without running the handler again.
	ErrTooManyDeliveries = errors.New("delivered more often than max_deliver")
	// ErrPanic wraps a handler's panic; the stack is in the error text.
	ErrPanic = errors.New("handler panicked")
	// ErrNotDeadLetter is returned by [Replay] for a sequence that is not a
	// dead letter in FORGE_DLQ (gone, or not a forgebus dead letter).
	ErrNotDeadLetter = errors.New("not a dead letter")
)
