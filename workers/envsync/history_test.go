package envsync

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
	"github.com/forgebus/forgebus/workers/gogsapi"
)

func pushFrom(id string, at time.Time, before, after string) *schemas.Envelope {
	ev := push(id, at, after)
	var p schemas.Push
	_ = json.Unmarshal(ev.Data, &p)
	p.Before = before
	ev.Data, _ = json.Marshal(p)
	return ev
}

// A signed push replayed under a new delivery id is a new event, newer than
// every other: it must not roll the environment back.
func TestReplayedOlderCommitIsSuperseded(t *testing.T) {
	h := newHarness(t)
	gitRoot := t.TempDir()
	repo := gittest.NewRepo(t, gitRoot, "acme", "app")
	write := func(content string) string {
		repo.Write(envPath, content)
		c := repo.Commit(content)
		h.gogs.set(c, envPath, content)
		return c
	}
	c0 := write("A=0\n")
	a := write("A=1\n")
	b := write("A=2\n")
	repo.Push("main")
	git := gittest.Serve(t, gitRoot, "good-token")

	api, err := gogsapi.New(h.srv.URL, "good-token")
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(baseCfg(), Deps{KV: h.js, API: api, Log: zerolog.New(h.logs),
		History: GitHistory{Options: gitrepo.Options{BaseURL: git.URL, Token: "good-token", CacheDir: t.TempDir()}}})
	if err != nil {
		t.Fatal(err)
	}
	step := func(ev *schemas.Envelope, wantOutcome schemas.Outcome, wantA string) {
		t.Helper()
		rep, err := h.handle(w, ev)
		if err != nil {
			t.Fatalf("%s: %v", ev.ID, err)
		}
		if rep.Outcome != wantOutcome {
			t.Errorf("%s: outcome %q, want %q (detail %v)", ev.ID, rep.Outcome, wantOutcome, rep.Detail)
		}
		vals, _ := kvState(t, h.js)
		if vals["A"] != wantA {
			t.Fatalf("after %s: A=%q, want %q", ev.ID, vals["A"], wantA)
		}
	}
	step(pushFrom("ev-a", t0, c0, a), "", "1")
	step(pushFrom("ev-b", t0.Add(time.Second), a, b), "", "2")
	// A's exact payload again, as a new event: an ancestor of B.
	step(pushFrom("ev-a-replayed", t0.Add(time.Hour), c0, a), schemas.OutcomeSuperseded, "2")

	// A force push from the applied commit to another line of history is
	// the branch's owner speaking: applied.
	repo.Git("reset", "--hard", c0)
	d := write("A=3\n")
	repo.Push("main")
	step(pushFrom("ev-d", t0.Add(2*time.Hour), b, d), "", "3")
	// B replayed after it: neither an ancestor nor a descendant of D, and
	// not pushed from D.
	rep, err := h.handle(w, pushFrom("ev-b-replayed", t0.Add(3*time.Hour), a, b))
	if err != nil || rep.Outcome != schemas.OutcomeSuperseded || !strings.Contains(rep.Detail["reason"], "not a descendant") {
		t.Fatalf("B replayed after a force push: %+v, %v; want superseded, not a descendant", rep, err)
	}
	if vals, _ := kvState(t, h.js); vals["A"] != "3" {
		t.Fatalf("B replayed after a force push: A=%q, want 3", vals["A"])
	}
}
