package spool

import "time"

// ForwardOption changes how [Spool.Forward] publishes.
type ForwardOption func(*forwardOptions)

type forwardOptions struct {
	timeout    time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	stream     string
}

// WithPublishTimeout bounds each publish attempt (default 2s).
func WithPublishTimeout(d time.Duration) ForwardOption {
	return func(o *forwardOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithBackoff sets the first and the longest pause between failed publish
// attempts (default 50ms and 2s); the pause doubles, with jitter.
func WithBackoff(initial, maxDelay time.Duration) ForwardOption {
	return func(o *forwardOptions) {
		if initial > 0 {
			o.minBackoff = initial
		}
		if maxDelay >= o.minBackoff {
			o.maxBackoff = maxDelay
		}
	}
}

// WithExpectStream sets the stream every publish must land in (default
// [schemas.StreamEvents]).
func WithExpectStream(stream string) ForwardOption {
	return func(o *forwardOptions) {
		if stream != "" {
			o.stream = stream
		}
	}
}
