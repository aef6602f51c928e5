package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// maxOutput bounds what one git command may print to stdout.
const maxOutput = 32 << 20

// Options locate one repository and its cache.
type Options struct {
	// BaseURL is the Gogs base URL ("https://git.example.com"); the clone
	// URL is BaseURL + "/<owner>/<name>.git". An absolute directory path
	// is accepted too (tests, local mirrors).
	BaseURL string
	// Token, when set, is a Gogs access token. git sends it with HTTP
	// Basic auth as the username, which Gogs accepts as a token, when the
	// server asks for credentials; it reaches git through a pipe, never an
	// argv, a URL, the environment or a file.
	Token string
	// CacheDir holds the bare repositories.
	CacheDir string
	// Owner and Name identify the repository; both pass [CheckName].
	Owner, Name string
	// Path is the PATH git and its helpers run with; empty means
	// "/usr/local/bin:/usr/bin:/bin".
	Path string
}

// Repo is the bare cache of one repository. Its methods may be called from
// several goroutines and processes: the ones that write take a file lock.
type Repo struct {
	dir   string
	url   string
	proto string
	env   []string
	token string
}

// Open checks opts and returns the repository's cache (no I/O yet).
func Open(opts Options) (*Repo, error) {
	if err := CheckName(opts.Owner); err != nil {
		return nil, err
	}
	if err := CheckName(opts.Name); err != nil {
		return nil, err
	}
	if opts.CacheDir == "" {
		return nil, fmt.Errorf("%w: no cache dir", ErrBadName)
	}
	cache, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	var cloneURL, proto string
	switch {
	case strings.HasPrefix(base, "/"):
		cloneURL, proto = filepath.Join(base, opts.Owner, opts.Name+".git"), "file"
	default:
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("%w: gogs base url must be http(s)://host[/path] without credentials", ErrBadName)
		}
		cloneURL = base + "/" + url.PathEscape(opts.Owner) + "/" + url.PathEscape(opts.Name) + ".git"
		proto = u.Scheme
	}
	path := opts.Path
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	home := filepath.Join(cache, "home")
	env := []string{
		"PATH=" + path,
		"HOME=" + home,
		"LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false",
		"SSH_ASKPASS=/bin/false",
		"GIT_ALLOW_PROTOCOL=" + proto,
		"GIT_LFS_SKIP_SMUDGE=1",
	}
	if opts.Token != "" {
		if strings.ContainsAny(opts.Token, "\x00\n\r") {
			return nil, fmt.Errorf("%w: gogs token has a control character", ErrBadName)
		}
		// The only credential helper: it answers "get" with what the
		// caller wrote into the pipe on fd 3 (see [Repo.fetch]).
		// A redirect is not followed: the helper would answer any host.
		env = append(env,
			"GIT_CONFIG_COUNT=3",
			"GIT_CONFIG_KEY_0=credential.helper",
			"GIT_CONFIG_VALUE_0=",
			"GIT_CONFIG_KEY_1=credential.helper",
			`GIT_CONFIG_VALUE_1=!f() { test "$1" = get && cat <&3; }; f`,
			"GIT_CONFIG_KEY_2=http.followRedirects",
			"GIT_CONFIG_VALUE_2=false",
		)
	}
	return &Repo{
		dir:   filepath.Join(cache, "repos", opts.Owner, opts.Name+".git"),
		url:   cloneURL,
		proto: proto,
		env:   env,
		token: opts.Token,
	}, nil
}

// Dir is the bare repository's directory.
func (r *Repo) Dir() string { return r.dir }

// Sync clones the repository into the cache the first time and fetches all
// branches after (pruning deleted ones) into refs/remotes/origin/*.
func (r *Repo) Sync(ctx context.Context) error {
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return r.syncLocked(ctx)
}

func (r *Repo) syncLocked(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(r.dir, "HEAD")); err != nil {
		tmp := r.dir + ".init"
		_ = os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o750); err != nil {
			return fmt.Errorf("cache %s: %w", r.dir, err)
		}
		if _, err := r.git(ctx, tmp, "init", "--quiet", "--bare"); err != nil {
			return err
		}
		if err := os.Rename(tmp, r.dir); err != nil {
			return fmt.Errorf("cache %s: %w", r.dir, err)
		}
	}
	_, err := r.fetch(ctx, "--quiet", "--prune", "--no-tags", "--no-recurse-submodules",
		"--", r.url, "+refs/heads/*:refs/remotes/origin/*")
	return err
}

// Ensure brings the cache up to date and makes sure commit is in it,
// fetching it by name when no branch reaches it any more. It returns
// [ErrNoCommit] when the server does not have it either.
func (r *Repo) Ensure(ctx context.Context, commit string) error {
	if err := CheckCommit(commit); err != nil {
		return err
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.syncLocked(ctx); err != nil {
		return err
	}
	if r.has(ctx, commit) {
		return nil
	}
	// Best effort: servers that allow fetching any reachable object.
	if _, err := r.fetch(ctx, "--quiet", "--no-tags", "--", r.url, commit); errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) {
		return err
	}
	if r.has(ctx, commit) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s: %w", commit, ErrNoCommit)
}

// Has reports whether commit is in the cache.
func (r *Repo) has(ctx context.Context, commit string) bool {
	_, err := r.git(ctx, r.dir, "cat-file", "-e", commit+"^{commit}")
	return err == nil
}

// IsAncestor reports whether commit a is an ancestor of commit b (a commit
// is its own ancestor). Both must be in the cache.
func (r *Repo) IsAncestor(ctx context.Context, a, b string) (bool, error) {
	if err := CheckCommit(a); err != nil {
		return false, err
	}
	if err := CheckCommit(b); err != nil {
		return false, err
	}
	_, err := r.git(ctx, r.dir, "merge-base", "--is-ancestor", a, b)
	var ee *exitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.code == 1:
		return false, nil
	}
	return false, err
}

// Changed lists the paths that differ between before and after, with
// renames shown as a delete of the old path and an add of the new one.
// When before is all zeros (a new branch), after is compared with its
// merge-base with the default branch; when that is after itself or there
// is none, every path in after counts. When before is not in the cache (a
// force push that rewrote history), every path in after counts too.
func (r *Repo) Changed(ctx context.Context, before, after, defaultBranch string) ([]string, error) {
	if err := CheckCommit(after); err != nil {
		return nil, err
	}
	base := ""
	switch {
	case ZeroCommit(before) || before == "":
		if defaultBranch != "" {
			if err := CheckBranch(ctx, defaultBranch); err != nil {
				return nil, err
			}
			out, err := r.git(ctx, r.dir, "merge-base", "refs/remotes/origin/"+defaultBranch, after)
			if err == nil {
				base = strings.TrimSpace(string(out))
			}
		}
	default:
		if err := CheckCommit(before); err != nil {
			return nil, err
		}
		if r.has(ctx, before) {
			base = before
		}
	}
	var out []byte
	var err error
	if base == "" || base == after && (ZeroCommit(before) || before == "") {
		out, err = r.git(ctx, r.dir, "ls-tree", "-r", "-z", "--name-only", "--full-tree", after)
	} else {
		out, err = r.git(ctx, r.dir, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", base, after, "--")
	}
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, p := range bytes.Split(out, []byte{0}) {
		if len(p) > 0 {
			paths = append(paths, string(p))
		}
	}
	return paths, nil
}

// lock takes an exclusive file lock on the cache entry, waiting while ctx
// allows.
func (r *Repo) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(r.dir), 0o750); err != nil {
		return nil, fmt.Errorf("cache %s: %w", r.dir, err)
	}
	return Flock(ctx, r.dir+".lock")
}

// Flock takes an exclusive flock(2) on path (created if missing), polling
// until it is free or ctx ends, and returns its release. Locks from the same
// process conflict too, so it also serializes goroutines. A holder may
// remove path before it releases (see [RemoveLock]); a waiter then finds its
// file gone and locks the new one.
func Flock(ctx context.Context, path string) (func(), error) {
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		for {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", path, err)
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
			case <-time.After(25 * time.Millisecond):
			}
		}
		held, herr := f.Stat()
		now, nerr := os.Stat(path)
		if herr == nil && nerr == nil && os.SameFile(held, now) {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		// Locked a file its holder removed: lock the one at path now.
		f.Close()
	}
}

// RemoveLock removes the lock file at path; call it while holding the lock,
// before the release. Waiters move on to a new file (see [Flock]).
func RemoveLock(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove lock %s: %w", path, err)
	}
	return nil
}

type exitError struct {
	op   string
	code int
	msg  string
	auth error // ErrUnauthorized or ErrForbidden when the server refused
}

func (e *exitError) Error() string {
	s := fmt.Sprintf("git %s: exit %d", e.op, e.code)
	if e.msg != "" {
		s += ": " + e.msg
	}
	if e.auth != nil {
		s += ": " + e.auth.Error()
	}
	return s
}

func (e *exitError) Unwrap() []error {
	if e.auth != nil {
		return []error{ErrGit, e.auth}
	}
	return []error{ErrGit}
}

// authRefusal classifies git's stderr (LC_ALL=C) when the server refused
// the credentials (401) or the user's access (403).
func authRefusal(stderr string) error {
	switch {
	case strings.Contains(stderr, "Authentication failed for"),
		strings.Contains(stderr, "could not read Username"),
		strings.Contains(stderr, "could not read Password"),
		strings.Contains(stderr, "The requested URL returned error: 401"):
		return ErrUnauthorized
	case strings.Contains(stderr, "The requested URL returned error: 403"):
		return ErrForbidden
	}
	return nil
}

// fetch runs git fetch in the cache. With a token, the credential goes to
// git's helper through a pipe on fd 3, written and closed before git starts,
// so it is in no argv, environment or file of git or of anything else.
func (r *Repo) fetch(ctx context.Context, args ...string) ([]byte, error) {
	var extra []*os.File
	if r.token != "" {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("git fetch: credential pipe: %w", err)
		}
		defer pr.Close()
		// Gogs tries the username as an access token when the pair is no
		// login; the password is a filler that is no token.
		_, err = pw.WriteString("username=" + r.token + "\npassword=x-oauth-basic\n")
		pw.Close()
		if err != nil {
			return nil, fmt.Errorf("git fetch: credential pipe: %w", err)
		}
		extra = []*os.File{pr}
	}
	return r.run(ctx, r.env, r.dir, extra, append([]string{"fetch"}, args...)...)
}

// git runs one git command in dir and returns its stdout (bounded). The
// error names the subcommand and carries a short, sanitized stderr tail;
// never the argv (it may carry a URL) or the environment.
func (r *Repo) git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return r.gitEnv(ctx, r.env, dir, args...)
}

func (r *Repo) gitEnv(ctx context.Context, env []string, dir string, args ...string) ([]byte, error) {
	return r.run(ctx, env, dir, nil, args...)
}

func (r *Repo) run(ctx context.Context, env []string, dir string, extra []*os.File, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout limitedBuffer
	stdout.max = maxOutput
	var stderr limitedBuffer
	stderr.max, stderr.drop = 4<<10, true
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if stdout.over && !stdout.drop {
		return nil, fmt.Errorf("git %s: output: %w", args[0], ErrTooLarge)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("git %s: %w", args[0], ctx.Err())
		}
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return nil, &exitError{op: args[0], code: code, msg: sanitize(stderr.String()), auth: authRefusal(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// sanitize keeps the last line of git's stderr, with anything that looks
// like URL credentials removed.
func sanitize(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	if strings.Contains(s, "@") || strings.Contains(strings.ToLower(s), "authorization") {
		return "(detail withheld)"
	}
	return strings.ToValidUTF8(s, "?")
}

type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
	drop bool // drop what passes max instead of failing the write
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.over = true
		if b.drop {
			return len(p), nil
		}
		return 0, io.ErrShortWrite
	}
	return b.Buffer.Write(p)
}
