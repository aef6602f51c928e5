package gittest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Server serves every bare repository under Root at URL + "/<owner>/<name>.git",
// with Gogs' access rules: anyone may pull a public repository; a private
// one, and any push, needs HTTP Basic credentials of a user allowed to read
// (or write) it. See [Serve].
type Server struct {
	// URL is the base URL to configure as gogs_url.
	URL string
	// Root holds the bare repositories.
	Root string
	// Authorized counts requests that authenticated a user; Rejected counts
	// those answered 401 or 403.
	Authorized, Rejected atomic.Int64

	mu        sync.Mutex
	allPriv   bool                       // every repository is private
	private   map[string]bool            // "owner/name"
	passwords map[string]string          // login -> password
	tokens    map[string]string          // access token -> login
	admins    map[string]bool            // logins that may read and write everything
	readers   map[string]map[string]bool // "owner/name" -> logins with read access
	observe   func(*http.Request)
}

// Serve starts a smart HTTP git server for root. When token is not empty,
// every repository is private and token is an access token of the site
// administrator "forgebus", as a Gogs with private repositories would be set
// up for forgebus; otherwise repositories are public unless [Server.Private]
// says so.
func Serve(t testing.TB, root, token string) *Server {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	s := &Server{
		Root: root, private: map[string]bool{}, passwords: map[string]string{},
		tokens: map[string]string{}, admins: map[string]bool{}, readers: map[string]map[string]bool{},
	}
	if token != "" {
		s.allPriv = true
		s.admins["forgebus"] = true
		s.tokens[token] = "forgebus"
	}
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
		s.mu.Lock()
		observe := s.observe
		s.mu.Unlock()
		if observe != nil {
			observe(r)
		}
		if s.authorize(w, r) {
			backend.ServeHTTP(w, r)
		}
	})
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Observe makes f see every request before it is answered, while the
// client that sent it is still running.
func (s *Server) Observe(f func(*http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe = f
}

// AddUser creates a local user with a password.
func (s *Server) AddUser(login, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passwords[strings.ToLower(login)] = password
}

// AddToken gives login a personal access token.
func (s *Server) AddToken(login, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = strings.ToLower(login)
}

// Private makes repo ("owner/name") private and lets readers read it. Its
// owner may always read and write it, as in Gogs.
func (s *Server) Private(repo string, readers ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	repo = strings.ToLower(repo)
	s.private[repo] = true
	if s.readers[repo] == nil {
		s.readers[repo] = map[string]bool{}
	}
	for _, l := range readers {
		s.readers[repo][strings.ToLower(l)] = true
	}
}

// authorize follows Gogs' HTTPContexter (internal/route/repo/http.go): it
// answers the request itself and returns false unless git may serve it.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
	if len(parts) < 3 {
		http.NotFound(w, r)
		return false
	}
	owner, name := parts[0], strings.TrimSuffix(strings.TrimSuffix(parts[1], ".git"), ".wiki")
	action := parts[2]
	if _, err := os.Stat(filepath.Join(s.Root, owner, name+".git")); err != nil {
		w.WriteHeader(http.StatusNotFound)
		return false
	}
	repo := strings.ToLower(owner + "/" + name)
	isPull := r.Method == http.MethodGet || action == "git-upload-pack"

	s.mu.Lock()
	defer s.mu.Unlock()
	private := s.allPriv || s.private[repo]
	if isPull && !private {
		return true
	}
	if !strings.Contains(action, "git-") && !strings.Contains(action, "info/") &&
		!strings.Contains(action, "HEAD") && !strings.Contains(action, "objects/") {
		http.Error(w, fmt.Sprintf("Unrecognized action %q", action), http.StatusBadRequest)
		return false
	}
	// Basic only: "token …", "Bearer …" and anything else ask for credentials.
	fields := strings.Fields(r.Header.Get("Authorization"))
	if len(fields) != 2 || fields[0] != "Basic" {
		s.ask(w, http.StatusUnauthorized, "")
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		s.ask(w, http.StatusUnauthorized, "")
		return false
	}
	user, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		// Gogs indexes the missing password and its panic handler answers 500.
		w.WriteHeader(http.StatusInternalServerError)
		return false
	}
	// First the pair as a login, then the username as a token, then the
	// password as a token.
	login := ""
	if pw, ok := s.passwords[strings.ToLower(user)]; ok && pw == password {
		login = strings.ToLower(user)
	} else if l, ok := s.tokens[user]; ok {
		login = l
	} else if l, ok := s.tokens[password]; ok {
		login = l
	} else {
		s.ask(w, http.StatusUnauthorized, "")
		return false
	}
	allowed := s.admins[login] || login == strings.ToLower(owner) || (isPull && s.readers[repo][login])
	if !allowed {
		s.ask(w, http.StatusForbidden, "User permission denied")
		return false
	}
	s.Authorized.Add(1)
	return true
}

// ask answers as Gogs' askCredentials does.
func (s *Server) ask(w http.ResponseWriter, status int, text string) {
	s.Rejected.Add(1)
	w.Header().Set("WWW-Authenticate", `Basic realm="."`)
	if text == "" {
		text = http.StatusText(status)
	}
	http.Error(w, text, status)
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
