package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	envOwner = "lab"
	envRepoN = "config"
	envFile  = "deploy/app.env"
	// envPrefix is envsync's default KV key prefix for lab/config's
	// deploy/app.env: "<owner>.<repo>.<file stem>".
	envPrefix = "lab.config.app"
	// envToken is the Gogs API token the envsync replicas send; the fake
	// API answers 401 to any other.
	envToken = "faults-gogs-token"
)

// envRepo is lab/config as the fake Gogs API serves it: one commit per
// envsync hook. The file at commit j holds SHARED (the same everywhere),
// VERSION=j and E_j, a key no other commit's file holds: it is written to
// the KV bucket only when event j is applied, so its puts in the bucket's
// history are event j's effect, counted.
type envRepo struct {
	owner, name string
	commits     []string
	index       map[string]int // commit -> j
}

func newEnvRepo(n int) *envRepo {
	commits := make([]string, n)
	for j := range commits {
		commits[j] = randomCommit()
	}
	return envRepoOf(commits)
}

// envRepoOf is lab/config with the given commits, oldest first (a real
// chain on the git server, so that envsync's ancestry check can run).
func envRepoOf(commits []string) *envRepo {
	r := &envRepo{owner: envOwner, name: envRepoN, index: map[string]int{}}
	for j, c := range commits {
		r.commits = append(r.commits, c)
		r.index[c] = j
	}
	return r
}

// envKey is the key event j alone writes.
func envKey(j int) string { return fmt.Sprintf("E_%d", j) }

func (r *envRepo) content(j int) string {
	return fmt.Sprintf("# lab/config deploy/app.env\nSHARED=faults\nVERSION=%d\n%s=%s\n", j, envKey(j), r.commits[j][:12])
}

// effects is the one HTTP server on 127.0.0.1 that every worker's effect
// reaches, counted:
//   - POST /refresh: the models worker's refresh call, per event id;
//   - POST /docs-build: a docs build (the build command reports itself,
//     see [docsBuild]), per commit, in the order they arrive;
//   - GET /api/v1/repos/{owner}/{repo}/raw/{ref}/{path}: the Gogs raw-file
//     API envsync reads lab/config's env file through, per ref (a read,
//     counted for the table, not an effect).
type effects struct {
	env *envRepo

	mu      sync.Mutex
	posts   map[string]int // models: event id -> refresh POSTs
	builds  map[string]int // docs: commit -> builds
	order   []string       // docs: built commits in arrival order
	fetches map[string]int // envsync: ref -> raw-file fetches
	badAPI  int            // envsync: API calls answered 401 or 404

	srv *http.Server
	url string // base URL
}

// startEffects serves the effects; git, when set, serves lab/config's
// repository at the same base URL, as Gogs serves its API and its git
// together (envsync reads the file through the API and checks ancestry
// with git).
func startEffects(env *envRepo, git http.Handler) (*effects, error) {
	e := &effects{env: env, posts: map[string]int{}, builds: map[string]int{}, fetches: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /refresh", e.refresh)
	mux.HandleFunc("POST /docs-build", e.docsBuild)
	mux.HandleFunc("GET /api/v1/repos/", e.rawFile)
	if git != nil {
		mux.Handle("/"+envOwner+"/"+envRepoN+".git/", git)
	}
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.srv.Serve(ln) }()
	e.url = "http://" + ln.Addr().String()
	return e, nil
}

func (e *effects) refresh(w http.ResponseWriter, r *http.Request) {
	var body struct {
		EventID string `json:"event_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.EventID == "" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.posts[body.EventID]++
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// buildReport is what a docs build sends.
type buildReport struct {
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
	Commit string `json:"commit"`
}

func (e *effects) docsBuild(w http.ResponseWriter, r *http.Request) {
	var b buildReport
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&b); err != nil || b.Commit == "" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.builds[b.Commit]++
	e.order = append(e.order, b.Commit)
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// rawFile answers as Gogs's raw-file API does: 200 with the file, 404 for
// a missing file, ref or repository, 401 without the right token.
func (e *effects) rawFile(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/api/v1/repos/"), "/", 5)
	if r.Header.Get("Authorization") != "token "+envToken {
		e.mu.Lock()
		e.badAPI++
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"message":"Unauthorized"}`)
		return
	}
	j, ok := -1, false
	if len(parts) == 5 && parts[0] == e.env.owner && parts[1] == e.env.name && parts[2] == "raw" && parts[4] == envFile {
		j, ok = e.env.index[parts[3]]
	}
	e.mu.Lock()
	if ok {
		e.fetches[parts[3]]++
	} else {
		e.badAPI++
	}
	e.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, e.env.content(j))
}

// effectCounts is a copy of what the server counted.
type effectCounts struct {
	posts, builds, fetches map[string]int
	order                  []string
	badAPI                 int
}

func (e *effects) snapshot() effectCounts {
	e.mu.Lock()
	defer e.mu.Unlock()
	return effectCounts{
		posts: maps.Clone(e.posts), builds: maps.Clone(e.builds), fetches: maps.Clone(e.fetches),
		order: append([]string(nil), e.order...), badAPI: e.badAPI,
	}
}

func (e *effects) close() {
	if e != nil && e.srv != nil {
		_ = e.srv.Close()
	}
}

// buildArg is the first argument that makes this program a docs build
// command instead of the fault test: "forgebus-faults docs-build <url>".
const buildArg = "docs-build"

// docsBuild is the docs worker's build command in the fault test, run by
// the worker (argv, no shell) in a checkout of the pushed commit: it
// reports the build (FORGEBUS_REPO, FORGEBUS_BRANCH, FORGEBUS_COMMIT) to
// url, then writes the site, site/index.html. A report that does not
// reach the server fails the build.
func docsBuild(url string) error {
	b := buildReport{Repo: os.Getenv("FORGEBUS_REPO"), Branch: os.Getenv("FORGEBUS_BRANCH"), Commit: os.Getenv("FORGEBUS_COMMIT")}
	if b.Commit == "" {
		return fmt.Errorf("docs-build: FORGEBUS_COMMIT is not set")
	}
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("docs-build: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("docs-build: report: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("docs-build: report: status %d", resp.StatusCode)
	}
	if err := os.MkdirAll("site", 0o755); err != nil {
		return err
	}
	page := fmt.Sprintf("<h1>%s %s</h1>\n<p>%s</p>\n", b.Repo, b.Branch, b.Commit)
	return os.WriteFile(filepath.Join("site", "index.html"), []byte(page), 0o644)
}
