package runtime

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// RetrySettings configure the in-process retry of one delivery, on
// cenkalti/backoff/v4's exponential backoff. MaxElapsed 0 turns in-process
// retry off: each delivery then calls the handler once, and a transient
// failure is retried by JetStream redelivery only.
type RetrySettings struct {
	// Initial is the first wait between two tries.
	Initial time.Duration `yaml:"initial"`
	// MaxInterval caps one wait.
	MaxInterval time.Duration `yaml:"max_interval"`
	// Multiplier grows the wait after each try (≥ 1).
	Multiplier float64 `yaml:"multiplier"`
	// MaxElapsed bounds all tries of one delivery; past it the delivery is
	// nak'ed with a delay (see [Settings.NakDelays]).
	MaxElapsed time.Duration `yaml:"max_elapsed"`
}

// Settings are the runtime settings of one worker: the `runtime:` key of its
// section in the config file. Every replica of a worker should run with the
// same settings; the consumer is updated to the last one started.
type Settings struct {
	// MaxInFlight is how many jobs one replica runs at once.
	MaxInFlight int `yaml:"max_in_flight"`
	// JobTimeout bounds one delivery: every in-process try of the handler.
	// A job that times out is a transient failure. When it is at most half
	// of AckWait, a replica pulls ahead (up to MaxInFlight messages
	// buffered), which is much faster for short jobs: a buffered message
	// then always starts before its ack timer runs out. Otherwise a replica
	// pulls only as many messages as it has free slots, so long jobs never
	// leave messages waiting in a buffer.
	JobTimeout time.Duration `yaml:"job_timeout"`
	// AckWait is how long JetStream waits for an ack before it hands the
	// message to another replica, and the lease of an event's running key.
	// A running job sends an in-progress heartbeat and rewrites its key
	// every AckWait/3, so only a dead replica's jobs move.
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxDeliver is how many deliveries an event gets: a transient failure
	// of delivery MaxDeliver sends it to the DLQ.
	MaxDeliver int `yaml:"max_deliver"`
	// Retry is the in-process retry inside one delivery.
	Retry RetrySettings `yaml:"retry"`
	// NakDelays is the redelivery delay after a failed delivery, by delivery
	// count: the first failed delivery waits NakDelays[0], the n-th
	// NakDelays[n-1], the last entry repeats. Empty means redeliver at once.
	NakDelays []time.Duration `yaml:"nak_delays"`
	// IdempotencyTTL is how long a handled event id is remembered: a
	// redelivery or replay within it is a duplicate.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// GracePeriod is how long a stop waits for in-flight jobs before it
	// cancels them and naks their messages.
	GracePeriod time.Duration `yaml:"grace_period"`
	// Replicas of the idempotency bucket (1, or 3 on a cluster); 0 means 1.
	Replicas int `yaml:"replicas"`
}

// Bounds of the settings.
const (
	maxInFlightLimit = 10000
	maxDeliverLimit  = 100
	minAckWait       = time.Second
)

// DefaultSettings returns the settings a worker gets for every key its
// `runtime:` section does not set.
func DefaultSettings() Settings {
	return Settings{
		MaxInFlight: 4,
		JobTimeout:  10 * time.Minute,
		AckWait:     30 * time.Second,
		MaxDeliver:  5,
		Retry: RetrySettings{
			Initial:     500 * time.Millisecond,
			MaxInterval: 10 * time.Second,
			Multiplier:  2,
			MaxElapsed:  30 * time.Second,
		},
		NakDelays:      []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute},
		IdempotencyTTL: 7 * 24 * time.Hour,
		GracePeriod:    20 * time.Second,
		Replicas:       1,
	}
}

// Validate reports the first setting that cannot work, wrapping
// [ErrInvalidSettings].
func (s Settings) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSettings}, a...)...)
	}
	switch {
	case s.MaxInFlight < 1 || s.MaxInFlight > maxInFlightLimit:
		return bad("max_in_flight %d: want 1 to %d", s.MaxInFlight, maxInFlightLimit)
	case s.JobTimeout <= 0:
		return bad("job_timeout %s: want more than 0", s.JobTimeout)
	case s.AckWait < minAckWait:
		return bad("ack_wait %s: want at least %s", s.AckWait, minAckWait)
	case s.MaxDeliver < 1 || s.MaxDeliver > maxDeliverLimit:
		return bad("max_deliver %d: want 1 to %d", s.MaxDeliver, maxDeliverLimit)
	case s.Retry.MaxElapsed < 0:
		return bad("retry.max_elapsed %s: want 0 (off) or more", s.Retry.MaxElapsed)
	case s.Retry.MaxElapsed > 0 && s.Retry.Initial <= 0:
		return bad("retry.initial %s: want more than 0", s.Retry.Initial)
	case s.Retry.MaxElapsed > 0 && s.Retry.MaxInterval < s.Retry.Initial:
		return bad("retry.max_interval %s: want at least retry.initial %s", s.Retry.MaxInterval, s.Retry.Initial)
	case s.Retry.MaxElapsed > 0 && s.Retry.Multiplier < 1:
		return bad("retry.multiplier %g: want at least 1", s.Retry.Multiplier)
	case s.IdempotencyTTL <= 0:
		return bad("idempotency_ttl %s: want more than 0", s.IdempotencyTTL)
	case s.GracePeriod < 0:
		return bad("grace_period %s: want 0 or more", s.GracePeriod)
	case s.Replicas < 0 || s.Replicas > 5:
		return bad("replicas %d: want 0 to 5", s.Replicas)
	}
	for i, d := range s.NakDelays {
		if d < 0 {
			return bad("nak_delays[%d] %s: want 0 or more", i, d)
		}
	}
	return nil
}

// prefetch reports whether a replica may pull ahead of its free slots.
func (s Settings) prefetch() bool { return s.JobTimeout <= s.AckWait/2 }

// nakDelay is the redelivery delay after failed delivery number attempt.
func (s Settings) nakDelay(attempt int) time.Duration {
	if len(s.NakDelays) == 0 {
		return 0
	}
	i := attempt - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s.NakDelays) {
		i = len(s.NakDelays) - 1
	}
	return s.NakDelays[i]
}

// Keys a worker's section may hold for the runtime; other top-level keys
// belong to the worker itself.
const (
	sectionRuntime = "runtime"
	sectionPolicy  = "policy"
)

var (
	settingsKeys = []string{"max_in_flight", "job_timeout", "ack_wait", "max_deliver", "retry",
		"nak_delays", "idempotency_ttl", "grace_period", "replicas"}
	retryKeys  = []string{"initial", "max_interval", "multiplier", "max_elapsed"}
	policyKeys = []string{"repos", "refs", "events", "senders", "deny_senders"}
)

// DecodeConfig decodes the generic part of a worker's section of the config
// file: the keys `runtime:` (into [DefaultSettings]) and `policy:`. Other
// keys belong to the worker and are ignored here; an unknown key inside
// `runtime:` or `policy:` is an error, so a typo does not pass silently. A
// nil or empty node gives the defaults and an allow-all policy. The result
// is validated.
func DecodeConfig(node *yaml.Node) (Settings, Policy, error) {
	s := DefaultSettings()
	var p Policy
	if node == nil || node.Kind == 0 {
		return s, p, nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if node.Kind != yaml.MappingNode {
		if node.Tag == "!!null" {
			return s, p, nil
		}
		return s, p, fmt.Errorf("%w: worker section (line %d) is not a mapping", ErrInvalidSettings, node.Line)
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		key, val := node.Content[i], node.Content[i+1]
		switch key.Value {
		case sectionRuntime:
			if err := checkKeys(val, sectionRuntime, settingsKeys); err != nil {
				return s, p, err
			}
			if r := mappingValue(val, "retry"); r != nil {
				if err := checkKeys(r, sectionRuntime+".retry", retryKeys); err != nil {
					return s, p, err
				}
			}
			if err := val.Decode(&s); err != nil {
				return s, p, fmt.Errorf("%w: %s: %w", ErrInvalidSettings, sectionRuntime, err)
			}
		case sectionPolicy:
			if err := checkKeys(val, sectionPolicy, policyKeys); err != nil {
				return s, p, err
			}
			if err := val.Decode(&p); err != nil {
				return s, p, fmt.Errorf("%w: %s: %w", ErrInvalidSettings, sectionPolicy, err)
			}
		}
	}
	if err := s.Validate(); err != nil {
		return s, p, err
	}
	if err := p.Validate(); err != nil {
		return s, p, err
	}
	return s, p, nil
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func checkKeys(n *yaml.Node, where string, known []string) error {
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return nil
		}
		return fmt.Errorf("%w: %s (line %d) is not a mapping", ErrInvalidSettings, where, n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		ok := false
		for _, want := range known {
			if k == want {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: %s: unknown key %q (line %d)", ErrInvalidSettings, where, k, n.Content[i].Line)
		}
	}
	return nil
}
