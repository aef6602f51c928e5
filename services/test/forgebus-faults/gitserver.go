package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// gitRepo is a bare repository served over smart HTTP, as Gogs would serve
// it, with a chain of commits that each touch models/.
type gitRepo struct {
	owner, name string
	commits     []string // commits[0] is the root; each later one touches models/
	srvRoot     string   // the directory served: <owner>/<name>.git below it
	srv         *http.Server
	url         string
}

func gitEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=faults", "GIT_AUTHOR_EMAIL=faults@example.com",
		"GIT_COMMITTER_NAME=faults", "GIT_COMMITTER_EMAIL=faults@example.com",
	}
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// newGitRepo creates root/owner/name.git with n commits on master and
// serves root on 127.0.0.1 through git http-backend.
func newGitRepo(root, owner, name string, n int) (*gitRepo, error) {
	bare := filepath.Join(root, "srv", owner, name+".git")
	work := filepath.Join(root, "work")
	for _, d := range []string{bare, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	steps := [][]string{
		{bare, "init", "--quiet", "--bare", "--initial-branch=master"},
		{work, "init", "--quiet", "--initial-branch=master"},
	}
	for _, s := range steps {
		if _, err := git(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	r := &gitRepo{owner: owner, name: name, srvRoot: filepath.Join(root, "srv")}
	for i := range n {
		if err := os.MkdirAll(filepath.Join(work, "models"), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(work, "models", "weights.txt"), fmt.Appendf(nil, "v%d\n", i), 0o644); err != nil {
			return nil, err
		}
		if _, err := git(work, "add", "-A"); err != nil {
			return nil, err
		}
		if _, err := git(work, "commit", "--quiet", "-m", fmt.Sprintf("model v%d", i)); err != nil {
			return nil, err
		}
		head, err := git(work, "rev-parse", "HEAD")
		if err != nil {
			return nil, err
		}
		r.commits = append(r.commits, head)
	}
	if _, err := git(work, "push", "--quiet", bare, "HEAD:refs/heads/master"); err != nil {
		return nil, err
	}
	execPath, err := git(work, "--exec-path")
	if err != nil {
		return nil, err
	}
	h := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env: []string{
			"GIT_PROJECT_ROOT=" + filepath.Join(root, "srv"),
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.srv = &http.Server{Handler: h}
	go func() { _ = r.srv.Serve(ln) }()
	r.url = "http://" + ln.Addr().String()
	return r, nil
}

func (r *gitRepo) close() {
	if r != nil && r.srv != nil {
		_ = r.srv.Close()
	}
}

// addChain creates owner/name.git beside r, served by r's server, holding
// one branch (master) of n commits, each changing README.md, written by
// one "git fast-import" (n can be hundreds). It returns the repository
// with its commits oldest first; closing it closes nothing.
func (r *gitRepo) addChain(owner, name string, n int) (*gitRepo, error) {
	bare := filepath.Join(r.srvRoot, owner, name+".git")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		return nil, err
	}
	if _, err := git(bare, "init", "--quiet", "--bare", "--initial-branch=master"); err != nil {
		return nil, err
	}
	var in bytes.Buffer
	for i := range n {
		msg := fmt.Sprintf("docs v%d\n", i)
		file := fmt.Sprintf("# %s/%s\n\nversion %d\n", owner, name, i)
		fmt.Fprintf(&in, "commit refs/heads/master\ncommitter faults <faults@example.com> %d +0000\ndata %d\n%s", 1767225600+i, len(msg), msg)
		fmt.Fprintf(&in, "M 644 inline README.md\ndata %d\n%s\n", len(file), file)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = bare
	cmd.Env = gitEnv(bare)
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("git fast-import: %w: %s", err, strings.TrimSpace(string(out)))
	}
	list, err := git(bare, "rev-list", "--reverse", "refs/heads/master")
	if err != nil {
		return nil, err
	}
	commits := strings.Fields(list)
	if len(commits) != n {
		return nil, fmt.Errorf("%s/%s: %d commits after fast-import, want %d", owner, name, len(commits), n)
	}
	return &gitRepo{owner: owner, name: name, commits: commits, srvRoot: r.srvRoot, url: r.url}, nil
}
