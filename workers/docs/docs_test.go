package docs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/docs"
	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
	"github.com/forgebus/forgebus/workers/runtime"
)

const token = "gogs-token-for-tests"

const buildScript = `set -e
mkdir -p out/sub
printf '<h1>%s %s %s</h1>\n' "$FORGEBUS_REPO" "$FORGEBUS_BRANCH" "$FORGEBUS_COMMIT" > out/index.html
cat content.txt >> out/index.html
echo sub > out/sub/page.html
echo "built $FORGEBUS_COMMIT"
`

type fixture struct {
	t       *testing.T
	src     *gittest.Repo
	srv     *gittest.Server
	pubRoot string
	cache   string
	w       *docs.Worker
}

var evSeq atomic.Int64

func newFixture(t *testing.T, mutate func(*docs.Rule)) *fixture {
	t.Helper()
	gitRoot := t.TempDir()
	f := &fixture{t: t, src: gittest.NewRepo(t, gitRoot, "acme", "site"), pubRoot: t.TempDir(), cache: t.TempDir()}
	f.srv = gittest.Serve(t, gitRoot, token)
	rule := docs.Rule{Repo: "acme/*", Command: []string{"sh", "build.sh"}, Output: "out", Root: f.pubRoot, Keep: 2, Timeout: 20 * time.Second}
	if mutate != nil {
		mutate(&rule)
	}
	w, err := docs.New(docs.Config{Rules: []docs.Rule{rule}}, docs.Deps{
		GogsURL: f.srv.URL, GogsToken: token, CacheDir: f.cache, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	f.src.Write("build.sh", buildScript)
	return f
}

// commit makes a commit with the given content and pushes it to branch.
func (f *fixture) commit(branch, content string) string {
	f.t.Helper()
	f.src.Write("content.txt", content)
	c := f.src.Commit(content)
	f.src.Push(branch)
	return c
}

func pushEvent(t *testing.T, repo, branch, before, after string, at time.Time) *schemas.Envelope {
	t.Helper()
	p := schemas.Push{
		Ref: "refs/heads/" + branch, Before: before, After: after, Branch: branch,
		Repository: schemas.Repository{FullName: repo, DefaultBranch: "master"},
	}
	return envelope(t, schemas.EventPush, repo, p, at)
}

func envelope(t *testing.T, event, repo string, data any, at time.Time) *schemas.Envelope {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return &schemas.Envelope{
		SpecVersion: schemas.SpecVersion, ID: fmt.Sprintf("ev-%d", evSeq.Add(1)), Type: schemas.TypePrefix + event,
		Time: at, Repo: repo, Data: b,
	}
}

func (f *fixture) branchDir(branch string) string {
	return filepath.Join(f.pubRoot, "acme", "site", docs.BranchSegment(branch))
}

// live returns the commit "current" points at and the published index.
func (f *fixture) live(branch string) (string, string) {
	f.t.Helper()
	dir := f.branchDir(branch)
	dst, err := os.Readlink(filepath.Join(dir, "current"))
	if err != nil {
		return "", ""
	}
	b, _ := os.ReadFile(filepath.Join(dir, "current", "index.html"))
	return strings.TrimPrefix(dst, "releases/"), string(b)
}

func (f *fixture) handle(ev *schemas.Envelope) (runtime.Report, error) {
	return f.w.Handle(context.Background(), ev)
}

func TestPublishKeepsLastK(t *testing.T) {
	f := newFixture(t, nil)
	t0 := time.Now()
	before := strings.Repeat("0", 40)
	var commits []string
	for i := range 3 {
		c := f.commit("master", "version "+strconv.Itoa(i))
		rep, err := f.handle(pushEvent(t, "acme/site", "master", before, c, t0.Add(time.Duration(i)*time.Second)))
		if err != nil {
			t.Fatalf("push %d: %v (%v)", i, err, rep.Detail)
		}
		if rep.Outcome != "" || rep.Detail["release"] == "" || !strings.Contains(rep.Detail["output_tail"], "built "+c) {
			t.Fatalf("push %d: report %+v", i, rep)
		}
		live, index := f.live("master")
		if live != c || !strings.Contains(index, "version "+strconv.Itoa(i)) || !strings.Contains(index, "acme/site master "+c) {
			t.Fatalf("push %d: live %q index %q, want %s", i, live, index, c)
		}
		before = c
		commits = append(commits, c)
	}
	entries, err := os.ReadDir(filepath.Join(f.branchDir("master"), "releases"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{commits[1], commits[2]}; strings.Join(sorted(names), ",") != strings.Join(sorted(want), ",") {
		t.Errorf("releases = %v, want the last two %v", names, want)
	}
	if b, err := os.ReadFile(filepath.Join(f.branchDir("master"), "current", "sub", "page.html")); err != nil || string(b) != "sub\n" {
		t.Errorf("nested page = %q, %v", b, err)
	}
	// git asks anonymously first and answers each 401 challenge with the
	// credentials, as it does against Gogs: one challenge per fetch.
	if a, r := f.srv.Authorized.Load(), f.srv.Rejected.Load(); a == 0 || r > 3 {
		t.Errorf("git server: %d authorized, %d rejected requests; want authorized requests and one challenge per fetch at most", a, r)
	}
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestNewestWins(t *testing.T) {
	f := newFixture(t, nil)
	c1 := f.commit("master", "one")
	c2 := f.commit("master", "two")
	t0 := time.Now()
	zero := strings.Repeat("0", 40)
	newer := pushEvent(t, "acme/site", "master", c1, c2, t0.Add(time.Second))
	if _, err := f.handle(newer); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		ev          *schemas.Envelope
		wantOutcome schemas.Outcome
	}{
		{name: "older event after newer", ev: pushEvent(t, "acme/site", "master", zero, c1, t0), wantOutcome: schemas.OutcomeSuperseded},
		{name: "later event for an ancestor commit", ev: pushEvent(t, "acme/site", "master", zero, c1, t0.Add(time.Hour)), wantOutcome: schemas.OutcomeSuperseded},
		{name: "redelivery of the live event", ev: newer, wantOutcome: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := f.handle(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != tt.wantOutcome {
				t.Errorf("outcome = %q, want %q (%v)", rep.Outcome, tt.wantOutcome, rep.Detail)
			}
			if live, _ := f.live("master"); live != c2 {
				t.Errorf("live = %s, want the newer %s", live, c2)
			}
		})
	}
}

func TestTwoQuickPushesNewerLive(t *testing.T) {
	f := newFixture(t, nil)
	c1 := f.commit("master", "one")
	c2 := f.commit("master", "two")
	t0 := time.Now()
	evs := []*schemas.Envelope{
		pushEvent(t, "acme/site", "master", strings.Repeat("0", 40), c1, t0),
		pushEvent(t, "acme/site", "master", c1, c2, t0.Add(time.Millisecond)),
	}
	var wg sync.WaitGroup
	errs := make([]error, len(evs))
	// Newer first in the slice order of start; the scheduler decides.
	for i := len(evs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.handle(evs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if live, index := f.live("master"); live != c2 || !strings.Contains(index, "two") {
		t.Errorf("live = %s (%q), want the newer %s", live, index, c2)
	}
}

func TestDeleteBranchRemovesDocs(t *testing.T) {
	f := newFixture(t, func(r *docs.Rule) { r.Branch = "**" })
	c := f.commit("feature/x", "feature")
	t0 := time.Now()
	if _, err := f.handle(pushEvent(t, "acme/site", "feature/x", strings.Repeat("0", 40), c, t0)); err != nil {
		t.Fatal(err)
	}
	if live, _ := f.live("feature/x"); live != c {
		t.Fatalf("feature/x not published: live %q", live)
	}
	del := envelope(t, schemas.EventDelete, "acme/site", schemas.Delete{
		Ref: "feature/x", RefType: "branch", Repository: schemas.Repository{FullName: "acme/site", DefaultBranch: "master"},
	}, t0.Add(time.Second))
	rep, err := f.handle(del)
	if err != nil || rep.Detail["removed"] != "true" {
		t.Fatalf("delete: %v %v", rep.Detail, err)
	}
	if _, err := os.Lstat(f.branchDir("feature/x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("branch dir still there: %v", err)
	}
	lock := filepath.Join(f.pubRoot, "acme", "site", ".forgebus", docs.BranchSegment("feature/x")+".lock")
	if _, err := os.Lstat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deleted branch's lock file is left: %v", err)
	}
	// A push delivered late (older than the delete) must not bring it back.
	rep, err = f.handle(pushEvent(t, "acme/site", "feature/x", strings.Repeat("0", 40), c, t0.Add(500*time.Millisecond)))
	if err != nil || rep.Outcome != schemas.OutcomeSuperseded {
		t.Fatalf("late push: outcome %q, err %v", rep.Outcome, err)
	}
	if _, err := os.Lstat(f.branchDir("feature/x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("late push re-published a deleted branch")
	}
	// A newer push (branch recreated) publishes again.
	if rep, err := f.handle(pushEvent(t, "acme/site", "feature/x", strings.Repeat("0", 40), c, t0.Add(2*time.Second))); err != nil || rep.Outcome != "" {
		t.Fatalf("recreated branch: %v %v", rep.Outcome, err)
	}
	if live, _ := f.live("feature/x"); live != c {
		t.Fatal("recreated branch not published")
	}
}

func TestBuildFailureIsPermanent(t *testing.T) {
	f := newFixture(t, nil)
	good := f.commit("master", "good")
	t0 := time.Now()
	if _, err := f.handle(pushEvent(t, "acme/site", "master", strings.Repeat("0", 40), good, t0)); err != nil {
		t.Fatal(err)
	}
	f.src.Write("build.sh", "echo compiling\necho 'error: broken link in intro.md' >&2\nexit 2\n")
	bad := f.commit("master", "bad")
	rep, err := f.handle(pushEvent(t, "acme/site", "master", good, bad, t0.Add(time.Second)))
	if !runtime.IsPermanent(err) || !errors.Is(err, docs.ErrBuild) {
		t.Fatalf("err = %v, want a permanent ErrBuild", err)
	}
	if !strings.Contains(rep.Detail["output_tail"], "broken link in intro.md") || rep.Detail["exit_code"] != "2" {
		t.Errorf("detail = %v, want the output tail and exit code", rep.Detail)
	}
	if live, _ := f.live("master"); live != good {
		t.Errorf("live = %s, want the last good %s", live, good)
	}
}

func TestBuildTimeoutKillsProcessGroup(t *testing.T) {
	f := newFixture(t, func(r *docs.Rule) { r.Timeout = 700 * time.Millisecond })
	f.src.Write("build.sh", "sleep 60 &\necho $! > \"$HOME/child.pid\"\necho started\nwait\n")
	c := f.commit("master", "slow")
	start := time.Now()
	rep, err := f.handle(pushEvent(t, "acme/site", "master", strings.Repeat("0", 40), c, time.Now()))
	if !runtime.IsPermanent(err) || rep.Detail["timed_out"] != "true" {
		t.Fatalf("err = %v, detail %v; want a permanent timeout", err, rep.Detail)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Handle took %s", d)
	}
	b, err := os.ReadFile(filepath.Join(f.cache, "home", "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	natstest.Eventually(t, 5*time.Second, "build's child sleep killed", func() bool { return !running(pid) })
}

// running reports whether pid is a live, non-zombie process.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestHostileNames(t *testing.T) {
	f := newFixture(t, func(r *docs.Rule) { r.Branch = "**"; r.Repo = "**" })
	c := f.commit("master", "x")
	canary := filepath.Join(t.TempDir(), "pwned")
	tests := []struct {
		name, repo, branch string
	}{
		{"command substitution", "acme/site", "$(touch " + canary + ")"},
		{"option injection", "acme/site", "--upload-pack=touch " + canary},
		{"leading dash", "acme/site", "-rf"},
		{"path traversal", "acme/site", "../../etc"},
		{"reflog syntax", "acme/site", "@{-1}"},
		{"repo traversal", "../etc", "master"},
		{"owner traversal", "../../x/site", "master"},
		{"dashed repo", "acme/--upload-pack=x", "master"},
	}
	// The paths a traversal would reach, among those that do not exist yet
	// (another process may own one of them, e.g. /tmp/x).
	var outside []string
	for _, p := range []string{filepath.Join(f.pubRoot, "..", "etc"), filepath.Join(f.pubRoot, "..", "..", "x"), filepath.Join(f.pubRoot, "..", "..", "etc")} {
		if _, err := os.Lstat(p); err != nil {
			outside = append(outside, p)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := f.handle(pushEvent(t, tt.repo, tt.branch, strings.Repeat("0", 40), c, time.Now()))
			if !runtime.IsPermanent(err) || !errors.Is(err, docs.ErrBadEvent) {
				t.Fatalf("err = %v (%v), want a permanent ErrBadEvent", err, rep)
			}
			del := envelope(t, schemas.EventDelete, tt.repo, schemas.Delete{Ref: tt.branch, RefType: "branch"}, time.Now())
			if _, err := f.handle(del); !runtime.IsPermanent(err) {
				t.Fatalf("delete: err = %v, want permanent", err)
			}
		})
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("a branch name ran a command")
	}
	if entries, _ := os.ReadDir(f.pubRoot); len(entries) != 0 {
		t.Errorf("publish root has %d entries after hostile events, want none", len(entries))
	}
	for _, p := range outside {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created outside the publish root", p)
		}
	}
}

// TestPrivateRepoRefusalsArePermanent: a private repository that git may
// not read fails at once, and the error names the setting to fix.
func TestPrivateRepoRefusalsArePermanent(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.AddToken("stranger", "tok-stranger")
	c := f.commit("master", "private")
	tests := []struct {
		name    string
		token   string
		wantErr error
		wantMsg string
	}{
		{name: "no token", token: "", wantErr: gitrepo.ErrUnauthorized, wantMsg: "(401): the repository is private and no Gogs token is set: set FORGEBUS_GOGS_TOKEN"},
		{name: "wrong token", token: "wrong", wantErr: gitrepo.ErrUnauthorized, wantMsg: "Gogs refused the token: set FORGEBUS_GOGS_TOKEN"},
		{name: "user without access", token: "tok-stranger", wantErr: gitrepo.ErrForbidden, wantMsg: "lacks read access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := docs.New(docs.Config{Rules: []docs.Rule{{Repo: "acme/*", Command: []string{"sh", "build.sh"}, Output: "out", Root: f.pubRoot}}},
				docs.Deps{GogsURL: f.srv.URL, GogsToken: tt.token, CacheDir: t.TempDir(), Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = w.Handle(context.Background(), pushEvent(t, "acme/site", "master", strings.Repeat("0", 40), c, time.Now()))
			if !runtime.IsPermanent(err) || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want a permanent %v saying %q", err, tt.wantErr, tt.wantMsg)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error carries the token: %v", err)
			}
		})
	}
}

// TestBuildCannotReachGitCredential: a build of a private repository finds
// the Gogs token nowhere: not in its environment, its HOME, the worker's
// cache (the git caches, their config), nor any process's argv or
// environment.
func TestBuildCannotReachGitCredential(t *testing.T) {
	f := newFixture(t, nil)
	// The script holds the token reversed, so that its own text and argv
	// do not match.
	rev := []rune(token)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	f.src.Write("build.sh", `set -e
pat=$(mktemp)
printf '%s' '`+string(rev)+`' | rev > "$pat"
mkdir -p out
hits=$( { env | grep -F -f "$pat" -c || true; } )
files=$( { grep -rlF -f "$pat" "$HOME" ../../.. /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null || true; } | grep -v "^$pat$" | tr '\n' ' ')
rm -f "$pat"
printf 'env=%s files=[%s]\n' "$hits" "$files" > out/index.html
`)
	c := f.commit("master", "private")
	rep, err := f.handle(pushEvent(t, "acme/site", "master", strings.Repeat("0", 40), c, time.Now()))
	if err != nil {
		t.Fatalf("build: %v (%v)", err, rep.Detail)
	}
	_, index := f.live("master")
	if strings.TrimSpace(index) != "env=0 files=[]" {
		t.Errorf("the build found the token: %q", index)
	}
}

func TestSkips(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name string
		ev   *schemas.Envelope
	}{
		{"other repo", pushEvent(t, "other/site", "master", strings.Repeat("0", 40), strings.Repeat("1", 40), time.Now())},
		{"non-default branch", pushEvent(t, "acme/site", "dev", strings.Repeat("0", 40), strings.Repeat("1", 40), time.Now())},
		{"issues event", envelope(t, schemas.EventIssues, "acme/site", map[string]any{}, time.Now())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := f.handle(tt.ev)
			if err != nil || rep.Detail["skipped"] == "" {
				t.Errorf("got %v, %v; want skipped", rep, err)
			}
		})
	}
}

func runGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestReplicasShareAPublishRoot(t *testing.T) {
	f := newFixture(t, nil)
	other, err := docs.New(docs.Config{Rules: []docs.Rule{{Repo: "acme/*", Command: []string{"sh", "build.sh"}, Output: "out", Root: f.pubRoot, Keep: 2}}},
		docs.Deps{GogsURL: f.srv.URL, GogsToken: token, CacheDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	c1 := f.commit("master", "one")
	c2 := f.commit("master", "two")
	t0 := time.Now()
	var wg sync.WaitGroup
	var err1, err2 error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, err2 = other.Handle(context.Background(), pushEvent(t, "acme/site", "master", c1, c2, t0.Add(time.Millisecond)))
	}()
	go func() {
		defer wg.Done()
		_, err1 = f.w.Handle(context.Background(), pushEvent(t, "acme/site", "master", strings.Repeat("0", 40), c1, t0))
	}()
	wg.Wait()
	if err1 != nil || err2 != nil {
		t.Fatalf("errors: %v, %v", err1, err2)
	}
	if live, _ := f.live("master"); live != c2 {
		t.Errorf("live = %s, want the newer %s", live, c2)
	}
}

func TestSubjects(t *testing.T) {
	f := newFixture(t, nil)
	subs := f.w.Subjects("gogs.main")
	for _, ev := range []string{schemas.EventPush, schemas.EventDelete} {
		subj := schemas.EventSubject("gogs.main", ev, "acme", "site")
		found := false
		for _, s := range subs {
			if strings.HasPrefix(subj, strings.TrimSuffix(s, ">")) && strings.Count(s, ".") <= strings.Count(subj, ".") {
				found = true
			}
		}
		if !found {
			t.Errorf("subjects %v do not cover %s", subs, subj)
		}
	}
	if len(subs) != 2 {
		t.Errorf("subjects = %v, want push and delete only", subs)
	}
}
