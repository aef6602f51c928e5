package history

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/ingest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// Delivery summarises one accepted event: the envelope's facts and the
// payload's commits, never its secrets (a payload carries none; env values
// live in the repository, not the event).
type Delivery struct {
	EventID string `json:"event_id"`
	// DeliveryID is Gogs' X-Gogs-Delivery; forgebus uses it as the event id.
	DeliveryID string    `json:"delivery_id"`
	Event      string    `json:"event"`
	Repo       string    `json:"repo"`
	Ref        string    `json:"ref,omitempty"`
	Sender     string    `json:"sender,omitempty"`
	StreamSeq  uint64    `json:"stream_seq"`
	Subject    string    `json:"subject"`
	AcceptedAt time.Time `json:"accepted_at"`
	// StoredAt is when FORGE_EVENTS stored it; later than AcceptedAt when
	// ingest spooled it while the broker was away.
	StoredAt time.Time `json:"stored_at"`
	// Spooled: ingest answered 202 from its disk spool and forwarded the
	// event later (the spool publishes without ingest's event header).
	Spooled bool     `json:"spooled"`
	Commits []Commit `json:"commits,omitempty"`
	// Workers is each worker's latest outcome, filled by [Recent].
	Workers map[string]schemas.Outcome `json:"workers,omitempty"`
}

// Commit is one commit of a push: its id, the first line of its message,
// its author and the paths it touched.
type Commit struct {
	ID       string   `json:"id"`
	Message  string   `json:"message"`
	Author   string   `json:"author,omitempty"`
	Added    []string `json:"added,omitempty"`
	Removed  []string `json:"removed,omitempty"`
	Modified []string `json:"modified,omitempty"`
}

// Attempt is one result a worker published, with its FORGE_RESULTS sequence.
type Attempt struct {
	Seq uint64 `json:"seq"`
	schemas.Result
}

// Replay is a dead letter sent back to its worker ("forgebus dlq replay").
type Replay struct {
	Worker string `json:"worker"`
	// DLQSeq is the dead letter's FORGE_DLQ sequence, 0 when unknown.
	DLQSeq   uint64    `json:"dlq_seq"`
	EventSeq uint64    `json:"event_seq"`
	At       time.Time `json:"at"`
}

// WorkerStory is what one worker did with the event.
type WorkerStory struct {
	Worker string `json:"worker"`
	// Outcome is the latest attempt's.
	Outcome  schemas.Outcome `json:"outcome"`
	Attempts []Attempt       `json:"attempts"`
	// DeadLetters are the ones still waiting in FORGE_DLQ.
	DeadLetters []runtime.DeadLetterEntry `json:"dead_letters,omitempty"`
}

// Step kinds, in the order they sort at the same instant.
const (
	StepAccepted   = "accepted"
	StepAttempt    = "attempt"
	StepDeadLetter = "dead_letter"
	StepReplayed   = "replayed"
)

// Step is one line of a delivery's timeline.
type Step struct {
	At      time.Time         `json:"at"`
	Kind    string            `json:"kind"`
	Worker  string            `json:"worker,omitempty"`
	Outcome schemas.Outcome   `json:"outcome,omitempty"`
	Attempt int               `json:"attempt,omitempty"`
	Text    string            `json:"text"`
	Error   string            `json:"error,omitempty"`
	Detail  map[string]string `json:"detail,omitempty"`
	// Stream and Seq name the message the step comes from.
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
}

// Story is everything the bus holds about one delivery.
type Story struct {
	Delivery Delivery              `json:"delivery"`
	Replays  []Replay              `json:"replays,omitempty"`
	Workers  []WorkerStory         `json:"workers"`
	Audit    []schemas.AuditRecord `json:"audit,omitempty"`
	// Steps is the timeline: every step above, oldest first.
	Steps []Step `json:"steps"`
}

// Load reads the story of event id. It returns an error wrapping
// [ErrNotFound] when FORGE_EVENTS has no event with that id.
func Load(ctx context.Context, js jetstream.JetStream, id string) (Story, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var s Story
	found := false
	err := scan(ctx, js, schemas.StreamEvents, "", from{}, func(m jetstream.Msg) error {
		var ev schemas.Envelope
		if json.Unmarshal(m.Data(), &ev) != nil || ev.ID != id {
			return nil
		}
		seq, stored := meta(m)
		if w := m.Headers().Get(runtime.ReplayHeader); w != "" {
			r := Replay{Worker: w, EventSeq: seq, At: stored}
			if n, ok := strings.CutPrefix(m.Headers().Get(jetstream.MsgIDHeader), "replay:"); ok {
				r.DLQSeq, _ = strconv.ParseUint(n, 10, 64)
			}
			s.Replays = append(s.Replays, r)
			return nil
		}
		if !found {
			found = true
			s.Delivery = Summary(&ev, seq, m.Subject())
			s.Delivery.StoredAt, s.Delivery.Spooled = stored, m.Headers().Get(ingest.MsgHeaderEvent) == ""
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	if !found {
		return s, fmt.Errorf("load event %s: %w", id, ErrNotFound)
	}
	byWorker := map[string]*WorkerStory{}
	story := func(w string) *WorkerStory {
		if ws := byWorker[w]; ws != nil {
			return ws
		}
		ws := &WorkerStory{Worker: w}
		byWorker[w] = ws
		return ws
	}
	filter := ""
	if owner, name, ok := strings.Cut(s.Delivery.Repo, "/"); ok {
		filter = schemas.ResultsRoot + ".*." + schemas.EscapeToken(owner) + "." + schemas.EscapeToken(name)
	}
	err = scan(ctx, js, schemas.StreamResults, filter, from{time: s.Delivery.AcceptedAt.Add(-time.Minute)}, func(m jetstream.Msg) error {
		var r schemas.Result
		if json.Unmarshal(m.Data(), &r) != nil || r.EventID != id {
			return nil
		}
		seq, _ := meta(m)
		ws := story(r.Worker)
		ws.Attempts = append(ws.Attempts, Attempt{Seq: seq, Result: r})
		ws.Outcome = r.Outcome
		return nil
	})
	if err != nil {
		return s, err
	}
	dls, err := runtime.ListDeadLetters(ctx, js, "")
	if err != nil {
		return s, fmt.Errorf("load event %s: %w", id, err)
	}
	for _, d := range dls {
		if d.Letter.EventID == id {
			ws := story(d.Letter.Worker)
			d.Letter.Event = nil // the envelope is already summarised above
			ws.DeadLetters = append(ws.DeadLetters, d)
		}
	}
	err = scan(ctx, js, schemas.StreamAudit, "", from{time: s.Delivery.AcceptedAt.Add(-time.Minute)}, func(m jetstream.Msg) error {
		r, err := schemas.DecodeAuditRecord(m.Data())
		if err == nil && r.EventID == id {
			s.Audit = append(s.Audit, r)
		}
		return nil
	})
	if err != nil && !isNoStream(err) {
		return s, err
	}
	for _, ws := range byWorker {
		s.Workers = append(s.Workers, *ws)
	}
	slices.SortFunc(s.Workers, func(a, b WorkerStory) int { return cmp.Compare(a.Worker, b.Worker) })
	s.Steps = steps(s)
	return s, nil
}

// isNoStream: a bus without an audit worker has no FORGE_AUDIT.
func isNoStream(err error) bool {
	return err != nil && strings.Contains(err.Error(), jetstream.ErrStreamNotFound.Error())
}

// Summary is the [Delivery] of one stored event.
func Summary(ev *schemas.Envelope, seq uint64, subject string) Delivery {
	d := Delivery{
		EventID: ev.ID, DeliveryID: ev.ID, Event: ev.Event(), Repo: ev.Repo, Ref: ev.Subject,
		Sender: ev.Sender, StreamSeq: seq, Subject: subject, AcceptedAt: ev.Time.UTC(),
	}
	if d.Event == "" {
		d.Event = ev.Type
	}
	if d.Event == schemas.EventPush {
		var p schemas.Push
		if ev.DecodeData(&p) == nil {
			for _, c := range p.Commits {
				msg, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
				d.Commits = append(d.Commits, Commit{
					ID: c.ID, Message: msg, Author: cmp.Or(c.Author.Username, c.Author.Name),
					Added: c.Added, Removed: c.Removed, Modified: c.Modified,
				})
			}
		}
	}
	return d
}

func steps(s Story) []Step {
	d := s.Delivery
	out := []Step{{
		At: d.AcceptedAt, Kind: StepAccepted, Stream: schemas.StreamEvents, Seq: d.StreamSeq,
		Text: fmt.Sprintf("accepted %s of %s (delivery %s, stream seq %d)", d.Event, d.Repo, d.DeliveryID, d.StreamSeq),
	}}
	if d.Spooled {
		out[0].Text += fmt.Sprintf("; spooled by ingest, stored %s later", d.StoredAt.Sub(d.AcceptedAt).Round(time.Millisecond))
	}
	for _, ws := range s.Workers {
		for _, a := range ws.Attempts {
			kind, text := StepAttempt, fmt.Sprintf("attempt %d: %s", a.Attempt, a.Outcome)
			if a.Outcome == schemas.OutcomeDeadLettered {
				kind = StepDeadLetter
				text = fmt.Sprintf("attempt %d: dead-lettered", a.Attempt)
			}
			if why := Reason(a.Detail); why != "" {
				text += " (" + why + ")"
			}
			out = append(out, Step{
				At: a.Finished.UTC(), Kind: kind, Worker: a.Worker, Outcome: a.Outcome, Attempt: a.Attempt,
				Text: text, Error: a.Error, Detail: a.Detail, Stream: schemas.StreamResults, Seq: a.Seq,
			})
		}
		for _, dl := range ws.DeadLetters {
			at := dl.Stored
			// The letter is stored just before its result: show it after.
			for _, a := range ws.Attempts {
				if a.Outcome == schemas.OutcomeDeadLettered && a.Finished.After(at) {
					at = a.Finished.UTC()
				}
			}
			out = append(out, Step{
				At: at, Kind: StepDeadLetter, Worker: ws.Worker, Outcome: schemas.OutcomeDeadLettered,
				Attempt: dl.Letter.Attempts, Error: dl.Letter.Error, Stream: schemas.StreamDLQ, Seq: dl.Seq,
				Text: fmt.Sprintf("waiting in %s as seq %d after %d attempt(s); replay with: forgebus dlq replay %d", schemas.StreamDLQ, dl.Seq, dl.Letter.Attempts, dl.Seq),
			})
		}
	}
	for _, r := range s.Replays {
		text := fmt.Sprintf("replayed to %s as event seq %d", r.Worker, r.EventSeq)
		if r.DLQSeq > 0 {
			text = fmt.Sprintf("dead letter %d replayed to %s as event seq %d", r.DLQSeq, r.Worker, r.EventSeq)
		}
		out = append(out, Step{At: r.At, Kind: StepReplayed, Worker: r.Worker, Text: text, Stream: schemas.StreamEvents, Seq: r.EventSeq})
	}
	rank := map[string]int{StepAccepted: 0, StepAttempt: 1, StepDeadLetter: 2, StepReplayed: 3}
	slices.SortStableFunc(out, func(a, b Step) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(rank[a.Kind], rank[b.Kind])
	})
	return out
}

// Reason is why a job did nothing or what it decided, from its result's
// detail: the skip reason, or the newer event that superseded it.
func Reason(d map[string]string) string {
	var parts []string
	for k, v := range d {
		name := k
		if i := strings.LastIndexByte(k, '.'); i >= 0 {
			name = k[i+1:]
		}
		switch name {
		case "skipped":
			parts = append(parts, "skipped: "+v)
		case "newer_event_id":
			parts = append(parts, "superseded by "+v)
		case "already_applied":
			parts = append(parts, "already applied: "+v)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
