package ingest

import (
	"fmt"
	"time"
)

// Defaults applied by [NewHandler] to the zero fields of a [Config].
const (
	DefaultMaxBodyBytes = 5 << 20 // 5 MiB
	// DefaultMaxInFlight bounds concurrent requests; a request waiting for
	// its body costs a few KiB, so this many stay far below 300 MiB.
	DefaultMaxInFlight = 4096
	// DefaultMaxBufferedBytes bounds the body bytes held by all requests at
	// once: a dozen bodies of the default maximum size.
	DefaultMaxBufferedBytes = 64 << 20 // 64 MiB
	DefaultPublishTimeout   = 3 * time.Second
	DefaultRetryAfter       = 5 * time.Second
	DefaultInstance         = "gogs"

	// MaxPublishTimeout bounds PublishTimeout: Gogs gives up on a delivery
	// after 15 s, and the answer must reach it well before.
	MaxPublishTimeout = 10 * time.Second
)

// Config configures a [Handler]. Zero values mean the defaults above.
type Config struct {
	// Secrets are the webhook secrets. A delivery signed with any of them is
	// accepted, so a secret can be rotated by configuring the old and the
	// new one at once. An empty secret is an error.
	Secrets [][]byte
	// AllowUnsigned accepts deliveries with an empty or missing
	// X-Gogs-Signature (a hook with no secret), but only while no secret is
	// configured: with one, an unsigned delivery is refused whatever this
	// says. A signature that is present but matches no secret is rejected.
	// With no secret configured, [NewHandler] fails unless this is true.
	AllowUnsigned bool
	// MaxBodyBytes caps a delivery's body; default 5 MiB.
	MaxBodyBytes int64
	// MaxInFlight bounds the requests handled at once; past it a request
	// is answered 503 with Retry-After before its body is read. Default
	// [DefaultMaxInFlight].
	MaxInFlight int
	// MaxBufferedBytes bounds the memory all requests' bodies take at once
	// (buffers grow as bytes arrive, never from Content-Length); a request
	// whose body would pass it is answered 503 with Retry-After. At least
	// MaxBodyBytes; default [DefaultMaxBufferedBytes].
	MaxBufferedBytes int64
	// PublishTimeout bounds the wait for the JetStream ack; default 3 s, at
	// most [MaxPublishTimeout].
	PublishTimeout time.Duration
	// RetryAfter is the Retry-After of a 503, rounded up to whole seconds;
	// default 5 s.
	RetryAfter time.Duration
	// Instance names the forge instance: the second token of the event
	// subjects; default "gogs".
	Instance string
	// Source overrides the CloudEvents source; empty means derive it from
	// each payload's repository URL.
	Source string
}

// withDefaults returns c with its zero fields set to the defaults and its
// secrets copied, so the caller may reuse its slices.
func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = max(DefaultMaxBufferedBytes, c.MaxBodyBytes+1)
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.Instance == "" {
		c.Instance = DefaultInstance
	}
	secrets := make([][]byte, len(c.Secrets))
	for i, s := range c.Secrets {
		secrets[i] = append([]byte(nil), s...)
	}
	c.Secrets = secrets
	return c
}

// Validate reports whether c, with its zero fields read as the defaults,
// can run a handler. It returns [ErrNoSecret] when there is no secret and
// AllowUnsigned is false, and an error wrapping [ErrInvalidConfig] for
// anything else. Errors name the setting, never a secret's value.
func (c Config) Validate() error {
	c = c.withDefaults()
	if len(c.Secrets) == 0 && !c.AllowUnsigned {
		return ErrNoSecret
	}
	for i, s := range c.Secrets {
		if len(s) == 0 {
			return fmt.Errorf("%w: secret %d of %d is empty", ErrInvalidConfig, i+1, len(c.Secrets))
		}
	}
	switch {
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("%w: max body bytes %d is negative", ErrInvalidConfig, c.MaxBodyBytes)
	case c.MaxInFlight < 0:
		return fmt.Errorf("%w: max in flight %d is negative", ErrInvalidConfig, c.MaxInFlight)
	case c.MaxBufferedBytes <= c.MaxBodyBytes:
		return fmt.Errorf("%w: max buffered bytes %d must be more than max body bytes %d", ErrInvalidConfig, c.MaxBufferedBytes, c.MaxBodyBytes)
	case c.PublishTimeout < 0 || c.PublishTimeout > MaxPublishTimeout:
		return fmt.Errorf("%w: publish timeout %s is not in (0, %s]", ErrInvalidConfig, c.PublishTimeout, MaxPublishTimeout)
	case c.RetryAfter < 0:
		return fmt.Errorf("%w: retry after %s is negative", ErrInvalidConfig, c.RetryAfter)
	}
	return nil
}
