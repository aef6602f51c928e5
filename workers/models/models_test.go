package models_test

import (
	"context"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
	"github.com/forgebus/forgebus/workers/models"
	"github.com/forgebus/forgebus/workers/runtime"
)

const (
	token  = "gogs-token-for-tests"
	secret = "refresh-secret"
	zero   = "0000000000000000000000000000000000000000"
)

// receiver is a refresh endpoint that checks the signature.
type receiver struct {
	mu     sync.Mutex
	got    []models.Payload
	badSig atomic.Int64
	status atomic.Int64
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Header.Get(models.SignatureHeader) != models.Sign([]byte(secret), body) {
		rc.badSig.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p models.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, p)
	rc.mu.Unlock()
	if s := rc.status.Load(); s != 0 {
		w.WriteHeader(int(s))
	}
}

func (rc *receiver) take() []models.Payload {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	got := rc.got
	rc.got = nil
	return got
}

var evSeq atomic.Int64

func pushEvent(t *testing.T, branch, before, after string) *schemas.Envelope {
	t.Helper()
	b, err := json.Marshal(schemas.Push{
		Ref: "refs/heads/" + branch, Before: before, After: after, Branch: branch,
		Repository: schemas.Repository{FullName: "acme/ml", DefaultBranch: "master"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &schemas.Envelope{SpecVersion: schemas.SpecVersion, ID: fmt.Sprintf("ev-%d", evSeq.Add(1)),
		Type: "forge.push", Time: time.Now(), Repo: "acme/ml", Data: b}
}

// broker starts a JetStream for the worker's state, once per test.
func broker(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Run(t).Connect(t)
	return js
}

// modelRepo serves acme/ml, its master one commit that adds models/a.bin,
// and returns the server and that commit.
func modelRepo(t *testing.T) (*gittest.Server, string) {
	t.Helper()
	gitRoot := t.TempDir()
	src := gittest.NewRepo(t, gitRoot, "acme", "ml")
	srv := gittest.Serve(t, gitRoot, token)
	src.Write("models/a.bin", "a")
	c := src.Commit("model")
	src.Push("master")
	return srv, c
}

func newWorker(t *testing.T, gogsURL string, rules ...models.Rule) *models.Worker {
	t.Helper()
	w, err := models.New(models.Config{Rules: rules}, models.Deps{
		GogsURL: gogsURL, GogsToken: token, CacheDir: t.TempDir(), Secret: []byte(secret), KV: broker(t), Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestPathMatching(t *testing.T) {
	gitRoot := t.TempDir()
	src := gittest.NewRepo(t, gitRoot, "acme", "ml")
	srv := gittest.Serve(t, gitRoot, token)
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	w := newWorker(t, srv.URL, models.Rule{
		Name: "refresh", Repo: "acme/*", Branch: "**",
		Paths: []string{"models/**", "schemas/*.json"},
		Post:  &models.Post{URL: hook.URL, Timeout: 5 * time.Second},
	})
	src.Write("models/old.bin", "m")
	src.Write("README.md", "r")
	base := src.Commit("base")
	src.Push("master")

	tests := []struct {
		name      string
		branch    string
		change    func() // makes commits on the working branch
		newBranch bool
		want      []string // matched paths; nil: no refresh
	}{
		{name: "unwatched change", branch: "master", change: func() { src.Write("README.md", "r2"); src.Commit("readme") }},
		{name: "rename out of the watched folder", branch: "master", change: func() {
			src.Write("archive/keep", "k")
			src.Git("mv", "models/old.bin", "archive/old.bin")
			src.Commit("archive")
		}, want: []string{"models/old.bin"}},
		{name: "path with a space", branch: "master", change: func() {
			src.Write("schemas/my schema.json", "{}")
			src.Commit("schema")
		}, want: []string{"schemas/my schema.json"}},
		{name: "watched change in the first of seven commits", branch: "master", change: func() {
			src.Write("models/deep/w.bin", "w")
			src.Commit("weights")
			for i := range 6 {
				src.Write("notes.txt", strings.Repeat("n", i+1))
				src.Commit("note")
			}
		}, want: []string{"models/deep/w.bin"}},
		{name: "new branch against the default branch", branch: "feature/m", newBranch: true, change: func() {
			src.Git("checkout", "--quiet", "-b", "feature/m")
			src.Write("models/f.bin", "f")
			src.Commit("feature model")
		}, want: []string{"models/f.bin"}},
	}
	_ = base
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := src.Head()
			tt.change()
			after := src.Head()
			src.Push(tt.branch)
			if tt.newBranch {
				before = zero
			}
			rep, err := w.Handle(context.Background(), pushEvent(t, tt.branch, before, after))
			if err != nil {
				t.Fatalf("Handle: %v (%v)", err, rep.Detail)
			}
			got := rc.take()
			if tt.want == nil {
				if len(got) != 0 || rep.Detail["skipped"] == "" {
					t.Fatalf("refreshed %v (detail %v), want no refresh", got, rep.Detail)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d refreshes, want 1 (detail %v)", len(got), rep.Detail)
			}
			p := got[0]
			slices.Sort(p.Paths)
			if !slices.Equal(p.Paths, tt.want) || p.Commit != after || p.Branch != tt.branch || p.Repo != "acme/ml" || p.EventID == "" {
				t.Errorf("payload = %+v, want paths %q at %s", p, tt.want, after)
			}
			if rep.Detail["status"] != "200" {
				t.Errorf("detail status = %q, want 200", rep.Detail["status"])
			}
		})
	}
	if rc.badSig.Load() != 0 {
		t.Errorf("%d requests with a bad signature", rc.badSig.Load())
	}
}

func TestStatusClassification(t *testing.T) {
	srv, c := modelRepo(t)

	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()

	tests := []struct {
		name          string
		url           string
		status        int
		wantPermanent bool
		wantErr       bool
		wantStatus    string
	}{
		{name: "200", url: hook.URL, status: 200, wantStatus: "200"},
		{name: "204", url: hook.URL, status: 204, wantStatus: "204"},
		{name: "500", url: hook.URL, status: 500, wantErr: true, wantStatus: "500"},
		{name: "503", url: hook.URL, status: 503, wantErr: true, wantStatus: "503"},
		{name: "408", url: hook.URL, status: 408, wantErr: true, wantStatus: "408"},
		{name: "429", url: hook.URL, status: 429, wantErr: true, wantStatus: "429"},
		{name: "400", url: hook.URL, status: 400, wantErr: true, wantPermanent: true, wantStatus: "400"},
		{name: "404", url: hook.URL, status: 404, wantErr: true, wantPermanent: true, wantStatus: "404"},
		{name: "302 is not followed", url: hook.URL, status: 302, wantErr: true, wantPermanent: true, wantStatus: "302"},
		{name: "timeout", url: slow.URL, wantErr: true, wantStatus: "no response"},
		{name: "connection refused", url: goneURL, wantErr: true, wantStatus: "no response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc.status.Store(int64(tt.status))
			w := newWorker(t, srv.URL, models.Rule{Repo: "acme/ml", Paths: []string{"models/**"},
				Post: &models.Post{URL: tt.url, Timeout: 300 * time.Millisecond}})
			rep, err := w.Handle(context.Background(), pushEvent(t, "master", zero, c))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if runtime.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("permanent = %v, want %v (%v)", runtime.IsPermanent(err), tt.wantPermanent, err)
			}
			if tt.status >= 300 && !errors.Is(err, models.ErrStatus) {
				t.Errorf("err = %v, want ErrStatus", err)
			}
			if rep.Detail["status"] != tt.wantStatus {
				t.Errorf("detail status = %q, want %q", rep.Detail["status"], tt.wantStatus)
			}
		})
	}
}

func TestCommandAction(t *testing.T) {
	gitRoot := t.TempDir()
	src := gittest.NewRepo(t, gitRoot, "acme", "ml")
	srv := gittest.Serve(t, gitRoot, token)
	src.Write("refresh.sh", "echo \"$FORGEBUS_REPO $FORGEBUS_BRANCH $FORGEBUS_COMMIT $(cat models/a.bin)\" > \"$HOME/refreshed\"\necho refreshed\n")
	src.Write("models/a.bin", "weights-v1")
	c := src.Commit("model")
	src.Push("master")
	cache := t.TempDir()
	w, err := models.New(models.Config{Rules: []models.Rule{{Repo: "acme/ml", Paths: []string{"models/**"},
		Command: &models.Command{Argv: []string{"sh", "refresh.sh"}, Timeout: 10 * time.Second}}}},
		models.Deps{GogsURL: srv.URL, GogsToken: token, CacheDir: cache, KV: broker(t), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := w.Handle(context.Background(), pushEvent(t, "master", zero, c))
	if err != nil || !strings.Contains(rep.Detail["output_tail"], "refreshed") {
		t.Fatalf("Handle: %v, %v", err, rep.Detail)
	}
	b, err := os.ReadFile(filepath.Join(cache, "home", "refreshed"))
	if want := "acme/ml master " + c + " weights-v1\n"; err != nil || string(b) != want {
		t.Errorf("command saw %q (%v), want %q", b, err, want)
	}

	src.Write("refresh.sh", "echo 'model server unreachable' >&2\nexit 7\n")
	src.Write("models/a.bin", "weights-v2")
	c2 := src.Commit("model 2")
	src.Push("master")
	rep, err = w.Handle(context.Background(), pushEvent(t, "master", c, c2))
	if !runtime.IsPermanent(err) || !errors.Is(err, models.ErrCommand) || !strings.Contains(rep.Detail["output_tail"], "model server unreachable") {
		t.Fatalf("failing command: err %v, detail %v", err, rep.Detail)
	}
}

func TestHostileBranch(t *testing.T) {
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	w := newWorker(t, "http://127.0.0.1:1", models.Rule{Repo: "**", Branch: "**", Paths: []string{"**"},
		Post: &models.Post{URL: hook.URL}})
	canary := filepath.Join(t.TempDir(), "pwned")
	for _, branch := range []string{"$(touch " + canary + ")", "--upload-pack=touch " + canary, "../../etc", "-x"} {
		_, err := w.Handle(context.Background(), pushEvent(t, branch, zero, strings.Repeat("a", 40)))
		if !runtime.IsPermanent(err) || !errors.Is(err, models.ErrBadEvent) {
			t.Errorf("branch %q: err = %v, want permanent ErrBadEvent", branch, err)
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("a branch name ran a command")
	}
	if got := rc.take(); len(got) != 0 {
		t.Errorf("hostile events caused %d refreshes", len(got))
	}
}

func TestConfig(t *testing.T) {
	post := &models.Post{URL: "http://127.0.0.1:9/x"}
	tests := []struct {
		name string
		rule models.Rule
		ok   bool
	}{
		{"post", models.Rule{Repo: "a/*", Paths: []string{"models/**"}, Post: post}, true},
		{"both actions", models.Rule{Repo: "a/*", Paths: []string{"m/**"}, Post: post, Command: &models.Command{Argv: []string{"x"}}}, false},
		{"no action", models.Rule{Repo: "a/*", Paths: []string{"m/**"}}, false},
		{"no paths", models.Rule{Repo: "a/*", Post: post}, false},
		{"bad glob", models.Rule{Repo: "a/*", Paths: []string{"m/[**"}, Post: post}, false},
		{"file url", models.Rule{Repo: "a/*", Paths: []string{"m/**"}, Post: &models.Post{URL: "file:///etc/passwd"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := models.Config{Rules: []models.Rule{tt.rule}}
			if err := cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			} else if err != nil && !errors.Is(err, models.ErrConfig) {
				t.Errorf("err = %v, want ErrConfig", err)
			}
		})
	}
}

// TestPrivateRepoRefusalsArePermanent: when git may not read the
// repository, the event fails at once and the error names the setting.
func TestPrivateRepoRefusalsArePermanent(t *testing.T) {
	srv, c := modelRepo(t)
	srv.AddToken("stranger", "tok-stranger")
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	js := broker(t)
	for _, tt := range []struct {
		token   string
		wantErr error
		wantMsg string
	}{
		{"", gitrepo.ErrUnauthorized, "set FORGEBUS_GOGS_TOKEN"},
		{"wrong", gitrepo.ErrUnauthorized, "Gogs refused the token"},
		{"tok-stranger", gitrepo.ErrForbidden, "lacks read access"},
	} {
		w, err := models.New(models.Config{Rules: []models.Rule{{Repo: "acme/ml", Paths: []string{"models/**"}, Post: &models.Post{URL: hook.URL}}}},
			models.Deps{GogsURL: srv.URL, GogsToken: tt.token, CacheDir: t.TempDir(), Secret: []byte(secret), KV: js, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Handle(context.Background(), pushEvent(t, "master", zero, c))
		if !runtime.IsPermanent(err) || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("token %q: err = %v, want a permanent %v saying %q", tt.token, err, tt.wantErr, tt.wantMsg)
		}
	}
	if got := rc.take(); len(got) != 0 {
		t.Errorf("%d refreshes without reading the repository", len(got))
	}
}

// TestRetryRunsOnlyRulesNotDone: a command rule and a POST rule; the POST
// answers 500 twice, then 200. Across the three tries (the third on another
// replica) the command runs once and the POST three times.
func TestRetryRunsOnlyRulesNotDone(t *testing.T) {
	gitRoot := t.TempDir()
	src := gittest.NewRepo(t, gitRoot, "acme", "ml")
	srv := gittest.Serve(t, gitRoot, token)
	runs := filepath.Join(t.TempDir(), "runs")
	src.Write("refresh.sh", "echo ran >> '"+runs+"'\n")
	src.Write("models/a.bin", "a")
	c := src.Commit("model")
	src.Push("master")
	rc := &receiver{}
	var posts atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if posts.Add(1) <= 2 {
			rc.status.Store(500)
		} else {
			rc.status.Store(200)
		}
		rc.ServeHTTP(w, r)
	}))
	t.Cleanup(hook.Close)
	js := broker(t)
	rules := []models.Rule{
		{Name: "command", Repo: "acme/ml", Paths: []string{"models/**"}, Command: &models.Command{Argv: []string{"sh", "refresh.sh"}, Timeout: 10 * time.Second}},
		{Name: "post", Repo: "acme/ml", Paths: []string{"models/**"}, Post: &models.Post{URL: hook.URL, Timeout: 5 * time.Second}},
	}
	replica := func() *models.Worker {
		w, err := models.New(models.Config{Rules: rules}, models.Deps{
			GogsURL: srv.URL, GogsToken: token, CacheDir: t.TempDir(), Secret: []byte(secret), KV: js, Log: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	a, b := replica(), replica()
	ev := pushEvent(t, "master", zero, c)
	for i, w := range []*models.Worker{a, a, b} {
		rep, err := w.Handle(context.Background(), ev)
		if i < 2 {
			if err == nil || runtime.IsPermanent(err) {
				t.Fatalf("try %d: err = %v, want a transient error", i+1, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("try %d: %v", i+1, err)
		}
		if rep.Detail["rules"] != "post" || rep.Detail["rules_done_before"] != "command" {
			t.Errorf("try %d: detail %v, want post run now and command done before", i+1, rep.Detail)
		}
	}
	b2, _ := os.ReadFile(runs)
	if n := strings.Count(string(b2), "ran"); n != 1 {
		t.Errorf("command ran %d times, want 1", n)
	}
	if n := posts.Load(); n != 3 {
		t.Errorf("POST sent %d times, want 3", n)
	}
}

// TestSaysWhenOlderThanLast: after running for c2, an event for c1 (an
// ancestor: a late or replayed delivery) still runs, and its result says
// it is older than the last commit run for the branch.
func TestSaysWhenOlderThanLast(t *testing.T) {
	gitRoot := t.TempDir()
	src := gittest.NewRepo(t, gitRoot, "acme", "ml")
	srv := gittest.Serve(t, gitRoot, token)
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	w := newWorker(t, srv.URL, models.Rule{Repo: "acme/ml", Branch: "**", Paths: []string{"models/**"}, Post: &models.Post{URL: hook.URL}})
	src.Write("models/a.bin", "1")
	c1 := src.Commit("one")
	src.Write("models/a.bin", "2")
	c2 := src.Commit("two")
	src.Push("master")
	src.Git("checkout", "--quiet", "-b", "other", c1)
	src.Write("models/b.bin", "x")
	side := src.Commit("side")
	src.Push("other")

	steps := []struct {
		name          string
		branch        string
		before, after string
		wantOlderThan string
	}{
		{name: "first run", branch: "master", before: zero, after: c2},
		{name: "late event for an ancestor", branch: "master", before: zero, after: c1, wantOlderThan: c2},
		{name: "newest again", branch: "master", before: c1, after: c2},
		{name: "other branch has its own last", branch: "other", before: zero, after: side},
	}
	for _, st := range steps {
		rep, err := w.Handle(context.Background(), pushEvent(t, st.branch, st.before, st.after))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if rep.Detail["older_than_last"] != st.wantOlderThan {
			t.Errorf("%s: older_than_last = %q, want %q (%v)", st.name, rep.Detail["older_than_last"], st.wantOlderThan, rep.Detail)
		}
		if rep.Detail["rules"] == "" {
			t.Errorf("%s: did not run: %v", st.name, rep.Detail)
		}
	}
}

// TestEffectRecordedPastTheJobDeadline: a NATS node dies while the record
// of a done refresh is on its way (the fault test: nats-3 SIGKILLed right
// after a POST; the rule's record waited for the job's deadline and failed,
// and the redelivery POSTed again). The record outlives the job's deadline
// and is retried, so the next delivery does not run the effect again.
func TestEffectRecordedPastTheJobDeadline(t *testing.T) {
	srv, c := modelRepo(t)

	nsrv := natstest.Run(t)
	p := natstest.NewProxy(t, nsrv.URL())
	_, js := natstest.Dial(t, p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	rc := &receiver{}
	var once sync.Once
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The first refresh is done; the node dies with its record on the
		// way.
		once.Do(func() { p.CutOn("PUB $KV." + models.ProgressBucket + ".") })
		rc.ServeHTTP(w, r)
	}))
	t.Cleanup(hook.Close)
	w, err := models.New(models.Config{Rules: []models.Rule{
		{Name: "post", Repo: "acme/ml", Paths: []string{"models/**"}, Post: &models.Post{URL: hook.URL, Timeout: 5 * time.Second}},
	}}, models.Deps{GogsURL: srv.URL, GogsToken: token, CacheDir: t.TempDir(), Secret: []byte(secret), KV: js, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}

	ev := pushEvent(t, "master", zero, c)
	var last error
	for try := 1; try <= 3; try++ {
		// Each delivery has the job's deadline, as the runtime gives it.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, last = w.Handle(ctx, ev)
		cancel()
		if last == nil {
			break
		}
		if runtime.IsPermanent(last) {
			t.Fatalf("try %d: %v, want success or a transient error", try, last)
		}
	}
	if p.Cut() == "" {
		t.Fatal("the rule's record never went through the proxy")
	}
	if got := rc.take(); len(got) != 1 {
		t.Errorf("refresh POSTed %d times, want once", len(got))
	}
	if last != nil {
		t.Errorf("three deliveries failed, the last with %v", last)
	}
}
