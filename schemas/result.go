package schemas

import (
	"encoding/json"
	"time"
)

// Outcome is what a worker did with one event.
type Outcome string

// Every outcome a worker reports on [StreamResults].
const (
	// OutcomeSucceeded: the effect is done.
	OutcomeSucceeded Outcome = "succeeded"
	// OutcomeFailed: this attempt failed transiently; the event will be
	// delivered again.
	OutcomeFailed Outcome = "failed"
	// OutcomeDeadLettered: the worker gave up (a permanent error, or the last
	// allowed delivery failed); the event is in [StreamDLQ].
	OutcomeDeadLettered Outcome = "dead_lettered"
	// OutcomeDenied: the worker's policy refused the event.
	OutcomeDenied Outcome = "denied"
	// OutcomeDuplicate: the event already succeeded once; nothing was done.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeSuperseded: a newer event for the same target was already
	// handled; this older one was skipped.
	OutcomeSuperseded Outcome = "superseded"
)

// Terminal reports whether no further delivery of the event follows this
// outcome for this worker.
func (o Outcome) Terminal() bool { return o != OutcomeFailed }

// Result is published on [StreamResults] (subject [ResultSubject]) for every
// outcome of every delivery a worker handles.
type Result struct {
	Worker     string    `json:"worker"`
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	Repo       string    `json:"repo"`
	Subject    string    `json:"subject,omitempty"`
	Outcome    Outcome   `json:"outcome"`
	Attempt    int       `json:"attempt"`
	DurationMS float64   `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
	Rule       string    `json:"rule,omitempty"`
	Detail     Detail    `json:"detail,omitempty"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
}

// Detail carries a worker's own facts about an outcome (a build's output
// tail, an HTTP status, the keys changed). It never carries a secret or a
// synced value.
type Detail map[string]string

// DeadLetter is published on [StreamDLQ] (subject [DLQSubject]) when a worker
// gives up on an event.
type DeadLetter struct {
	Worker    string `json:"worker"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	Repo      string `json:"repo"`
	// EventSubject is the subject the event was published on, so a replay
	// can send it back.
	EventSubject string    `json:"event_subject"`
	Error        string    `json:"error"`
	Permanent    bool      `json:"permanent"`
	Attempts     int       `json:"attempts"`
	FirstTried   time.Time `json:"first_tried"`
	DeadAt       time.Time `json:"dead_at"`
	// Event is the original envelope, byte for byte.
	Event json.RawMessage `json:"event"`
}
