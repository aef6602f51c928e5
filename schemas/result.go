package schemas

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
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

// AppendJSON appends r as JSON: the bytes json.Marshal writes for it,
// without its reflection (every job of every worker publishes a result).
// What json.Marshal cannot encode (a time outside years 0 to 9999, a
// duration that is not a finite number) is an error here too.
func (r *Result) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"worker":`...)
	b = appendJSONString(b, r.Worker)
	b = append(b, `,"event_id":`...)
	b = appendJSONString(b, r.EventID)
	b = append(b, `,"event_type":`...)
	b = appendJSONString(b, r.EventType)
	b = append(b, `,"repo":`...)
	b = appendJSONString(b, r.Repo)
	if r.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendJSONString(b, r.Subject)
	}
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, string(r.Outcome))
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Attempt), 10)
	b = append(b, `,"duration_ms":`...)
	var err error
	if b, err = appendJSONFloat(b, r.DurationMS); err != nil {
		return nil, err
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
	}
	if r.Rule != "" {
		b = append(b, `,"rule":`...)
		b = appendJSONString(b, r.Rule)
	}
	if len(r.Detail) > 0 {
		b = append(b, `,"detail":{`...)
		keys := slices.Sorted(maps.Keys(r.Detail))
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Detail[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"started":`...)
	if b, err = appendJSONTime(b, r.Started); err != nil {
		return nil, err
	}
	b = append(b, `,"finished":`...)
	if b, err = appendJSONTime(b, r.Finished); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendJSONString appends s quoted as encoding/json quotes it: HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSONFloat appends f as encoding/json writes a float64.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
	}
	if n := f * 1000; n >= 0 && n < 1e15 && n == math.Trunc(n) && float64(int64(n))/1000 == f {
		// Whole microseconds in milliseconds, as every duration here is.
		// With at most 15 significant digits the decimal n/1000 is the
		// shortest that reads back as f, so it is what strconv writes;
		// written here, without strconv's deep stack on a job's fresh
		// goroutine.
		return appendMillis(b, int64(n)), nil
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendMillis appends n/1000 in decimal, without trailing zeros.
func appendMillis(b []byte, n int64) []byte {
	b = strconv.AppendInt(b, n/1000, 10)
	frac := n % 1000
	if frac == 0 {
		return b
	}
	digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	end := 3
	for digits[end-1] == '0' {
		end--
	}
	b = append(b, '.')
	return append(b, digits[:end]...)
}

// appendJSONTime appends t as time.Time's MarshalJSON writes it.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return append(b, '"'), nil
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
