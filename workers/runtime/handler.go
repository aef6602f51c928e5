package runtime

import (
	"context"
	"errors"

	"github.com/forgebus/forgebus/schemas"
)

// Handler does one worker's effect for one event. The runtime calls it after
// the policy and idempotency checks, retries it on a transient error, and
// publishes its outcome.
//
// Return (Report{}, nil) when the effect is done; a Report with Outcome
// [schemas.OutcomeSuperseded] when a newer event already won; an error
// wrapped with [Permanent] when retrying cannot help (bad input, a failed
// build); any other error is transient and retried.
//
// A handler must stop when ctx is done. The runtime keeps the message alive
// with in-progress heartbeats while the handler runs, however long it takes.
type Handler interface {
	Handle(ctx context.Context, ev *schemas.Envelope) (Report, error)
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, ev *schemas.Envelope) (Report, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, ev *schemas.Envelope) (Report, error) {
	return f(ctx, ev)
}

// Report is what a handler says about an outcome besides its error.
type Report struct {
	// Outcome is empty for succeeded, or [schemas.OutcomeSuperseded].
	Outcome schemas.Outcome
	// Detail goes into the published result (and, on failure, the dead
	// letter). Never a secret or a synced value.
	Detail schemas.Detail
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one retrying cannot fix: the event goes to the DLQ
// at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
