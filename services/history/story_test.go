package history_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
	"github.com/forgebus/forgebus/services/history/historytest"
	"github.com/forgebus/forgebus/workers/runtime"
)

func TestLoadSucceededDeadLetteredReplayed(t *testing.T) {
	_, js := natstest.Run(t).Connect(t)
	bus := historytest.Start(t, js)
	const id = "0b9b7a1e-0000-4000-8000-000000000001"
	seq := bus.Push(id, "alice/site", "alice")
	bus.WaitOutcome(id, "docs", schemas.OutcomeSucceeded)
	bus.WaitOutcome(id, "envsync", schemas.OutcomeSucceeded)
	// The runtime stores the dead letter before it publishes the result
	// that says so: wait for both, or Load may see one without the other.
	dlq := bus.DeadLetter(id)
	bus.WaitOutcome(id, "models", schemas.OutcomeDeadLettered)

	// Before the replay the dead letter waits in the DLQ.
	s, err := history.Load(context.Background(), js, id)
	if err != nil {
		t.Fatal(err)
	}
	if m := worker(t, s, "models"); len(m.DeadLetters) != 1 || m.DeadLetters[0].Seq != dlq || m.Outcome != schemas.OutcomeDeadLettered {
		t.Fatalf("models before replay = %+v, want dead-lettered with DLQ seq %d waiting", m, dlq)
	}

	bus.Broken.Store(false)
	if _, err := runtime.Replay(context.Background(), js, dlq); err != nil {
		t.Fatal(err)
	}
	bus.WaitOutcome(id, "models", schemas.OutcomeSucceeded)
	// event + replay, three first results, the dead letter, the replay's result
	natstest.Eventually(t, 20*time.Second, "audit records", func() bool { return bus.AuditCount(id) >= 7 })

	s, err = history.Load(context.Background(), js, id)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Delivery
	if d.EventID != id || d.DeliveryID != id || d.Event != "push" || d.Repo != "alice/site" || d.Ref != "refs/heads/main" ||
		d.Sender != "alice" || d.StreamSeq != seq || d.AcceptedAt.IsZero() {
		t.Errorf("delivery = %+v", d)
	}
	if d.Spooled || d.StoredAt.IsZero() {
		t.Errorf("a delivery published by the handler reads as spooled=%v, stored at %v", d.Spooled, d.StoredAt)
	}
	if len(d.Commits) != 1 || d.Commits[0].Message != "update the model card" || d.Commits[0].Modified[0] != "models/card.md" {
		t.Errorf("commits = %+v, want the commit's first line and paths", d.Commits)
	}
	if len(s.Replays) != 1 || s.Replays[0].Worker != "models" || s.Replays[0].DLQSeq != dlq {
		t.Errorf("replays = %+v, want one of DLQ seq %d to models", s.Replays, dlq)
	}
	m := worker(t, s, "models")
	if m.Outcome != schemas.OutcomeSucceeded || len(m.Attempts) != 2 || len(m.DeadLetters) != 0 {
		t.Errorf("models = %+v, want dead-lettered then succeeded, DLQ empty", m)
	}
	if m.Attempts[0].Error == "" {
		t.Errorf("dead-lettered attempt has no error")
	}
	if w := worker(t, s, "docs"); w.Outcome != schemas.OutcomeSucceeded || w.Attempts[0].Detail["output_tail"] != "built 3 pages" {
		t.Errorf("docs = %+v", w)
	}
	if len(s.Audit) < 7 {
		t.Errorf("%d audit records, want at least 7", len(s.Audit))
	}

	// The timeline: every step, in order.
	pos := map[string]int{}
	for i, st := range s.Steps {
		key := st.Kind + "/" + st.Worker + "/" + string(st.Outcome)
		if _, ok := pos[key]; !ok {
			pos[key] = i
		}
		if i > 0 && st.At.Before(s.Steps[i-1].At) {
			t.Errorf("step %d (%s) is before step %d", i, st.Text, i-1)
		}
	}
	order := []string{
		"accepted//",
		"dead_letter/models/dead_lettered",
		"replayed/models/",
		"attempt/models/succeeded",
	}
	for i, k := range order {
		p, ok := pos[k]
		if !ok {
			t.Fatalf("no step %s in %+v", k, s.Steps)
		}
		if i > 0 && p < pos[order[i-1]] {
			t.Errorf("step %s comes before %s", k, order[i-1])
		}
	}
	for _, k := range []string{"attempt/docs/succeeded", "attempt/envsync/succeeded"} {
		if p, ok := pos[k]; !ok || p < pos["accepted//"] {
			t.Errorf("step %s missing or before the acceptance", k)
		}
	}
	if got := s.Steps[pos["attempt/envsync/succeeded"]].Text; got != "attempt 1: succeeded (skipped: no rule matches)" {
		t.Errorf("envsync step = %q, want the skip reason", got)
	}
	if len(s.Steps) != 6 {
		t.Errorf("%d steps, want 6: %+v", len(s.Steps), s.Steps)
	}
}

func TestLoadUnknownEvent(t *testing.T) {
	_, js := natstest.Run(t).Connect(t)
	historytest.Start(t, js)
	_, err := history.Load(context.Background(), js, "no-such-event")
	if !errors.Is(err, history.ErrNotFound) {
		t.Fatalf("Load = %v, want ErrNotFound", err)
	}
}

func worker(t *testing.T, s history.Story, name string) history.WorkerStory {
	t.Helper()
	for _, w := range s.Workers {
		if w.Worker == name {
			return w
		}
	}
	t.Fatalf("no worker %s in the story", name)
	return history.WorkerStory{}
}

func TestLoadSpooledEvent(t *testing.T) {
	_, js := natstest.Run(t).Connect(t)
	bus := historytest.Start(t, js)
	bus.Broken.Store(false)
	bus.PushFromSpool("ev-spooled", "alice/site", "alice")
	bus.WaitOutcome("ev-spooled", "models", schemas.OutcomeSucceeded)
	s, err := history.Load(context.Background(), js, "ev-spooled")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Delivery.Spooled || !strings.Contains(s.Steps[0].Text, "spooled by ingest") {
		t.Errorf("spooled event: spooled=%v, first step %q", s.Delivery.Spooled, s.Steps[0].Text)
	}
}
