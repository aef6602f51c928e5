package docs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/runtime"
	"github.com/forgebus/forgebus/workers/skiplog"
)

// Deps are what the docs worker needs from the program that runs it.
type Deps struct {
	// GogsURL is the Gogs base URL; clone URLs are built from it, never
	// taken from a payload.
	GogsURL string
	// GogsToken, when set, authenticates git over HTTP (private repos).
	GogsToken string
	// CacheDir holds the repository caches, build checkouts and the
	// builds' HOME.
	CacheDir string
	// Path is the PATH builds and git run with; empty means
	// "/usr/local/bin:/usr/bin:/bin".
	Path string
	// Log receives one line per outcome.
	Log zerolog.Logger
}

// Worker is the docs worker; it implements [runtime.Handler].
type Worker struct {
	cfg  Config
	deps Deps

	mu    sync.Mutex
	locks map[string]chan struct{} // per branch; a channel so waiting obeys ctx
}

var _ runtime.Handler = (*Worker)(nil)

// New checks cfg and deps and returns the worker.
func New(cfg Config, deps Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.GogsURL == "" {
		return nil, fmt.Errorf("%w: no gogs url", ErrConfig)
	}
	if deps.CacheDir == "" {
		return nil, fmt.Errorf("%w: no cache dir", ErrConfig)
	}
	abs, err := filepath.Abs(deps.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("%w: cache dir: %w", ErrConfig, err)
	}
	deps.CacheDir = abs
	if deps.Path == "" {
		deps.Path = "/usr/local/bin:/usr/bin:/bin"
	}
	return &Worker{cfg: cfg, deps: deps, locks: map[string]chan struct{}{}}, nil
}

// Subjects are the event subjects the worker consumes for a forge instance.
func (w *Worker) Subjects(instance string) []string {
	inst := schemas.EscapeToken(instance)
	return []string{
		"forge." + inst + "." + schemas.EventPush + ".>",
		"forge." + inst + "." + schemas.EventDelete + ".>",
	}
}

// Handle builds and publishes on a push, and removes a branch's docs on a
// delete. Events no rule matches succeed with Detail "skipped".
func (w *Worker) Handle(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
	switch ev.Event() {
	case schemas.EventPush:
		return w.handlePush(ctx, ev)
	case schemas.EventDelete:
		return w.handleDelete(ctx, ev)
	}
	return skipped("not a push or delete"), nil
}

func skipped(why string) runtime.Report {
	return runtime.Report{Detail: schemas.Detail{"skipped": why}}
}

// target is one branch of one repository under one rule, checked safe.
type target struct {
	rule        *Rule
	owner, name string
	branch      string
	repoDir     string // <root>/<owner>/<name>
	branchDir   string // <repoDir>/<escaped branch>
	metaDir     string // <repoDir>/.forgebus (locks, tombstones)
	seg         string
}

func (w *Worker) findRule(repo, branch, defaultBranch string) *Rule {
	for i := range w.cfg.Rules {
		r := &w.cfg.Rules[i]
		if runtime.MatchRule(r.Repo, r.Branch, repo, branch, defaultBranch) {
			return r
		}
	}
	return nil
}

// resolve checks every name that came from the payload and builds the
// target's paths; any failure is permanent.
func (w *Worker) resolve(ctx context.Context, rule *Rule, fullName, branch string) (*target, error) {
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok {
		return nil, runtime.Permanent(fmt.Errorf("%w: repository %q", ErrBadEvent, fullName))
	}
	for _, check := range []error{gitrepo.CheckName(owner), gitrepo.CheckName(name), gitrepo.CheckBranch(ctx, branch)} {
		if check != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, runtime.Permanent(fmt.Errorf("%w: %w", ErrBadEvent, check))
		}
	}
	seg := BranchSegment(branch)
	t := &target{
		rule: rule, owner: owner, name: name, branch: branch, seg: seg,
		repoDir: filepath.Join(rule.Root, owner, name),
	}
	t.branchDir = filepath.Join(t.repoDir, seg)
	t.metaDir = filepath.Join(t.repoDir, ".forgebus")
	// Belt and braces: the branch directory is exactly two levels below
	// the root's repo directory.
	if rel, err := filepath.Rel(rule.Root, t.branchDir); err != nil || !filepath.IsLocal(rel) ||
		strings.Count(rel, string(filepath.Separator)) != 2 {
		return nil, runtime.Permanent(fmt.Errorf("%w: path outside the publish root", ErrBadEvent))
	}
	return t, nil
}

// BranchSegment is the one path segment a branch is published under:
// "%" becomes "%25" and "/" becomes "%2F".
func BranchSegment(branch string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(branch)
}

// lock serializes work on one target: a mutex inside the process, then a
// flock(2) lock file every replica shares.
func (w *Worker) lock(ctx context.Context, t *target) (func(), error) {
	key := t.branchDir
	w.mu.Lock()
	m, ok := w.locks[key]
	if !ok {
		m = make(chan struct{}, 1)
		w.locks[key] = m
	}
	w.mu.Unlock()
	select {
	case m <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release := func() { <-m }
	if err := os.MkdirAll(t.metaDir, 0o755); err != nil {
		release()
		return nil, fmt.Errorf("%w: %w", ErrPublish, err)
	}
	unlock, err := gitrepo.Flock(ctx, filepath.Join(t.metaDir, t.seg+".lock"))
	if err != nil {
		release()
		return nil, err
	}
	return func() { unlock(); release() }, nil
}

func (w *Worker) handlePush(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
	var p schemas.Push
	if err := ev.DecodeData(&p); err != nil {
		return runtime.Report{}, runtime.Permanent(fmt.Errorf("%w: %w", ErrBadEvent, err))
	}
	branch := p.Branch
	if branch == "" {
		branch, _ = strings.CutPrefix(p.Ref, "refs/heads/")
		if branch == p.Ref {
			return skipped("not a branch"), nil
		}
	}
	if p.Deleted || gitrepo.ZeroCommit(p.After) {
		return skipped("branch deleted by push"), nil
	}
	fullName := repoName(ev, &p.Repository)
	rule := w.findRule(fullName, branch, p.Repository.DefaultBranch)
	if rule == nil {
		skiplog.NoRuleFor(w.deps.Log, w.cfg.Rules, ev.ID, fullName, branch)
		return skipped(skiplog.NoRuleMatches), nil
	}
	t, err := w.resolve(ctx, rule, fullName, branch)
	if err != nil {
		return runtime.Report{}, err
	}
	commit := p.After
	if err := gitrepo.CheckCommit(commit); err != nil {
		return runtime.Report{}, runtime.Permanent(fmt.Errorf("%w: %w", ErrBadEvent, err))
	}
	log := w.deps.Log.With().Str("event_id", ev.ID).Str("repo", fullName).
		Str("branch", branch).Str("commit", commit).Str("rule", rule.Name).Logger()
	detail := schemas.Detail{"rule": rule.Name, "branch": branch, "commit": commit}

	unlock, err := w.lock(ctx, t)
	if err != nil {
		return runtime.Report{Detail: detail}, err
	}
	defer unlock()

	st, err := readState(t.branchDir)
	if err != nil {
		return runtime.Report{Detail: detail}, err
	}
	tomb, err := readTombstone(t)
	if err != nil {
		return runtime.Report{Detail: detail}, err
	}
	if tomb != nil && !ev.Time.After(tomb.Time) {
		detail["reason"] = "branch deleted by a newer event"
		return runtime.Report{Outcome: schemas.OutcomeSuperseded, Detail: detail}, nil
	}
	if st != nil {
		detail["live_commit"] = st.Commit
		if st.Commit == commit && liveCommit(t.branchDir) == commit {
			detail["reason"] = "already live"
			return runtime.Report{Detail: detail}, nil
		}
		if st.Commit != commit && !ev.Time.After(st.Time) {
			detail["reason"] = "a newer event is live"
			log.Info().Str("live_commit", st.Commit).Msg("superseded")
			return runtime.Report{Outcome: schemas.OutcomeSuperseded, Detail: detail}, nil
		}
	}

	repo, err := gitrepo.Open(gitrepo.Options{
		BaseURL: w.deps.GogsURL, Token: w.deps.GogsToken, CacheDir: filepath.Join(w.deps.CacheDir, "git"),
		Owner: t.owner, Name: t.name, Path: w.deps.Path,
	})
	if err != nil {
		return runtime.Report{Detail: detail}, runtime.Permanent(err)
	}
	if err := repo.Ensure(ctx, commit); err != nil {
		return runtime.Report{Detail: detail}, classifyGit(err, w.deps.GogsToken != "")
	}
	if st != nil && st.Commit != commit && gitrepo.CheckCommit(st.Commit) == nil {
		// A live commit gone from the server (force push) cannot be an
		// ancestor check's subject; then time alone decides.
		if older, err := repo.IsAncestor(ctx, commit, st.Commit); err == nil && older {
			detail["reason"] = "commit is an ancestor of the live commit"
			log.Info().Str("live_commit", st.Commit).Msg("superseded")
			return runtime.Report{Outcome: schemas.OutcomeSuperseded, Detail: detail}, nil
		}
	}

	work, err := os.MkdirTemp(w.buildsDir(), "build-")
	if err != nil {
		return runtime.Report{Detail: detail}, fmt.Errorf("build dir: %w", err)
	}
	defer os.RemoveAll(work)
	checkout := filepath.Join(work, "src")
	if err := repo.Checkout(ctx, commit, checkout); err != nil {
		return runtime.Report{Detail: detail}, classifyGit(err, w.deps.GogsToken != "")
	}
	res, err := command.Run(ctx, command.Spec{
		Argv:      rule.Command,
		Dir:       checkout,
		Env:       w.buildEnv(fullName, commit, branch),
		Timeout:   rule.Timeout,
		Isolation: rule.Isolation,
	})
	detail["output_tail"] = res.Tail
	detail["exit_code"] = fmt.Sprint(res.ExitCode)
	switch {
	case ctx.Err() != nil:
		return runtime.Report{Detail: detail}, ctx.Err()
	case errors.Is(err, command.ErrTimeout):
		detail["timed_out"] = "true"
		log.Warn().Dur("timeout", rule.Timeout).Msg("build timed out")
		return runtime.Report{Detail: detail}, runtime.Permanent(fmt.Errorf("%w: %w", ErrBuild, err))
	case err != nil:
		log.Warn().Int("exit_code", res.ExitCode).Msg("build failed")
		return runtime.Report{Detail: detail}, runtime.Permanent(fmt.Errorf("%w: %w", ErrBuild, err))
	}

	rel, err := publish(t, checkout, commit, state{Time: ev.Time, Commit: commit, EventID: ev.ID}, st)
	if err != nil {
		if errors.Is(err, ErrBuild) {
			return runtime.Report{Detail: detail}, runtime.Permanent(err)
		}
		return runtime.Report{Detail: detail}, err
	}
	detail["release"] = rel
	_ = os.Remove(tombstonePath(t))
	log.Info().Msg("published")
	return runtime.Report{Detail: detail}, nil
}

func (w *Worker) handleDelete(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
	var p schemas.Delete
	if err := ev.DecodeData(&p); err != nil {
		return runtime.Report{}, runtime.Permanent(fmt.Errorf("%w: %w", ErrBadEvent, err))
	}
	if p.RefType != "branch" {
		return skipped("not a branch"), nil
	}
	branch := p.Ref
	fullName := repoName(ev, &p.Repository)
	rule := w.findRule(fullName, branch, p.Repository.DefaultBranch)
	if rule == nil {
		skiplog.NoRuleFor(w.deps.Log, w.cfg.Rules, ev.ID, fullName, branch)
		return skipped(skiplog.NoRuleMatches), nil
	}
	t, err := w.resolve(ctx, rule, fullName, branch)
	if err != nil {
		return runtime.Report{}, err
	}
	detail := schemas.Detail{"rule": rule.Name, "branch": branch}
	unlock, err := w.lock(ctx, t)
	if err != nil {
		return runtime.Report{Detail: detail}, err
	}
	defer unlock()
	st, err := readState(t.branchDir)
	if err != nil {
		return runtime.Report{Detail: detail}, err
	}
	if st != nil && ev.Time.Before(st.Time) {
		detail["reason"] = "branch published again by a newer push"
		return runtime.Report{Outcome: schemas.OutcomeSuperseded, Detail: detail}, nil
	}
	if err := writeTombstone(t, ev.Time); err != nil {
		return runtime.Report{Detail: detail}, err
	}
	removed, err := removeBranch(t)
	if err != nil {
		return runtime.Report{Detail: detail}, err
	}
	detail["removed"] = fmt.Sprint(removed)
	// The branch is gone: so is its lock file, removed while held (the
	// tombstone stays, to refuse a late push).
	if err := gitrepo.RemoveLock(filepath.Join(t.metaDir, t.seg+".lock")); err != nil {
		w.deps.Log.Warn().Err(err).Str("event_id", ev.ID).Msg("remove lock file")
	}
	w.deps.Log.Info().Str("event_id", ev.ID).Str("repo", fullName).Str("branch", branch).
		Bool("removed", removed).Msg("branch docs removed")
	return runtime.Report{Detail: detail}, nil
}

func (w *Worker) buildsDir() string {
	d := filepath.Join(w.deps.CacheDir, "builds")
	_ = os.MkdirAll(d, 0o750)
	return d
}

// buildEnv is the whole environment of a build.
func (w *Worker) buildEnv(repo, commit, branch string) []string {
	home := filepath.Join(w.deps.CacheDir, "home")
	_ = os.MkdirAll(home, 0o750)
	return []string{
		"PATH=" + w.deps.Path,
		"HOME=" + home,
		"FORGEBUS_REPO=" + repo,
		"FORGEBUS_COMMIT=" + commit,
		"FORGEBUS_BRANCH=" + branch,
	}
}

// repoName is "owner/name": the envelope's repo attribute, else the
// payload's full_name.
func repoName(ev *schemas.Envelope, r *schemas.Repository) string {
	if ev.Repo != "" {
		return ev.Repo
	}
	return r.FullName
}

// classifyGit marks git errors that retrying cannot fix as permanent; a
// refusal of the credentials or of access says which setting to fix.
func classifyGit(err error, tokenSet bool) error {
	if hint := gitrepo.AuthHint(err, tokenSet); hint != "" {
		return runtime.Permanent(fmt.Errorf("%w: %s", err, hint))
	}
	if errors.Is(err, gitrepo.ErrBadName) || errors.Is(err, gitrepo.ErrNoCommit) || errors.Is(err, gitrepo.ErrTooLarge) {
		return runtime.Permanent(err)
	}
	return err
}

func randSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
