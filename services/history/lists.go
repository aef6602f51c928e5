package history

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// Filter selects deliveries. The zero Filter selects every one.
type Filter struct {
	// Allow, when set, says which repositories may be shown.
	Allow func(repo string) bool
	// Repo and Event keep one repository ("owner/name") and one event.
	Repo, Event string
	// Outcome keeps deliveries where some worker's latest outcome is this.
	Outcome schemas.Outcome
	// Since keeps deliveries accepted at or after it.
	Since time.Time
}

func (f Filter) matchEvent(d Delivery) bool {
	return (f.Allow == nil || f.Allow(d.Repo)) && (f.Repo == "" || d.Repo == f.Repo) &&
		(f.Event == "" || d.Event == f.Event) && (f.Since.IsZero() || !d.AcceptedAt.Before(f.Since))
}

// scanWindow is how many stored events Recent reads per delivery asked for:
// replays and filtered-out events also take places.
const scanWindow = 8

// Recent returns up to limit deliveries that pass f, newest first, each with
// every worker's latest outcome.
func Recent(ctx context.Context, js jetstream.JetStream, f Filter, limit int) ([]Delivery, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.StreamEvents, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.StreamEvents, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	start := info.State.FirstSeq
	if w := uint64(limit * scanWindow); info.State.LastSeq > w && info.State.LastSeq-w+1 > start {
		start = info.State.LastSeq - w + 1
	}
	var list []Delivery
	byID := map[string]int{}
	err = scan(ctx, js, schemas.StreamEvents, "", from{seq: start}, func(m jetstream.Msg) error {
		if m.Headers().Get(runtime.ReplayHeader) != "" {
			return nil
		}
		var ev schemas.Envelope
		if json.Unmarshal(m.Data(), &ev) != nil || ev.ID == "" {
			return nil
		}
		if _, dup := byID[ev.ID]; dup {
			return nil
		}
		seq, _ := meta(m)
		d := Summary(&ev, seq, m.Subject())
		if !f.matchEvent(d) {
			return nil
		}
		d.Workers = map[string]schemas.Outcome{}
		byID[ev.ID] = len(list)
		list = append(list, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	err = scan(ctx, js, schemas.StreamResults, "", from{time: list[0].AcceptedAt.Add(-time.Minute)}, func(m jetstream.Msg) error {
		var r schemas.Result
		if json.Unmarshal(m.Data(), &r) != nil {
			return nil
		}
		if i, ok := byID[r.EventID]; ok {
			list[i].Workers[r.Worker] = r.Outcome
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, 0, limit)
	for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
		d := list[i]
		if f.Outcome != "" && !slices.Contains(mapValues(d.Workers), f.Outcome) {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func mapValues(m map[string]schemas.Outcome) []schemas.Outcome {
	out := make([]schemas.Outcome, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// WorkerStats is one worker's state: its consumer on FORGE_EVENTS and its
// results of the last hour.
type WorkerStats struct {
	Worker string `json:"worker"`
	// Waiting is the pull requests waiting on the consumer: about the
	// replicas connected and idle.
	Waiting int `json:"waiting"`
	// Pending is the lag: events not yet delivered to the worker.
	Pending uint64 `json:"pending"`
	// InFlight is delivered and not yet acknowledged.
	InFlight int `json:"in_flight"`
	// LastHour counts the outcomes of the last hour.
	LastHour map[schemas.Outcome]int `json:"last_hour"`
	// Failures are the last failed or dead-lettered attempts, newest first.
	Failures []Attempt `json:"failures,omitempty"`
}

// Workers returns every worker consumer's state, by name. allow, when set,
// hides the failures of repositories it refuses.
func Workers(ctx context.Context, js jetstream.JetStream, allow func(string) bool, now time.Time) ([]WorkerStats, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.StreamEvents, err)
	}
	byName := map[string]*WorkerStats{}
	lister := st.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			continue // an ordered consumer of a reader such as this one, not a worker
		}
		byName[ci.Name] = &WorkerStats{
			Worker: ci.Name, Waiting: ci.NumWaiting, Pending: ci.NumPending, InFlight: ci.NumAckPending,
			LastHour: map[schemas.Outcome]int{},
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", schemas.StreamEvents, err)
	}
	err = scan(ctx, js, schemas.StreamResults, "", from{time: now.Add(-time.Hour)}, func(m jetstream.Msg) error {
		var r schemas.Result
		if json.Unmarshal(m.Data(), &r) != nil {
			return nil
		}
		ws := byName[r.Worker]
		if ws == nil {
			ws = &WorkerStats{Worker: r.Worker, LastHour: map[schemas.Outcome]int{}}
			byName[r.Worker] = ws
		}
		ws.LastHour[r.Outcome]++
		if (r.Outcome == schemas.OutcomeFailed || r.Outcome == schemas.OutcomeDeadLettered) && (allow == nil || allow(r.Repo)) {
			seq, _ := meta(m)
			ws.Failures = append(ws.Failures, Attempt{Seq: seq, Result: r})
			if len(ws.Failures) > 5 {
				ws.Failures = ws.Failures[1:]
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]WorkerStats, 0, len(byName))
	for _, ws := range byName {
		slices.Reverse(ws.Failures)
		out = append(out, *ws)
	}
	slices.SortFunc(out, func(a, b WorkerStats) int { return cmp.Compare(a.Worker, b.Worker) })
	return out, nil
}

// Repos returns the repositories that have events in FORGE_EVENTS.
func Repos(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.StreamEvents, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(schemas.EventsRoot+".>"))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.StreamEvents, err)
	}
	seen := map[string]bool{}
	for subj := range info.State.Subjects {
		a, err := schemas.ParseEventSubject(subj)
		if err != nil {
			continue
		}
		seen[a.Owner+"/"+a.Repo] = true
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	slices.Sort(out)
	return out, nil
}

// AuditHead is the last record of FORGE_AUDIT.
type AuditHead struct {
	Seq        uint64    `json:"seq"`
	Hash       string    `json:"hash"`
	RecordedAt time.Time `json:"recorded_at"`
}

// Head returns the audit chain's last record; zero when the chain is empty.
func Head(ctx context.Context, js jetstream.JetStream) (AuditHead, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		return AuditHead{}, fmt.Errorf("read %s: %w", schemas.StreamAudit, err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, schemas.AuditSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return AuditHead{}, nil
	}
	if err != nil {
		return AuditHead{}, fmt.Errorf("read %s: %w", schemas.StreamAudit, err)
	}
	r, err := schemas.DecodeAuditRecord(raw.Data)
	if err != nil {
		return AuditHead{Seq: raw.Sequence}, fmt.Errorf("read %s head: %w", schemas.StreamAudit, err)
	}
	return AuditHead{Seq: raw.Sequence, Hash: r.Hash, RecordedAt: r.RecordedAt}, nil
}

// SplitRepo splits "owner/name".
func SplitRepo(repo string) (owner, name string, ok bool) {
	owner, name, ok = strings.Cut(repo, "/")
	return owner, name, ok && owner != "" && name != "" && !strings.Contains(name, "/")
}
