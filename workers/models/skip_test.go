package models_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/workers/models"
)

// TestSkipNoRuleLogsGlobs: a rule with branch "*" skips "feature/x"; the
// skip is logged at info with the branch, the globs and a hint at "**".
func TestSkipNoRuleLogsGlobs(t *testing.T) {
	var buf bytes.Buffer
	w, err := models.New(models.Config{Rules: []models.Rule{{Repo: "acme/*", Branch: "*", Paths: []string{"**"}, Post: &models.Post{URL: "http://127.0.0.1:1"}}}},
		models.Deps{GogsURL: "http://127.0.0.1:1", CacheDir: t.TempDir(), Secret: []byte(secret), KV: broker(t), Log: zerolog.New(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := w.Handle(t.Context(), pushEvent(t, "feature/x", zero, strings.Repeat("1", 40)))
	if err != nil || rep.Detail["skipped"] != "no rule matches" {
		t.Fatalf("got %v, %v; want skipped: no rule matches", rep, err)
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
