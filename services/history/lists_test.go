package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
	"github.com/forgebus/forgebus/services/history/historytest"
)

func TestListsForTheConsole(t *testing.T) {
	_, js := natstest.Run(t).Connect(t)
	bus := historytest.Start(t, js)
	bus.Broken.Store(false)
	bus.Push("ev-site", "alice/site", "alice")
	bus.Push("ev-secret", "bob/secret", "bob")
	bus.WaitOutcome("ev-secret", "models", schemas.OutcomeSucceeded)
	bus.WaitOutcome("ev-site", "models", schemas.OutcomeSucceeded)
	bus.WaitOutcome("ev-site", "docs", schemas.OutcomeSucceeded)
	bus.WaitOutcome("ev-secret", "docs", schemas.OutcomeSucceeded)
	ctx := context.Background()

	all, err := history.Recent(ctx, js, history.Filter{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].EventID != "ev-secret" || all[1].EventID != "ev-site" {
		t.Fatalf("Recent = %+v, want both, newest first", all)
	}
	if all[1].Workers["docs"] != schemas.OutcomeSucceeded || all[1].Workers["models"] != schemas.OutcomeSucceeded {
		t.Errorf("ev-site workers = %v", all[1].Workers)
	}
	only, err := history.Recent(ctx, js, history.Filter{Allow: func(r string) bool { return r == "alice/site" }}, 10)
	if err != nil || len(only) != 1 || only[0].Repo != "alice/site" {
		t.Errorf("Recent allowed alice/site = %+v, %v", only, err)
	}
	none, err := history.Recent(ctx, js, history.Filter{Outcome: schemas.OutcomeDeadLettered}, 10)
	if err != nil || len(none) != 0 {
		t.Errorf("Recent dead-lettered = %+v, %v, want none", none, err)
	}
	late, err := history.Recent(ctx, js, history.Filter{Since: time.Now().Add(time.Hour)}, 10)
	if err != nil || len(late) != 0 {
		t.Errorf("Recent since the future = %+v, %v", late, err)
	}

	repos, err := history.Repos(ctx, js)
	if err != nil || len(repos) != 2 || repos[0] != "alice/site" || repos[1] != "bob/secret" {
		t.Errorf("Repos = %v, %v", repos, err)
	}
	ws, err := history.Workers(ctx, js, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]history.WorkerStats{}
	for _, w := range ws {
		names[w.Worker] = w
	}
	for _, w := range []string{"docs", "models", "envsync", "audit-events"} {
		if _, ok := names[w]; !ok {
			t.Errorf("no stats for worker %s", w)
		}
	}
	if len(ws) != 4 {
		t.Errorf("%d workers, want the four workers' consumers only (no readers' ordered consumers): %+v", len(ws), ws)
	}
	if d := names["docs"]; d.LastHour[schemas.OutcomeSucceeded] != 2 || d.Pending != 0 {
		t.Errorf("docs stats = %+v", d)
	}
	natstest.Eventually(t, 20*time.Second, "audit head", func() bool {
		h, err := history.Head(ctx, js)
		return err == nil && h.Seq >= 8 && len(h.Hash) == 64
	})
}
