package audit

import (
	"encoding/json"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

// DefaultDetailKeys are the result Detail entries copied into records: the
// envsync worker's facts, which are key names and hashes only.
var DefaultDetailKeys = []string{"rule", "target", "commit", "keys_put", "keys_deleted", "keys_total", "env_sha256", "key_sha256", "skipped", "newer_event_id", "newer_commit", "already_applied"}

// newRecord builds the record for one source message. Only whitelisted
// fields are copied.
func newRecord(stream string, seq uint64, data []byte, detailKeys map[string]bool) schemas.AuditRecord {
	r := schemas.AuditRecord{Source: stream, SourceSeq: seq}
	switch stream {
	case schemas.StreamEvents:
		r.Kind = schemas.AuditKindEvent
		var ev schemas.Envelope
		if err := json.Unmarshal(data, &ev); err != nil {
			r.Note = "event does not decode"
			return r
		}
		r.Time, r.EventID, r.Repo, r.Sender, r.EventType = utc(ev.Time), ev.ID, ev.Repo, ev.Sender, ev.Event()
		if r.EventType == "" {
			r.EventType = ev.Type
		}
	case schemas.StreamResults:
		r.Kind = schemas.AuditKindResult
		var res schemas.Result
		if err := json.Unmarshal(data, &res); err != nil {
			r.Note = "result does not decode"
			return r
		}
		r.Time, r.EventID, r.Repo, r.EventType = utc(res.Finished), res.EventID, res.Repo, trimType(res.EventType)
		r.Outcome, r.Worker, r.Rule, r.Attempt = res.Outcome, res.Worker, res.Rule, res.Attempt
		r.Detail = pick(res.Detail, res.Worker, detailKeys)
	case schemas.StreamDLQ:
		r.Kind = schemas.AuditKindDeadLetter
		var dl schemas.DeadLetter
		if err := json.Unmarshal(data, &dl); err != nil {
			r.Note = "dead letter does not decode"
			return r
		}
		r.Time, r.EventID, r.Repo, r.EventType = utc(dl.DeadAt), dl.EventID, dl.Repo, trimType(dl.EventType)
		r.Outcome, r.Worker, r.Attempt = schemas.OutcomeDeadLettered, dl.Worker, dl.Attempts
		var ev struct {
			Sender string `json:"sender"`
		}
		if len(dl.Event) > 0 && json.Unmarshal(dl.Event, &ev) == nil {
			r.Sender = ev.Sender
		}
	default:
		r.Note = "unknown source stream"
	}
	return r
}

// pick copies the allow-listed Detail entries. A key may be prefixed with a
// rule name ("prod.keys_put", as envsync does for several rules); the last
// dot-separated part is what is matched.
func pick(d schemas.Detail, _ string, allow map[string]bool) map[string]string {
	var out map[string]string
	for k, v := range d {
		name := k
		for i := len(k) - 1; i >= 0; i-- {
			if k[i] == '.' {
				name = k[i+1:]
				break
			}
		}
		if !allow[name] {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		if len(v) > 2048 {
			v = v[:2048]
		}
		out[k] = v
	}
	return out
}

func trimType(t string) string {
	if len(t) > len(schemas.TypePrefix) && t[:len(schemas.TypePrefix)] == schemas.TypePrefix {
		return t[len(schemas.TypePrefix):]
	}
	return t
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
