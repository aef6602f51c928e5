package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

// docsFixture is three docs events, commits c1..c3 of a chain, with
// events 0 and 2 built and succeeded, event 1 superseded, and c3 live.
func docsFixture(t *testing.T) ([]hook, *counts, effectCounts, string) {
	t.Helper()
	var hooks []hook
	c := &counts{events: map[string]int{}, final: map[string]map[string]schemas.Outcome{"docs": {}}}
	for j := range 3 {
		h := hook{id: fmt.Sprintf("ev-%d", j), kind: kindDocs, commit: fmt.Sprintf("%040d", j+1), seq: j}
		hooks = append(hooks, h)
		c.events[h.id] = 1
		c.final["docs"][h.id] = schemas.OutcomeSucceeded
	}
	c.final["docs"]["ev-1"] = schemas.OutcomeSuperseded
	fx := effectCounts{builds: map[string]int{hooks[0].commit: 1, hooks[2].commit: 1}, order: []string{hooks[0].commit, hooks[2].commit}}
	root := t.TempDir()
	setLive(t, root, hooks[2].commit)
	return hooks, c, fx, root
}

func setLive(t *testing.T, root, commit string) {
	t.Helper()
	dir := filepath.Join(root, docsOwner, docsRepoName, "master")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"commit":"`+commit+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, "current"))
	if err := os.Symlink("releases/"+commit, filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
}

// TestCheckDocs: the docs checks pass on a sound run and name each
// broken invariant.
func TestCheckDocs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, hooks []hook, c *counts, fx *effectCounts, root string)
		want   string // "" for no problem
	}{
		{name: "sound", mutate: func(*testing.T, []hook, *counts, *effectCounts, string) {}},
		{name: "a commit built twice", want: "built more than once", mutate: func(_ *testing.T, h []hook, _ *counts, fx *effectCounts, _ string) {
			fx.builds[h[2].commit] = 2
		}},
		{name: "succeeded without a build", want: "never built", mutate: func(_ *testing.T, h []hook, _ *counts, fx *effectCounts, _ string) {
			delete(fx.builds, h[0].commit)
		}},
		{name: "an older commit live", want: "not the newest commit built", mutate: func(t *testing.T, h []hook, _ *counts, _ *effectCounts, root string) {
			setLive(t, root, h[0].commit)
		}},
		{name: "a build of an unknown commit", want: "no docs event pushed", mutate: func(_ *testing.T, _ []hook, _ *counts, fx *effectCounts, _ string) {
			fx.builds[strings.Repeat("f", 40)] = 1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hooks, c, fx, root := docsFixture(t)
			tc.mutate(t, hooks, c, &fx, root)
			k := &checker{}
			st := workerStats{}
			checkDocs(k, &st, hooks, c, fx, root)
			assertProblems(t, k, tc.want)
		})
	}
}

// envFixture is three envsync events; event 1 was superseded by event 2,
// the newest, which is what the bucket holds.
func envFixture() ([]hook, *counts, effectCounts) {
	var hooks []hook
	c := &counts{events: map[string]int{}, eventTime: map[string]time.Time{}, final: map[string]map[string]schemas.Outcome{"envsync": {}},
		kv: kvCounts{puts: map[string]int{}, dels: map[string]int{}, last: map[string]string{}}}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for j := range 3 {
		h := hook{id: fmt.Sprintf("ev-%d", j), kind: kindEnvsync, seq: j}
		hooks = append(hooks, h)
		c.events[h.id] = 1
		c.eventTime[h.id] = t0.Add(time.Duration(j) * time.Second)
		c.final["envsync"][h.id] = schemas.OutcomeSucceeded
	}
	c.final["envsync"]["ev-1"] = schemas.OutcomeSuperseded
	c.kv.puts[envPrefix+".E_0"], c.kv.dels[envPrefix+".E_0"] = 1, 1
	c.kv.puts[envPrefix+".E_2"] = 1
	c.kv.last[envPrefix+".E_2"] = "x"
	c.kv.last[envPrefix+".VERSION"] = "2"
	c.kv.last["__forgebus_meta."+envPrefix] = `{"event_id":"ev-2","state":"applied"}`
	return hooks, c, effectCounts{fetches: map[string]int{}}
}

// TestCheckEnvsync: the envsync checks pass on a sound run and name each
// broken invariant.
func TestCheckEnvsync(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *counts, fx *effectCounts)
		want   string
	}{
		{name: "sound", mutate: func(*counts, *effectCounts) {}},
		{name: "a key put twice", want: "put more than once", mutate: func(c *counts, _ *effectCounts) { c.kv.puts[envPrefix+".E_0"] = 2 }},
		{name: "succeeded without a put", want: "never put their key", mutate: func(c *counts, _ *effectCounts) { delete(c.kv.puts, envPrefix+".E_0") }},
		{name: "an older event applied last", want: "not the newest event", mutate: func(c *counts, _ *effectCounts) {
			c.kv.last["__forgebus_meta."+envPrefix] = `{"event_id":"ev-0","state":"applied"}`
		}},
		{name: "a stale key left", want: "want the newest event's", mutate: func(c *counts, _ *effectCounts) { c.kv.last[envPrefix+".E_0"] = "x" }},
		{name: "refused API calls", want: "refused", mutate: func(_ *counts, fx *effectCounts) { fx.badAPI = 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hooks, c, fx := envFixture()
			tc.mutate(c, &fx)
			k := &checker{}
			st := workerStats{}
			checkEnvsync(k, &st, hooks, c, fx)
			assertProblems(t, k, tc.want)
		})
	}
}

func assertProblems(t *testing.T, k *checker, want string) {
	t.Helper()
	switch {
	case want == "" && len(k.problems) > 0:
		t.Errorf("problems on a sound run: %q", k.problems)
	case want != "" && (len(k.problems) != 1 || !strings.Contains(k.problems[0], want)):
		t.Errorf("problems %q, want exactly one containing %q", k.problems, want)
	}
}
