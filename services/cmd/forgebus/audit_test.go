package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/audit"
)

// auditFixture runs the audit worker over n source events and returns the
// server's URL once every one is recorded.
func auditFixture(t *testing.T, n int) string {
	t.Helper()
	ns := natstest.Run(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	for name, subj := range map[string][]string{
		schemas.StreamEvents: schemas.EventsSubjects, schemas.StreamResults: schemas.ResultsSubjects, schemas.StreamDLQ: schemas.DLQSubjects,
	} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subj}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateStream(ctx, audit.StreamConfig(0, 1)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		data, _ := json.Marshal(schemas.Envelope{ID: fmt.Sprintf("ev-%d", i), Type: "forge.push", Repo: "acme/app",
			Sender: "bob\x1b[31m", Time: time.Date(2026, 11, 24, 12, 0, i, 0, time.UTC)})
		if _, err := js.Publish(ctx, schemas.EventSubject("git", "push", "acme", "app"), data); err != nil {
			t.Fatal(err)
		}
	}
	keyFile := filepath.Join(t.TempDir(), "audit.key")
	if _, err := audit.CreateKey(keyFile); err != nil {
		t.Fatal(err)
	}
	key, err := audit.LoadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FORGEBUS_AUDIT_KEY_FILE", keyFile)
	w, err := audit.New(js, audit.Config{FetchWait: 100 * time.Millisecond, Key: key}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	s, _ := js.Stream(ctx, schemas.StreamAudit)
	natstest.Eventually(t, 10*time.Second, "records", func() bool {
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == uint64(n)+1 // and the genesis
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return ns.URL()
}

func TestAuditCommands(t *testing.T) {
	url := auditFixture(t, 6)
	t.Setenv("FORGEBUS_NATS_URL", url)
	runCmd := func(args ...string) (int, string, string) {
		ranCommand = false
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, out, errOut := runCmd("audit", "export")
	if code != exitOK || strings.Count(out, "\n") != 7 {
		t.Fatalf("export: %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errOut)
	}
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		want    int
		wantOut string
	}{
		{"verify stream", []string{"audit", "verify"}, exitOK, "ok: 7 records verified from genesis"},
		{"verify file", []string{"audit", "verify", "--file", file}, exitOK, "ok: 7 records verified from genesis"},
		{"verify file with another key", []string{"audit", "verify", "--file", file, "--pubkey", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, exitRuntime, "not by a key given to verify"},
		{"bad pubkey", []string{"audit", "verify", "--pubkey", "x"}, exitUsage, "--pubkey"},
		{"head", []string{"audit", "head"}, exitOK, `"seq":7`},
		{"export one repo", []string{"audit", "export", "--repo", "other/x"}, exitOK, ""},
		{"export since", []string{"audit", "export", "--since", "2026-11-24T12:00:04Z"}, exitOK, `"event_id":"ev-4"`},
		{"query", []string{"audit", "query", "--repo", "acme/app"}, exitOK, "EVENT ID"},
		{"query needs repo", []string{"audit", "query"}, exitUsage, "--repo"},
		{"bad since", []string{"audit", "export", "--since", "yesterday"}, exitUsage, "RFC 3339"},
		{"no subcommand", []string{"audit"}, exitUsage, "needs a subcommand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(tc.args...)
			if code != tc.want || !strings.Contains(out+errOut, tc.wantOut) {
				t.Fatalf("run(%v) = %d, out %q, stderr %q; want %d and %q", tc.args, code, out, errOut, tc.want, tc.wantOut)
			}
			if strings.Contains(out, "\x1b") {
				t.Fatalf("terminal escape from a webhook field reached the output: %q", out)
			}
		})
	}

	// A head kept outside: verify --since-head holds it, on the stream and
	// on the export; a head that is not in the log fails.
	code, headJSON, errOut := runCmd("audit", "head")
	headFile := filepath.Join(t.TempDir(), "head.json")
	if err := os.WriteFile(headFile, []byte(headJSON), 0o600); code != exitOK || err != nil {
		t.Fatalf("audit head: %d %q %v", code, errOut, err)
	}
	for _, args := range [][]string{{"audit", "verify", "--since-head", headFile}, {"audit", "verify", "--file", file, "--since-head", headFile}} {
		if code, out, errOut := runCmd(args...); code != exitOK {
			t.Fatalf("%v: %d %q %q", args, code, out, errOut)
		}
	}
	later := strings.Replace(headJSON, `"seq":7`, `"seq":8`, 1)
	if err := os.WriteFile(headFile, []byte(later), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd("audit", "verify", "--file", file, "--since-head", headFile); code != exitRuntime || !strings.Contains(errOut, "ends at seq 7") {
		t.Fatalf("verify of an export that ends before the kept head: %d %q", code, errOut)
	}

	// pubkey prints the configured key's public half; keygen makes a new
	// key, 0600, and never overwrites one.
	code, pub, errOut := runCmd("audit", "pubkey")
	if code != exitOK || len(strings.TrimSpace(pub)) != 44 {
		t.Fatalf("audit pubkey: %d %q %q", code, pub, errOut)
	}
	code, out, errOut = runCmd("audit", "verify", "--pubkey", strings.TrimSpace(pub))
	if code != exitOK {
		t.Fatalf("verify with the printed public key: %d %q %q", code, out, errOut)
	}
	newKey := filepath.Join(t.TempDir(), "k", "audit.key")
	code, newPub, errOut := runCmd("audit", "keygen", newKey)
	if st, err := os.Stat(newKey); code != exitOK || err != nil || st.Mode().Perm() != 0o600 || newPub == pub {
		t.Fatalf("keygen: %d %q %q, %v", code, newPub, errOut, err)
	}
	if code, _, errOut = runCmd("audit", "keygen", newKey); code != exitUsage || !strings.Contains(errOut, "never overwrites") {
		t.Fatalf("keygen over an existing key: %d %q", code, errOut)
	}

	// One altered byte in the fourth record: verify fails and names it.
	raw, _ := os.ReadFile(file)
	idx := bytes.Index(raw, []byte(`"event_id":"ev-3"`)) + len(`"event_id":"ev-`)
	raw[idx] = '9'
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd("audit", "verify", "--file", bad)
	if code != exitRuntime || !strings.Contains(errOut, "seq 5: hash does not match") {
		t.Fatalf("verify of a tampered file: %d, stderr %q", code, errOut)
	}
}
