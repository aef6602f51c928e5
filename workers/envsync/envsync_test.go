package envsync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joho/godotenv"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gogsapi"
	"github.com/forgebus/forgebus/workers/runtime"
)

// Distinctive values that must never leave the KV bucket and the env file.
var testValues = []string{secret, "s3cr3t-VALUE-y7", "s3cr3t-VALUE-z5", "p4ss-w0rd-QQ"}

// fakeGogs follows the Gogs raw-file route: token auth (401 without a valid
// token), 404 for a path that does not exist at a commit.
type fakeGogs struct {
	mu     sync.Mutex
	files  map[string]string // "<sha>/<path>" -> content
	status int               // forced status, 0 = none
	calls  int
}

func (g *fakeGogs) set(sha, path, content string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.files[sha+"/"+path] = content
}

func (g *fakeGogs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/repos/acme/app/raw/")
	switch {
	case r.Header.Get("Authorization") != "token good-token":
		http.Error(w, "", http.StatusUnauthorized)
	case g.status != 0:
		http.Error(w, "", g.status)
	case !ok:
		http.NotFound(w, r)
	default:
		c, ok := g.files[rest]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(c))
	}
}

type harness struct {
	t    *testing.T
	gogs *fakeGogs
	srv  *httptest.Server
	js   jetstream.JetStream
	logs *syncBuffer
	// everything a user could see: reports, errors, results.
	seen   []string
	seenMu sync.Mutex
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	g := &fakeGogs{files: map[string]string{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	ns := natstest.Run(t)
	_, js := ns.Connect(t)
	h := &harness{t: t, gogs: g, srv: srv, js: js, logs: &syncBuffer{}}
	t.Cleanup(h.checkNoValuesLeaked)
	return h
}

func (h *harness) worker(cfg Config, token string) *Worker {
	h.t.Helper()
	api, err := gogsapi.New(h.srv.URL, token)
	if err != nil {
		h.t.Fatal(err)
	}
	w, err := New(cfg, Deps{KV: h.js, API: api, Log: zerolog.New(h.logs).Level(zerolog.DebugLevel)})
	if err != nil {
		h.t.Fatal(err)
	}
	return w
}

func (h *harness) handle(w *Worker, ev *schemas.Envelope) (runtime.Report, error) {
	rep, err := w.Handle(context.Background(), ev)
	b, _ := json.Marshal(rep)
	res := schemas.Result{Worker: Name, EventID: ev.ID, Outcome: rep.Outcome, Detail: rep.Detail}
	if err != nil {
		res.Error = err.Error()
	}
	rb, _ := json.Marshal(res)
	h.seenMu.Lock()
	h.seen = append(h.seen, string(b), string(rb))
	h.seenMu.Unlock()
	return rep, err
}

func (h *harness) checkNoValuesLeaked() {
	all := h.logs.String() + strings.Join(h.seen, "\n")
	for _, v := range testValues {
		if strings.Contains(all, v) {
			h.t.Errorf("value %q appears in a log line, report or error", v)
		}
	}
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func sha(n int) string { return fmt.Sprintf("%040x", n) }

func push(id string, at time.Time, after string) *schemas.Envelope {
	p := schemas.Push{
		Ref: "refs/heads/main", Before: sha(0xbef), After: after, Branch: "main",
		Repository: schemas.Repository{Name: "app", FullName: "acme/app", DefaultBranch: "main",
			Owner: schemas.User{Login: "acme"}},
	}
	data, _ := json.Marshal(p)
	return &schemas.Envelope{
		SpecVersion: schemas.SpecVersion, ID: id, Type: "forge.push", Time: at,
		Repo: "acme/app", Sender: "bob", Data: data,
	}
}

const envPath = "deploy/production.env"

func baseCfg() Config {
	return Config{Rules: []Rule{{Name: "prod", Repo: "acme/*", File: envPath}}}
}

const prefix = "acme.app.production"

func kvState(t *testing.T, js jetstream.JetStream) (map[string]string, map[string]uint64) {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	vals, revs := map[string]string{}, map[string]uint64{}
	lister, err := kv.ListKeysFiltered(context.Background(), prefix+".>")
	if err != nil {
		t.Fatal(err)
	}
	for k := range lister.Keys() {
		e, err := kv.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(k, prefix+".")
		vals[name], revs[name] = string(e.Value()), e.Revision()
	}
	return vals, revs
}

func wantEnv(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("bucket has keys %v, want %v", sortedKeys(got), sortedKeys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s holds the wrong value (len %d, want len %d)", k, len(got[k]), len(v))
		}
	}
}

func TestPushesApplyAsDiff(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	cfg := baseCfg()
	cfg.Rules[0].EnvFile = filepath.Join(dir, "app.env")
	w := h.worker(cfg, "good-token")

	h.gogs.set(sha(1), envPath, "# prod\nA=1\nB='"+secret+"'\nexport C=\"multi\nline\"\n")
	rep, err := h.handle(w, push("ev-1", t0, sha(1)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != "" || rep.Detail["keys_put"] != "A,B,C" || rep.Detail["keys_deleted"] != "" {
		t.Fatalf("first push: report %+v", rep)
	}
	if rep.Detail["key_sha256"] == "" || !strings.Contains(rep.Detail["key_sha256"], "B:"+valueHash("B", secret)) {
		t.Fatalf("report lacks value hashes: %+v", rep.Detail)
	}
	vals, revs1 := kvState(t, h.js)
	wantEnv(t, vals, map[string]string{"A": "1", "B": secret, "C": "multi\nline"})

	// A push that does not touch the file changes nothing.
	h.gogs.set(sha(2), envPath, "# prod\nA=1\nB='"+secret+"'\nexport C=\"multi\nline\"\n")
	rep, err = h.handle(w, push("ev-2", t0.Add(time.Second), sha(2)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Detail["keys_put"] != "" || rep.Detail["keys_deleted"] != "" {
		t.Fatalf("untouched file: report %+v", rep)
	}
	_, revs2 := kvState(t, h.js)
	for k := range revs1 {
		if revs1[k] != revs2[k] {
			t.Fatalf("key %s rewritten by a push that did not change it", k)
		}
	}

	// B changes, C is removed, D is new, A is left alone.
	h.gogs.set(sha(3), envPath, "A=1\nB=s3cr3t-VALUE-y7\nD=p4ss-w0rd-QQ\n")
	rep, err = h.handle(w, push("ev-3", t0.Add(2*time.Second), sha(3)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Detail["keys_put"] != "B,D" || rep.Detail["keys_deleted"] != "C" {
		t.Fatalf("diff push: report %+v", rep.Detail)
	}
	vals, revs3 := kvState(t, h.js)
	wantEnv(t, vals, map[string]string{"A": "1", "B": "s3cr3t-VALUE-y7", "D": "p4ss-w0rd-QQ"})
	if revs3["A"] != revs1["A"] {
		t.Fatal("unchanged key A was rewritten")
	}

	// The history keeps the previous value of B for operators.
	kv, _ := h.js.KeyValue(context.Background(), DefaultBucket)
	hist, err := kv.History(context.Background(), prefix+".B")
	if err != nil || len(hist) != 2 || string(hist[0].Value()) != secret {
		t.Fatalf("history of B: %d entries, err %v", len(hist), err)
	}

	// The rendered file: 0600, and godotenv reads back the same env.
	fi, err := os.Stat(cfg.Rules[0].EnvFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("env file mode %v, want 0600", fi.Mode().Perm())
	}
	back, err := godotenv.Read(cfg.Rules[0].EnvFile)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv(t, back, map[string]string{"A": "1", "B": "s3cr3t-VALUE-y7", "D": "p4ss-w0rd-QQ"})
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temp files left behind: %d entries", len(ents))
	}

	// Redelivery of an applied event does nothing.
	rep, err = h.handle(w, push("ev-3", t0.Add(2*time.Second), sha(3)))
	if err != nil || rep.Detail["already_applied"] != "true" {
		t.Fatalf("redelivery: %+v, %v", rep, err)
	}
}

func TestOlderPushIsSuperseded(t *testing.T) {
	h := newHarness(t)
	w := h.worker(baseCfg(), "good-token")
	h.gogs.set(sha(1), envPath, "A=old\nB="+secret+"\n")
	h.gogs.set(sha(2), envPath, "A=new\n")

	if _, err := h.handle(w, push("ev-new", t0.Add(time.Second), sha(2))); err != nil {
		t.Fatal(err)
	}
	calls := h.gogs.calls
	rep, err := h.handle(w, push("ev-old", t0, sha(1)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != schemas.OutcomeSuperseded || rep.Detail["newer_event_id"] != "ev-new" {
		t.Fatalf("late old push: %+v", rep)
	}
	if h.gogs.calls != calls {
		t.Fatal("a superseded push still fetched the file")
	}
	vals, _ := kvState(t, h.js)
	wantEnv(t, vals, map[string]string{"A": "new"})
}

func TestConcurrentReplicasConvergeToNewest(t *testing.T) {
	h := newHarness(t)
	a := h.worker(baseCfg(), "good-token")
	b := h.worker(baseCfg(), "good-token")
	const n = 12
	for i := 1; i <= n; i++ {
		h.gogs.set(sha(i), envPath, fmt.Sprintf("N=%d\nK%d=x\nS=%s\n", i, i, testValues[i%len(testValues)]))
	}
	var wg sync.WaitGroup
	for i := n; i >= 1; i-- { // newest first, to make the old ones late
		w := a
		if i%2 == 0 {
			w = b
		}
		wg.Add(1)
		go func(i int, w *Worker) {
			defer wg.Done()
			ev := push(fmt.Sprintf("ev-%02d", i), t0.Add(time.Duration(i)*time.Millisecond), sha(i))
			for try := 0; ; try++ { // what the runtime does with a transient error
				_, err := h.handle(w, ev)
				if err == nil {
					return
				}
				if runtime.IsPermanent(err) || try > 200 {
					t.Errorf("event %d: %v", i, err)
					return
				}
				if !errors.Is(err, ErrBusy) && !errors.Is(err, ErrConflict) {
					t.Errorf("event %d: unexpected transient error %v", i, err)
					return
				}
				time.Sleep(5 * time.Millisecond) // a backoff, not a wait for a condition
			}
		}(i, w)
	}
	wg.Wait()
	vals, _ := kvState(t, h.js)
	wantEnv(t, vals, map[string]string{"N": fmt.Sprint(n), fmt.Sprintf("K%d", n): "x", "S": testValues[n%len(testValues)]})
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name      string
		token     string
		status    int
		content   string // "" = file missing
		permanent bool
		wantErr   error
		wantMsg   string
	}{
		{name: "parse error names the line", token: "good-token", content: "A=1\nB=2\nC=\"" + secret + "\nD=4\n", permanent: true, wantErr: ErrParse, wantMsg: "line 3"},
		{name: "bad key", token: "good-token", content: "A=1\nBAD-KEY=" + secret + "\n", permanent: true, wantErr: ErrParse, wantMsg: "line 2"},
		{name: "missing file", token: "good-token", permanent: true, wantErr: ErrFileMissing, wantMsg: "keys left unchanged"},
		{name: "no token", token: "", content: "A=1\n", permanent: true, wantErr: gogsapi.ErrNoToken, wantMsg: "give the envsync worker a Gogs API token"},
		{name: "401 bad token", token: "wrong", content: "A=1\n", permanent: true, wantErr: gogsapi.ErrUnauthorized, wantMsg: "replace it with a valid token"},
		{name: "403", token: "good-token", status: 403, content: "A=1\n", permanent: true, wantErr: gogsapi.ErrForbidden, wantMsg: "read access"},
		{name: "500 transient", token: "good-token", status: 500, content: "A=1\n", permanent: false, wantErr: gogsapi.ErrServer},
		{name: "503 transient", token: "good-token", status: 503, content: "A=1\n", permanent: false, wantErr: gogsapi.ErrServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(baseCfg(), "good-token")
			// A first good state that an error must leave alone.
			h.gogs.set(sha(1), envPath, "KEEP="+secret+"\n")
			if _, err := h.handle(w, push("ev-1", t0, sha(1))); err != nil {
				t.Fatal(err)
			}
			w = h.worker(baseCfg(), tt.token)
			if tt.content != "" {
				h.gogs.set(sha(2), envPath, tt.content)
			}
			h.gogs.status = tt.status
			_, err := h.handle(w, push("ev-2", t0.Add(time.Second), sha(2)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if runtime.IsPermanent(err) != tt.permanent {
				t.Fatalf("permanent = %v, want %v (%v)", !tt.permanent, tt.permanent, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err %q does not say %q", err, tt.wantMsg)
			}
			vals, _ := kvState(t, h.js)
			wantEnv(t, vals, map[string]string{"KEEP": secret})
		})
	}
}

func TestSkips(t *testing.T) {
	h := newHarness(t)
	w := h.worker(baseCfg(), "good-token")
	other := push("ev-x", t0, sha(1))
	var p schemas.Push
	_ = json.Unmarshal(other.Data, &p)
	p.Branch, p.Ref = "feature", "refs/heads/feature"
	other.Data, _ = json.Marshal(p)
	rep, err := h.handle(w, other)
	if err != nil || rep.Detail["skipped"] != "no rule matches" {
		t.Fatalf("push to a non-default branch: %+v %v", rep, err)
	}
	if h.gogs.calls != 0 {
		t.Fatal("a skipped push fetched a file")
	}
}

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr error
		check   func(Config) bool
	}{
		{name: "ok", doc: "runtime: {workers: 2}\npolicy: {x: 1}\nrules:\n  - repo: acme/*\n    file: deploy/production.env\n    env_file: /srv/app.env\n",
			check: func(c Config) bool { return len(c.Rules) == 1 && c.Rules[0].EnvFile == "/srv/app.env" }},
		{name: "typo in a rule", doc: "rules:\n  - repo: acme/*\n    fiel: x.env\n", wantErr: ErrConfig},
		{name: "no rules", doc: "runtime: {}\n", wantErr: ErrConfig},
		{name: "traversal", doc: "rules:\n  - repo: a/b\n    file: ../x.env\n", wantErr: ErrConfig},
		{name: "relative env_file", doc: "rules:\n  - repo: a/b\n    file: x.env\n    env_file: x.env\n", wantErr: ErrConfig},
		{name: "bad prefix", doc: "rules:\n  - repo: a/b\n    file: x.env\n    prefix: a..b\n", wantErr: ErrConfig},
		{name: "bad bucket", doc: "rules:\n  - repo: a/b\n    file: x.env\n    bucket: a.b\n", wantErr: ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var node yamlNode
			if err := unmarshalYAML([]byte(tt.doc), &node); err != nil {
				t.Fatal(err)
			}
			cfg, err := DecodeConfig(&node)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.check != nil && !tt.check(cfg) {
				t.Fatalf("config %+v", cfg)
			}
		})
	}
}
