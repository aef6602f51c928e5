package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
	"github.com/forgebus/forgebus/services/history/historytest"
	"github.com/forgebus/forgebus/workers/runtime"
)

// replayedStory runs an event that docs and envsync (skipping) finish, that
// models dead-letters, and that a replay then gets through models.
func replayedStory(t *testing.T) (url, id string, dlq uint64) {
	t.Helper()
	ns := natstest.Run(t)
	_, js := ns.Connect(t)
	bus := historytest.Start(t, js)
	t.Setenv("FORGEBUS_AUDIT_KEY_FILE", bus.AuditKeyFile)
	id = "5f0c2f8e-1111-4000-8000-00000000beef"
	bus.Push(id, "alice/site", "alice")
	bus.WaitOutcome(id, "docs", schemas.OutcomeSucceeded)
	bus.WaitOutcome(id, "envsync", schemas.OutcomeSucceeded)
	dlq = bus.DeadLetter(id)
	bus.Broken.Store(false)
	if _, err := runtime.Replay(context.Background(), js, dlq); err != nil {
		t.Fatal(err)
	}
	bus.WaitOutcome(id, "models", schemas.OutcomeSucceeded)
	natstest.Eventually(t, 20*time.Second, "audit records", func() bool { return bus.AuditCount(id) >= 7 })
	return ns.URL(), id, dlq
}

func runForgebus(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ranCommand = false
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestEventsShowEveryStepInOrder(t *testing.T) {
	url, id, dlq := replayedStory(t)
	t.Setenv("FORGEBUS_NATS_URL", url)

	code, out, errOut := runForgebus(t, "events", "show", id)
	if code != exitOK {
		t.Fatalf("events show: exit %d, stderr %q", code, errOut)
	}
	// Each step of the story, in this order in the output.
	want := []string{
		"event       " + id,
		"repo        alice/site",
		"ref         refs/heads/main",
		"sender      alice",
		"stream seq  1",
		"accepted at ",
		"update the model card",
		"~ models/card.md",
		"timeline",
		"accepted push of alice/site",
		"attempt 1: dead-lettered",
		"dead letter " + itoa(dlq) + " replayed to models",
		"attempt 1: succeeded",
		"worker docs: succeeded",
		"| built 3 pages",
		"worker envsync: succeeded",
		"skipped: no rule matches",
		"worker models: succeeded",
		"error:  refresh endpoint answered 401: check FORGEBUS_MODELS_SECRET",
		"audit records",
		"dead_letter",
	}
	at := 0
	for _, w := range want {
		i := strings.Index(out[at:], w)
		if i < 0 {
			t.Fatalf("events show output lacks %q after offset %d:\n%s", w, at, out)
		}
		at += i + len(w)
	}
	// The replay's success follows the dead letter inside the timeline.
	tl := out[strings.Index(out, "timeline"):strings.Index(out, "worker docs")]
	d, r, ok := -1, -1, -1
	for i, line := range strings.Split(tl, "\n") {
		switch {
		case strings.Contains(line, "models") && strings.Contains(line, "dead-lettered"):
			d = i
		case strings.Contains(line, "replayed to models"):
			r = i
		case strings.Contains(line, "models") && strings.Contains(line, "attempt 1: succeeded"):
			ok = i
		}
	}
	if !(0 <= d && d < r && r < ok) {
		t.Errorf("timeline out of order (dead letter line %d, replay %d, success %d):\n%s", d, r, ok, tl)
	}

	code, out, errOut = runForgebus(t, "events", "show", "--json", id)
	if code != exitOK {
		t.Fatalf("events show --json: exit %d, stderr %q", code, errOut)
	}
	var s history.Story
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("--json output does not decode: %v", err)
	}
	if s.Delivery.EventID != id || len(s.Steps) != 6 || len(s.Replays) != 1 || len(s.Audit) < 7 {
		t.Errorf("--json story: id %q, %d steps, %d replays, %d audit records", s.Delivery.EventID, len(s.Steps), len(s.Replays), len(s.Audit))
	}

	code, _, errOut = runForgebus(t, "events", "show", "not-an-event")
	if code != exitRuntime || !strings.Contains(errOut, "not-an-event is not in FORGE_EVENTS") {
		t.Errorf("unknown event: exit %d, stderr %q", code, errOut)
	}
}

func TestAuditQueryShowsSkipReason(t *testing.T) {
	url, _, _ := replayedStory(t)
	t.Setenv("FORGEBUS_NATS_URL", url)
	code, out, errOut := runForgebus(t, "audit", "query", "--repo", "alice/site")
	if code != exitOK {
		t.Fatalf("audit query: exit %d, stderr %q", code, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "envsync") && !strings.Contains(line, "skipped: no rule matches") {
			t.Errorf("envsync row does not say why it skipped: %q", line)
		}
	}
	if !strings.Contains(out, "skipped: no rule matches") {
		t.Errorf("audit query output has no skip reason:\n%s", out)
	}
}

func itoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
