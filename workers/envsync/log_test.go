package envsync

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gogsapi"
)

// TestLogNamesWorkerOnce: the program hands the worker a logger that
// already names it, as for docs and models; no line may carry "worker"
// twice (a JSON reader keeps one of the two, or refuses the line).
func TestLogNamesWorkerOnce(t *testing.T) {
	h := newHarness(t)
	api, err := gogsapi.New(h.srv.URL, "good-token")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := New(baseCfg(), Deps{KV: h.js, API: api, Log: zerolog.New(&buf).With().Str("worker", Name).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	h.gogs.set(sha(1), envPath, "A=1\n")
	if _, err := h.handle(w, push("ev-1", t0, sha(1))); err != nil {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		lines++
		if n := strings.Count(sc.Text(), `"worker":`); n != 1 {
			t.Errorf("log line has \"worker\" %d times: %s", n, sc.Text())
		}
	}
	if lines == 0 {
		t.Fatal("the worker logged nothing for an applied push")
	}
}

// TestSkipNoRuleLogsGlobs: a rule with branch "*" skips "feature/x", and
// the skip is logged at info with the branch, the globs and a hint at "**".
func TestSkipNoRuleLogsGlobs(t *testing.T) {
	h := newHarness(t)
	api, err := gogsapi.New(h.srv.URL, "good-token")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	cfg := baseCfg()
	cfg.Rules[0].Branch = "*"
	w, err := New(cfg, Deps{KV: h.js, API: api, Log: zerolog.New(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	ev := push("ev-glob", t0, sha(1))
	var p schemas.Push
	_ = json.Unmarshal(ev.Data, &p)
	p.Branch, p.Ref = "feature/x", "refs/heads/feature/x"
	ev.Data, _ = json.Marshal(p)
	rep, err := h.handle(w, ev)
	if err != nil || rep.Detail["skipped"] != "no rule matches" {
		t.Fatalf("got %+v, %v; want skipped: no rule matches", rep, err)
	}
	var line struct {
		Level, Branch, Hint string
		Globs               []string `json:"rule_globs"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log %q: %v", buf.String(), err)
	}
	if line.Level != "info" || line.Branch != "feature/x" || len(line.Globs) != 1 || !strings.Contains(line.Globs[0], "branch=*") || !strings.Contains(line.Hint, `"**"`) {
		t.Errorf("log line %s", buf.String())
	}
}
