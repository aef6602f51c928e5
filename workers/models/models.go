package models

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/runtime"
	"github.com/forgebus/forgebus/workers/skiplog"
)

// SignatureHeader carries the hex HMAC-SHA256 of a refresh POST's body.
const SignatureHeader = "X-Forgebus-Signature"

// maxPathsInDetail bounds how many matched paths a result lists.
const maxPathsInDetail = 20

// Deps are what the models worker needs from the program that runs it.
type Deps struct {
	// GogsURL is the Gogs base URL; clone URLs are built from it.
	GogsURL string
	// GogsToken, when set, authenticates git over HTTP (private repos).
	GogsToken string
	// CacheDir holds the repository caches and command checkouts.
	CacheDir string
	// Path is the PATH commands and git run with; empty means
	// "/usr/local/bin:/usr/bin:/bin".
	Path string
	// Secret signs refresh POSTs; required when a rule posts.
	Secret []byte
	// KV holds the worker's state: the rules done per event, the last
	// commit run per branch ([ProgressBucket], [LastBucket]).
	KV jetstream.JetStream
	// Replicas of the buckets the worker creates (3 on a cluster, as the
	// streams); 0 means 1.
	Replicas int
	// Log receives one line per action.
	Log zerolog.Logger
}

// Worker is the models worker; it implements [runtime.Handler].
type Worker struct {
	cfg    Config
	deps   Deps
	client *http.Client
	store  *store
}

var _ runtime.Handler = (*Worker)(nil)

// Payload is the JSON body of a refresh POST.
type Payload struct {
	Repo    string   `json:"repo"`
	Branch  string   `json:"branch"`
	Commit  string   `json:"commit"`
	Paths   []string `json:"paths"`
	EventID string   `json:"event_id"`
}

// New checks cfg and deps and returns the worker.
func New(cfg Config, deps Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.GogsURL == "" || deps.CacheDir == "" || deps.KV == nil {
		return nil, fmt.Errorf("%w: gogs url, cache dir and a JetStream for its state are required", ErrConfig)
	}
	for _, r := range cfg.Rules {
		if r.Post != nil && len(deps.Secret) == 0 {
			return nil, fmt.Errorf("%w: rule %s posts but no signing secret is set", ErrConfig, r.Name)
		}
	}
	abs, err := filepath.Abs(deps.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("%w: cache dir: %w", ErrConfig, err)
	}
	deps.CacheDir = abs
	if deps.Path == "" {
		deps.Path = "/usr/local/bin:/usr/bin:/bin"
	}
	client := &http.Client{
		// A redirect is an answer, not an instruction: never re-send a
		// signed body elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Worker{cfg: cfg, deps: deps, client: client, store: &store{js: deps.KV, replicas: max(deps.Replicas, 1)}}, nil
}

// Subjects are the event subjects the worker consumes for a forge instance.
func (w *Worker) Subjects(instance string) []string {
	return []string{"forge." + schemas.EscapeToken(instance) + "." + schemas.EventPush + ".>"}
}

// Handle runs the action of every rule whose paths the push touched.
func (w *Worker) Handle(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
	if ev.Event() != schemas.EventPush {
		return skipped("not a push"), nil
	}
	var p schemas.Push
	if err := ev.DecodeData(&p); err != nil {
		return runtime.Report{}, runtime.Permanent(fmt.Errorf("%w: %w", ErrBadEvent, err))
	}
	branch := p.Branch
	if branch == "" {
		var ok bool
		if branch, ok = strings.CutPrefix(p.Ref, "refs/heads/"); !ok {
			return skipped("not a branch"), nil
		}
	}
	if p.Deleted || gitrepo.ZeroCommit(p.After) {
		return skipped("branch deleted by push"), nil
	}
	fullName := ev.Repo
	if fullName == "" {
		fullName = p.Repository.FullName
	}
	var rules []*Rule
	for i := range w.cfg.Rules {
		if w.cfg.Rules[i].matches(fullName, branch, p.Repository.DefaultBranch) {
			rules = append(rules, &w.cfg.Rules[i])
		}
	}
	if len(rules) == 0 {
		skiplog.NoRuleFor(w.deps.Log, w.cfg.Rules, ev.ID, fullName, branch)
		return skipped(skiplog.NoRuleMatches), nil
	}
	owner, name, _ := strings.Cut(fullName, "/")
	checks := []error{gitrepo.CheckName(owner), gitrepo.CheckName(name), gitrepo.CheckBranch(ctx, branch), gitrepo.CheckCommit(p.After)}
	if !gitrepo.ZeroCommit(p.Before) {
		checks = append(checks, gitrepo.CheckCommit(p.Before))
	}
	for _, err := range checks {
		if err != nil {
			if ctx.Err() != nil {
				return runtime.Report{}, ctx.Err()
			}
			return runtime.Report{}, runtime.Permanent(fmt.Errorf("%w: %w", ErrBadEvent, err))
		}
	}
	repo, err := gitrepo.Open(gitrepo.Options{
		BaseURL: w.deps.GogsURL, Token: w.deps.GogsToken, CacheDir: filepath.Join(w.deps.CacheDir, "git"),
		Owner: owner, Name: name, Path: w.deps.Path,
	})
	if err != nil {
		return runtime.Report{}, runtime.Permanent(err)
	}
	if err := repo.Ensure(ctx, p.After); err != nil {
		return runtime.Report{}, classifyGit(err, w.deps.GogsToken != "")
	}
	changed, err := repo.Changed(ctx, p.Before, p.After, p.Repository.DefaultBranch)
	if err != nil {
		return runtime.Report{}, classifyGit(err, w.deps.GogsToken != "")
	}

	detail := schemas.Detail{"branch": branch, "commit": p.After, "changed_paths": strconv.Itoa(len(changed))}
	done, err := w.store.done(ctx, ev.ID)
	if err != nil {
		return runtime.Report{Detail: detail}, err
	}
	if older, err := w.olderThanLast(ctx, repo, fullName, branch, p.After); err != nil {
		return runtime.Report{Detail: detail}, err
	} else if older != "" {
		// Said, not refused: a refresh of an older commit may be wanted
		// (a revert by force push, a replay).
		detail["older_than_last"] = older
		w.deps.Log.Info().Str("event_id", ev.ID).Str("repo", fullName).Str("branch", branch).
			Str("commit", p.After).Str("last_commit", older).Msg("running for a commit older than the last one run")
	}
	var ran, before []string
	for _, r := range rules {
		matched := r.matchPaths(changed)
		if len(matched) == 0 {
			continue
		}
		id := r.id()
		if contains(done, id) {
			// Succeeded on an earlier try of this event: not again.
			before = append(before, r.Name)
			continue
		}
		detail["rule"] = r.Name
		detail["matched_paths"] = strconv.Itoa(len(matched))
		shown := matched[:min(len(matched), maxPathsInDetail)]
		detail["paths"] = strings.Join(shown, "\n")
		body := Payload{Repo: fullName, Branch: branch, Commit: p.After, Paths: matched, EventID: ev.ID}
		log := w.deps.Log.With().Str("event_id", ev.ID).Str("repo", fullName).Str("branch", branch).
			Str("commit", p.After).Str("rule", r.Name).Int("matched_paths", len(matched)).Logger()
		if r.Post != nil {
			err = w.post(ctx, r.Post, body, detail)
		} else {
			err = w.run(ctx, repo, r.Command, body, detail)
		}
		if len(before) > 0 {
			detail["rules_done_before"] = strings.Join(before, ",")
		}
		if err != nil {
			log.Warn().Str("status", detail["status"]).Bool("permanent", runtime.IsPermanent(err)).Msg("refresh failed")
			return runtime.Report{Detail: detail}, err
		}
		log.Info().Str("status", detail["status"]).Msg("refreshed")
		ran = append(ran, r.Name)
		done = append(done, id)
		if err := w.store.markDone(ctx, ev.ID, done); err != nil {
			return runtime.Report{Detail: detail}, err
		}
	}
	if len(before) > 0 {
		detail["rules_done_before"] = strings.Join(before, ",")
	}
	if len(ran) == 0 && len(before) == 0 {
		detail["skipped"] = "no watched path changed"
		return runtime.Report{Detail: detail}, nil
	}
	if len(ran) > 0 {
		detail["rules"] = strings.Join(ran, ",")
		if err := w.recordLast(ctx, repo, fullName, branch, lastRun{Commit: p.After, EventID: ev.ID}); err != nil {
			return runtime.Report{Detail: detail}, err
		}
	}
	return runtime.Report{Detail: detail}, nil
}

// olderThanLast returns the commit last run for the branch when commit is
// a strict ancestor of it, else "".
func (w *Worker) olderThanLast(ctx context.Context, repo *gitrepo.Repo, fullName, branch, commit string) (string, error) {
	last, _, err := w.store.lastCommit(ctx, fullName, branch)
	if err != nil || last == nil || last.Commit == commit || gitrepo.CheckCommit(last.Commit) != nil {
		return "", err
	}
	// A last commit gone from the server (force push) is no one's descendant.
	if older, err := repo.IsAncestor(ctx, commit, last.Commit); err == nil && older {
		return last.Commit, nil
	}
	return "", nil
}

// recordLast makes run the branch's last run unless a newer commit is
// recorded; replicas race through the entry's revision.
func (w *Worker) recordLast(ctx context.Context, repo *gitrepo.Repo, fullName, branch string, run lastRun) error {
	for range 5 {
		last, rev, err := w.store.lastCommit(ctx, fullName, branch)
		if err != nil {
			return err
		}
		if last != nil && last.Commit != run.Commit && gitrepo.CheckCommit(last.Commit) == nil {
			if older, err := repo.IsAncestor(ctx, run.Commit, last.Commit); err == nil && older {
				return nil
			}
		}
		if ok, err := w.store.setLast(ctx, fullName, branch, rev, run); err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("record last run of %s %s: %w", fullName, branch, ErrContention)
}

// Sign is the hex HMAC-SHA256 of body under secret, as sent in
// [SignatureHeader].
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func (w *Worker) post(ctx context.Context, p *Post, body Payload, detail schemas.Detail) error {
	b, err := json.Marshal(body)
	if err != nil {
		return runtime.Permanent(err)
	}
	rctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, p.URL, bytes.NewReader(b))
	if err != nil {
		return runtime.Permanent(fmt.Errorf("refresh request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "forgebus-models")
	req.Header.Set(SignatureHeader, Sign(w.deps.Secret, b))
	req.Header.Set("X-Forgebus-Event", body.EventID)
	resp, err := w.client.Do(req)
	if err != nil {
		// Timeouts and connection errors: transient. The error text of
		// net/http names the URL, which is config, not a secret.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		detail["status"] = "no response"
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL may carry a token in its query
		}
		return fmt.Errorf("post refresh: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	detail["status"] = strconv.Itoa(resp.StatusCode)
	return classifyStatus(resp.StatusCode)
}

// classifyStatus is nil for a 2xx, a transient error for 408, 429 and 5xx,
// and a permanent one for anything else.
func classifyStatus(code int) error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("%w: status %d", ErrStatus, code)
	}
	return runtime.Permanent(fmt.Errorf("%w: status %d", ErrStatus, code))
}

func (w *Worker) run(ctx context.Context, repo *gitrepo.Repo, c *Command, body Payload, detail schemas.Detail) error {
	dir := filepath.Join(w.deps.CacheDir, "runs")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	work, err := os.MkdirTemp(dir, "run-")
	if err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	defer os.RemoveAll(work)
	checkout := filepath.Join(work, "src")
	if err := repo.Checkout(ctx, body.Commit, checkout); err != nil {
		return classifyGit(err, w.deps.GogsToken != "")
	}
	home := filepath.Join(w.deps.CacheDir, "home")
	_ = os.MkdirAll(home, 0o750)
	res, err := command.Run(ctx, command.Spec{
		Argv:      c.Argv,
		Dir:       checkout,
		Timeout:   c.Timeout,
		Isolation: c.Isolation,
		Env: []string{
			"PATH=" + w.deps.Path,
			"HOME=" + home,
			"FORGEBUS_REPO=" + body.Repo,
			"FORGEBUS_COMMIT=" + body.Commit,
			"FORGEBUS_BRANCH=" + body.Branch,
			"FORGEBUS_EVENT_ID=" + body.EventID,
		},
	})
	detail["output_tail"] = res.Tail
	detail["exit_code"] = strconv.Itoa(res.ExitCode)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, command.ErrTimeout):
		detail["timed_out"] = "true"
		return runtime.Permanent(fmt.Errorf("%w: %w", ErrCommand, err))
	case err != nil:
		return runtime.Permanent(fmt.Errorf("%w: %w", ErrCommand, err))
	}
	return nil
}

func skipped(why string) runtime.Report {
	return runtime.Report{Detail: schemas.Detail{"skipped": why}}
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
