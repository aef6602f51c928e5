package gittest

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Server serves every bare repository under Root at URL + "/<owner>/<name>.git".
type Server struct {
	// URL is the base URL to configure as gogs_url.
	URL string
	// Root holds the bare repositories.
	Root string
	// Authorized counts requests that carried the expected token;
	// Rejected counts those refused for a missing or wrong one.
	Authorized, Rejected atomic.Int64
}

// Serve starts a smart HTTP git server for root. When token is not empty,
// every request must carry "Authorization: token <token>" or gets a 401.
func Serve(t testing.TB, root, token string) *Server {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	s := &Server{Root: root}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
		},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			if r.Header.Get("Authorization") != "token "+token {
				s.Rejected.Add(1)
				w.Header().Set("WWW-Authenticate", `Basic realm="gogs"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			s.Authorized.Add(1)
		}
		backend.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Repo is a working clone whose origin is a bare repository under a root.
type Repo struct {
	t testing.TB
	// Dir is the working tree.
	Dir string
	// Bare is the origin's path.
	Bare string
}

// NewRepo creates root/<owner>/<name>.git (bare, default branch master)
// and a working clone of it.
func NewRepo(t testing.TB, root, owner, name string) *Repo {
	t.Helper()
	bare := filepath.Join(root, owner, name+".git")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Repo{t: t, Dir: t.TempDir(), Bare: bare}
	r.run(bare, "init", "--quiet", "--bare", "--initial-branch=master")
	r.run(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
	r.Git("init", "--quiet", "--initial-branch=master")
	r.Git("remote", "add", "origin", bare)
	return r
}

// Write creates or replaces a file in the working tree.
func (r *Repo) Write(path, content string) {
	r.t.Helper()
	p := filepath.Join(r.Dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Commit stages everything and commits; it returns the new commit id.
func (r *Repo) Commit(msg string) string {
	r.t.Helper()
	r.Git("add", "-A")
	r.Git("commit", "--quiet", "--allow-empty", "-m", msg)
	return r.Head()
}

// Head is the working tree's HEAD commit.
func (r *Repo) Head() string {
	r.t.Helper()
	return strings.TrimSpace(r.Git("rev-parse", "HEAD"))
}

// Push force-pushes HEAD to branch on origin.
func (r *Repo) Push(branch string) {
	r.t.Helper()
	r.Git("push", "--quiet", "--force", "origin", "HEAD:refs/heads/"+branch)
}

// Git runs git in the working tree and returns its stdout.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return r.run(r.Dir, args...)
}

func (r *Repo) run(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
