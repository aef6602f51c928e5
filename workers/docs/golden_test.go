package docs_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/docs"
	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/runtime"
)

// TestRealEnvelopes feeds the envelopes ingest makes from the captured Gogs
// deliveries: the worker reads the branch, commit and repository where
// ingest puts them.
func TestRealEnvelopes(t *testing.T) {
	dir := filepath.Join("..", "..", "ingest", "gogs", "testdata")
	load := func(name string) *schemas.Envelope {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			t.Skip("ingest golden envelopes not present")
		}
		if err != nil {
			t.Fatal(err)
		}
		var ev schemas.Envelope
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		return &ev
	}
	gitRoot := t.TempDir()
	pubRoot := t.TempDir()
	w, err := docs.New(docs.Config{Rules: []docs.Rule{{Repo: "fixture-admin/*", Branch: "**", Command: []string{"true"}, Output: "out", Root: pubRoot}}},
		docs.Deps{GogsURL: gitRoot, CacheDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	// The repository exists but lacks the fixture's commit.
	if err := os.MkdirAll(filepath.Join(gitRoot, "fixture-admin", "webhook-fixtures.git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runGit(filepath.Join(gitRoot, "fixture-admin", "webhook-fixtures.git"), "init", "--bare", "--quiet"); err != nil {
		t.Fatal(err, out)
	}
	ctx := context.Background()
	_, err = w.Handle(ctx, load("push-new-branch.golden.json"))
	if !errors.Is(err, gitrepo.ErrNoCommit) || !runtime.IsPermanent(err) {
		t.Errorf("push-new-branch: err = %v, want a permanent ErrNoCommit (the commit was read from the envelope)", err)
	}
	rep, err := w.Handle(ctx, load("delete-branch-git-push.golden.json"))
	if err != nil || rep.Detail["branch"] != "tmp/delete-me" || rep.Detail["removed"] != "false" {
		t.Errorf("delete-branch: %v, %v", rep.Detail, err)
	}
	rep, err = w.Handle(ctx, load("delete-tag.golden.json"))
	if err != nil || rep.Detail["skipped"] == "" {
		t.Errorf("delete-tag: %v, %v; want skipped", rep.Detail, err)
	}
}
