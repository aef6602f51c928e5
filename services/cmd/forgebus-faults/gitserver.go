package main

import (
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
	r := &gitRepo{owner: owner, name: name}
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
