package main

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
	"github.com/forgebus/forgebus/workers/models"
)

// refreshCall is one POST the models receiver got.
type refreshCall struct {
	signed bool
	body   struct {
		Repo    string   `json:"repo"`
		Branch  string   `json:"branch"`
		Commit  string   `json:"commit"`
		Paths   []string `json:"paths"`
		EventID string   `json:"event_id"`
	}
}

// refreshReceiver is a models refresh endpoint on 127.0.0.1 that checks
// X-Forgebus-Signature against secret.
type refreshReceiver struct {
	mu    sync.Mutex
	calls []refreshCall
}

func newRefreshReceiver(t *testing.T, secret string) (*refreshReceiver, string) {
	t.Helper()
	rr := &refreshReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var c refreshCall
		c.signed = hmac.Equal([]byte(r.Header.Get(models.SignatureHeader)), []byte(models.Sign([]byte(secret), body)))
		if err := json.Unmarshal(body, &c.body); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		rr.mu.Lock()
		rr.calls = append(rr.calls, c)
		rr.mu.Unlock()
		if !c.signed {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return rr, srv.URL
}

func (rr *refreshReceiver) snapshot() []refreshCall {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return slices.Clone(rr.calls)
}

// TestE2EDocsAndModels (issue 4): a signed webhook goes through ingest and
// JetStream to a published docs folder and to a received, signature-checked
// models refresh call; the audit log shows all of it and verifies.
func TestE2EDocsAndModels(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	requireGitHTTPBackend(t)
	const (
		owner, name  = "acme", "handbook"
		token        = "e2e-gogs-token-51c2"
		modelsSecret = "e2e-models-secret-8d1e"
	)
	forgebusBin(t) // build before any clock starts

	gitRoot := t.TempDir()
	repo := gittest.NewRepo(t, gitRoot, owner, name)
	repo.Write("build.sh", "#!/bin/sh\nset -e\nmkdir -p site\nprintf '<h1>handbook %s</h1>\\n' \"$FORGEBUS_COMMIT\" > site/index.html\n")
	repo.Write("README.md", "handbook\n")
	before := repo.Commit("first")
	repo.Write("models/x.json", `{"version": 2}`+"\n")
	repo.Write("README.md", "handbook, with a model\n")
	after := repo.Commit("add a model")
	repo.Push("master")
	git := gittest.Serve(t, gitRoot, token)

	receiver, receiverURL := newRefreshReceiver(t, modelsSecret)
	docsRoot := t.TempDir()
	config := fmt.Sprintf(`workers:
  docs:
    rules:
      - name: handbook-docs
        repo: "acme/*"
        branch: master
        command: [sh, build.sh]
        output: site
        root: %q
        timeout: 30s
  models:
    rules:
      - name: refresh
        repo: acme/handbook
        branch: master
        paths: ["models/**"]
        post: {url: %q, timeout: 5s}
`, docsRoot, receiverURL+"/refresh")
	dev := startDev(t, config,
		"FORGEBUS_GOGS_URL="+git.URL,
		"FORGEBUS_GOGS_TOKEN="+token,
		"FORGEBUS_MODELS_SECRET="+modelsSecret,
	)

	body, headers := resignedPush(t, "push-multi-commit.json", pushRepo{owner: owner, name: name, baseURL: git.URL, before: before, after: after})
	eventID := headers.Get("X-Gogs-Delivery")
	if code, resp := postHook(t, dev.base+"/hooks/gogs", body, headers); code != http.StatusAccepted {
		t.Fatalf("POST re-signed push = %d %s, want 202", code, resp)
	}
	// The same payload through a second (form) hook is the same event: one
	// docs build and one models POST, checked below.
	if code, id, dup := postFormCopy(t, dev.base+"/hooks/gogs", body, headers); code != http.StatusAccepted || !dup || id != eventID {
		t.Fatalf("form hook copy = %d id %s duplicate %v, want 202 duplicate of %s", code, id, dup, eventID)
	}

	index := filepath.Join(docsRoot, owner, name, "master", "current", "index.html")
	wantHTML := "<h1>handbook " + after + "</h1>\n"
	natstest.Eventually(t, 30*time.Second, "docs published "+index, func() bool {
		b, err := os.ReadFile(index)
		return err == nil && string(b) == wantHTML
	})
	natstest.Eventually(t, 30*time.Second, "the refresh receiver got a call", func() bool {
		return len(receiver.snapshot()) > 0
	})

	// The audit log: the push, and each worker's outcome for it.
	var rows []auditRow
	var queryOut string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last audit query output:\n%s", queryOut)
		}
	})
	natstest.Eventually(t, 20*time.Second, "audit query shows the push and the docs and models outcomes", func() bool {
		code, out, stderr := dev.cli(t, "audit", "query", "--repo", owner+"/"+name)
		if code != 0 {
			t.Logf("audit query exit %d: %s", code, stderr)
			return false
		}
		queryOut, rows = out, auditRows(out)
		return hasRow(rows, "push", "-") &&
			hasRow(rows, "push "+string(schemas.OutcomeSucceeded), "docs") &&
			hasRow(rows, "push "+string(schemas.OutcomeSucceeded), "models")
	})
	if !strings.Contains(queryOut, eventID) {
		t.Errorf("audit query does not name event %s:\n%s", eventID, queryOut)
	}

	// Exactly one correctly signed call, naming the changed model, for the
	// pushed commit. The models outcome is recorded, so no call is pending.
	calls := receiver.snapshot()
	if n := len(streamData(t, dev.connect(t), schemas.StreamEvents)); n != 1 {
		t.Errorf("FORGE_EVENTS holds %d events, want 1 for one push through two hooks", n)
	}
	if len(calls) != 1 {
		t.Fatalf("refresh receiver got %d calls, want exactly 1", len(calls))
	}
	c := calls[0]
	if !c.signed {
		t.Error("refresh call: X-Forgebus-Signature does not match HMAC-SHA256 of the body under FORGEBUS_MODELS_SECRET")
	}
	if c.body.Repo != owner+"/"+name || c.body.Branch != "master" || c.body.Commit != after || c.body.EventID != eventID {
		t.Errorf("refresh call body = %+v, want repo %s/%s branch master commit %s event %s", c.body, owner, name, after, eventID)
	}
	if !slices.Equal(c.body.Paths, []string{"models/x.json"}) {
		t.Errorf("refresh call paths = %q, want [models/x.json] (README.md and build.sh are not watched)", c.body.Paths)
	}
	// The repository is private: git asks anonymously, gets Gogs' 401
	// challenge and answers it with Basic credentials, once per fetch.
	if a, r := git.Authorized.Load(), git.Rejected.Load(); a == 0 || r > a {
		t.Errorf("git server: %d authorized, %d rejected requests; want each challenge answered with the token", a, r)
	}

	code, out, stderr := dev.cli(t, "audit", "verify")
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: exit %d, stdout %q, stderr %q; want exit 0 and ok", code, out, stderr)
	}
	// dev created the audit signing key on first start, readable by its owner only.
	if st, err := os.Stat(filepath.Join(dev.dataDir, "creds", "audit.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("audit key created by dev: %v, %v; want mode 0600", st, err)
	}

	if code := dev.stop(t, 15*time.Second); code != 0 {
		t.Errorf("dev exit code after SIGTERM = %d, want 0", code)
	}
	logs := dev.stdout.String() + dev.stderr.String()
	for what, s := range map[string]string{"webhook secret": e2eSecret, "gogs token": token, "models secret": modelsSecret} {
		if strings.Contains(logs, s) {
			t.Errorf("dev printed or logged the %s", what)
		}
	}
}

// fakeGogsAPI serves GET /api/v1/repos/{owner}/{repo}/raw/{ref}/{path} as
// Gogs does: 200 with the file, 404 for a missing file or ref, 401 without
// the right "Authorization: token …".
type fakeGogsAPI struct {
	token string
	// files maps "owner/repo@ref:path" to content.
	files map[string]string

	mu                   sync.Mutex
	served, unauthorized int
	missing              int
}

func (g *fakeGogsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const prefix = "/api/v1/repos/"
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, prefix), "/", 5)
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, prefix) || len(parts) != 5 || parts[2] != "raw" {
		http.NotFound(w, r)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.Header.Get("Authorization") != "token "+g.token {
		g.unauthorized++
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"message":"Unauthorized"}`)
		return
	}
	content, ok := g.files[parts[0]+"/"+parts[1]+"@"+parts[3]+":"+parts[4]]
	if !ok {
		g.missing++
		http.NotFound(w, r)
		return
	}
	g.served++
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, content)
}

func (g *fakeGogsAPI) counts() (served, unauthorized, missing int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.served, g.unauthorized, g.missing
}

// TestFakeGogsAPI pins the fake's answers, so TestE2EEnvsync talks to
// something that behaves like Gogs.
func TestFakeGogsAPI(t *testing.T) {
	api := &fakeGogsAPI{token: "tok", files: map[string]string{"o/r@abc:deploy/a.env": "A=1\n"}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	tests := []struct {
		name, path, auth string
		want             int
	}{
		{name: "file", path: "/api/v1/repos/o/r/raw/abc/deploy/a.env", auth: "token tok", want: http.StatusOK},
		{name: "missing file", path: "/api/v1/repos/o/r/raw/abc/deploy/b.env", auth: "token tok", want: http.StatusNotFound},
		{name: "unknown ref", path: "/api/v1/repos/o/r/raw/def/deploy/a.env", auth: "token tok", want: http.StatusNotFound},
		{name: "no token", path: "/api/v1/repos/o/r/raw/abc/deploy/a.env", want: http.StatusUnauthorized},
		{name: "wrong token", path: "/api/v1/repos/o/r/raw/abc/deploy/a.env", auth: "token nope", want: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK && string(b) != "A=1\n" {
				t.Errorf("body %q", b)
			}
		})
	}
}

// TestE2EEnvsync (issue 5): a signed push reaches the envsync worker, which
// reads the env file through the Gogs API at the pushed commit and puts its
// values into the KV bucket; no value appears in the logs, the results or
// the audit log, and the audit chain verifies.
func TestE2EEnvsync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const (
		// A dot in the name: escaped in subjects (%2E) and KV keys (=2E).
		owner, name = "acme", "shop.web"
		token       = "e2e-gogs-token-93ab"
		before      = "1111111111111111111111111111111111111111"
		after       = "2222222222222222222222222222222222222222"
	)
	// Distinctive values: none may appear anywhere but in the KV bucket.
	values := map[string]string{
		"DATABASE_URL": "postgres://app:s3cr3t-VALUE-x9@db:5432/shop",
		"API_KEY":      "k3y-VALUE-q7w2",
		"GREETING":     "hello VALUE z3r0",
	}
	envFile := "# production\nDATABASE_URL=" + values["DATABASE_URL"] + "\nexport API_KEY='" + values["API_KEY"] + "'\nGREETING=\"" + values["GREETING"] + "\"\n"
	forgebusBin(t)

	api := &fakeGogsAPI{token: token, files: map[string]string{
		owner + "/" + name + "@" + before + ":deploy/production.env": "DATABASE_URL=old-value\n",
		owner + "/" + name + "@" + after + ":deploy/production.env":  envFile,
	}}
	apiSrv := httptest.NewServer(api)
	t.Cleanup(apiSrv.Close)

	config := `workers:
  envsync:
    rules:
      - name: shop-production
        repo: acme/shop.web
        branch: master
        file: deploy/production.env
`
	// Debug logs: the most a log could ever say about a value.
	dev := startDev(t, config, "FORGEBUS_GOGS_URL="+apiSrv.URL, "FORGEBUS_GOGS_TOKEN="+token, "FORGEBUS_LOG_LEVEL=debug")

	body, headers := resignedPush(t, "push-multi-commit.json", pushRepo{owner: owner, name: name, baseURL: apiSrv.URL, before: before, after: after})
	eventID := headers.Get("X-Gogs-Delivery")
	if code, resp := postHook(t, dev.base+"/hooks/gogs", body, headers); code != http.StatusAccepted {
		t.Fatalf("POST re-signed push = %d %s, want 202", code, resp)
	}

	js := dev.connect(t)
	const prefix = "acme.shop=2Eweb.production."
	natstest.Eventually(t, 30*time.Second, "KV bucket forgebus_env holds the env file's values", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, "forgebus_env")
		if err != nil {
			return false
		}
		for k, v := range values {
			e, err := kv.Get(ctx, prefix+k)
			if err != nil || string(e.Value()) != v {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "forgebus_env")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx, jetstream.MetaOnly())
	if err != nil {
		t.Fatal(err)
	}
	var envKeys []string
	for k := range keys.Keys() {
		if strings.HasPrefix(k, prefix) {
			envKeys = append(envKeys, k)
		}
	}
	slices.Sort(envKeys)
	if want := []string{prefix + "API_KEY", prefix + "DATABASE_URL", prefix + "GREETING"}; !slices.Equal(envKeys, want) {
		t.Errorf("env keys = %q, want %q", envKeys, want)
	}
	if _, err := kv.Get(ctx, prefix+"NOPE"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("Get of a key not in the file: %v, want ErrKeyNotFound", err)
	}

	var queryOut string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last audit query output:\n%s", queryOut)
		}
	})
	natstest.Eventually(t, 20*time.Second, "audit query shows the push and the envsync outcome", func() bool {
		code, out, stderr := dev.cli(t, "audit", "query", "--repo", owner+"/"+name)
		if code != 0 {
			t.Logf("audit query exit %d: %s", code, stderr)
			return false
		}
		queryOut = out
		rows := auditRows(out)
		return hasRow(rows, "push", "-") && hasRow(rows, "push "+string(schemas.OutcomeSucceeded), "envsync")
	})
	if !strings.Contains(queryOut, eventID) {
		t.Errorf("audit query does not name event %s:\n%s", eventID, queryOut)
	}
	served, unauthorized, missing := api.counts()
	if served == 0 || unauthorized != 0 || missing != 0 {
		t.Errorf("Gogs API: %d served, %d unauthorized, %d missing; want the file read with the token", served, unauthorized, missing)
	}

	code, verifyOut, stderr := dev.cli(t, "audit", "verify")
	if code != 0 || !strings.HasPrefix(verifyOut, "ok: ") {
		t.Errorf("audit verify: exit %d, stdout %q, stderr %q; want exit 0 and ok", code, verifyOut, stderr)
	}
	code, export, stderr := dev.cli(t, "audit", "export")
	if code != 0 || !strings.Contains(export, eventID) {
		t.Fatalf("audit export: exit %d, %d bytes, stderr %q; want exit 0 and the event", code, len(export), stderr)
	}

	results := streamData(t, js, schemas.StreamResults)
	var envsyncResults int
	for _, m := range results {
		var r schemas.Result
		if err := json.Unmarshal(m, &r); err == nil && r.Worker == "envsync" && r.EventID == eventID {
			envsyncResults++
		}
	}
	if envsyncResults == 0 {
		t.Fatalf("FORGE_RESULTS holds no envsync result for %s (%d messages)", eventID, len(results))
	}
	if code := dev.stop(t, 15*time.Second); code != 0 {
		t.Errorf("dev exit code after SIGTERM = %d, want 0", code)
	}

	// Secrets stay secret: no value in the dev process's whole output, the
	// audit export, the results or the query and verify output.
	devOut := dev.stdout.String() + dev.stderr.String()
	if !strings.Contains(devOut, `"level":"debug"`) || !strings.Contains(devOut, `"worker":"envsync"`) {
		t.Error("dev's output has no debug lines or no envsync lines: the check below would prove nothing")
	}
	places := map[string]string{
		"dev stdout+stderr": devOut,
		"audit export":      export,
		"audit query":       queryOut,
		"FORGE_RESULTS":     string(joinData(results)),
	}
	checks := map[string]string{"gogs token": token, "webhook secret": e2eSecret}
	for k, v := range values {
		checks[k] = v
	}
	checks["a value fragment"] = "VALUE"
	for where, text := range places {
		for what, s := range checks {
			if strings.Contains(text, s) {
				t.Errorf("%s contains the %s", where, what)
			}
		}
	}
}

func joinData(msgs [][]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = append(out, m...)
		out = append(out, '\n')
	}
	return out
}

// TestE2EExampleConfig: the example config that "make run" uses starts
// "forgebus dev" with every worker, on a machine with no Gogs running, and
// a stop exits 0.
func TestE2EExampleConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	config, err := os.ReadFile("../../../examples/forgebus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// startDev overrides the addresses and the data dir through the
	// environment, as an operator would; the rules are the example's.
	dev := startDev(t, string(config), "FORGEBUS_GOGS_URL=http://127.0.0.1:3000")
	// /readyz can answer before the pipe has carried the banner.
	natstest.Eventually(t, 10*time.Second, "the banner shows 4 workers", func() bool {
		return strings.Contains(dev.stdout.String(), "workers:           4")
	})
	if !strings.Contains(dev.stderr.String(), `"workers":["audit","docs","models","envsync"]`) {
		t.Errorf("dev did not start audit, docs, models and envsync:\n%s", dev.stderr)
	}
	if code := dev.stop(t, 15*time.Second); code != 0 {
		t.Errorf("dev exit code after SIGTERM = %d, want 0", code)
	}
}
