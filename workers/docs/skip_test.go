package docs_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/workers/docs"
)

// TestSkipNoRuleLogsGlobs: a rule written with "*" skips "feature/x", and
// the skip is logged at info with the branch, the globs and a hint at "**".
func TestSkipNoRuleLogsGlobs(t *testing.T) {
	var buf bytes.Buffer
	w, err := docs.New(docs.Config{Rules: []docs.Rule{{Repo: "acme/*", Branch: "*", Command: []string{"true"}, Output: "out", Root: t.TempDir()}}},
		docs.Deps{GogsURL: "http://127.0.0.1:1", CacheDir: t.TempDir(), Log: zerolog.New(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		branch   string
		wantHint bool
	}{{"feature/x", true}} {
		buf.Reset()
		ev := pushEvent(t, "acme/site", tt.branch, strings.Repeat("0", 40), strings.Repeat("1", 40), time.Now())
		rep, err := w.Handle(t.Context(), ev)
		if err != nil || rep.Detail["skipped"] != "no rule matches" {
			t.Fatalf("%s: got %v, %v; want skipped: no rule matches", tt.branch, rep, err)
		}
		var line struct {
			Level, Branch, Hint, Message string
			Globs                        []string `json:"rule_globs"`
		}
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("%s: log %q: %v", tt.branch, buf.String(), err)
		}
		if line.Level != "info" || line.Branch != tt.branch || len(line.Globs) != 1 || !strings.Contains(line.Globs[0], "branch=*") {
			t.Errorf("%s: log line %s", tt.branch, buf.String())
		}
		if strings.Contains(line.Hint, `"**"`) != tt.wantHint {
			t.Errorf("%s: hint %q, want a hint at ** %v", tt.branch, line.Hint, tt.wantHint)
		}
	}
}
