package envsync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gogsapi"
	"github.com/forgebus/forgebus/workers/runtime"
	"github.com/forgebus/forgebus/workers/skiplog"
)

// Name is the worker's name in subjects, results and consumers.
const Name = "envsync"

// Deps are the worker's collaborators.
type Deps struct {
	// KV creates and opens the KV buckets.
	KV jetstream.JetStream
	// API fetches the env files from Gogs.
	API *gogsapi.Client
	// Log gets one line per applied target: names and hashes only. The
	// program names the worker in it ("worker"), as for every worker.
	Log zerolog.Logger
	// Now is the clock for claims; nil means time.Now.
	Now func() time.Time
	// Replicas of the buckets the worker creates (3 on a cluster, as the
	// streams); 0 means 1.
	Replicas int
	// History refuses a commit that does not descend from the applied one
	// (a replayed old push); the program always sets it ([GitHistory]),
	// nil leaves ordering to event time alone.
	History History
}

// Worker is the envsync worker: a [runtime.Handler].
type Worker struct {
	cfg Config
	js  jetstream.JetStream
	api fetcher
	log zerolog.Logger
	now func() time.Time
	// replicas of a bucket the worker creates.
	replicas int
	history  History

	mu      sync.Mutex
	buckets map[string]jetstream.KeyValue
}

// fetcher is what the worker needs of [gogsapi.Client].
type fetcher interface {
	RawFile(ctx context.Context, owner, repo, ref, path string) ([]byte, error)
}

var _ runtime.Handler = (*Worker)(nil)

// New checks cfg and returns a worker.
func New(cfg Config, deps Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.KV == nil || deps.API == nil {
		return nil, fmt.Errorf("%w: KV and API are required", ErrConfig)
	}
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = DefaultClaimTTL
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Worker{
		cfg: cfg, js: deps.KV, api: deps.API, now: now,
		replicas: max(deps.Replicas, 1),
		history:  deps.History,
		log:      deps.Log, // the program names the worker in it, as for every worker
		buckets:  map[string]jetstream.KeyValue{},
	}, nil
}

// Subjects are the event subjects the worker consumes: every push of the
// forge instance. Rules are matched in Handle, since globs do not map onto
// subject wildcards.
func (w *Worker) Subjects(instance string) []string {
	return []string{schemas.EventsRoot + "." + schemas.EscapeToken(instance) + "." + schemas.EventPush + ".*.*"}
}

// Handle applies every rule that matches the push. It returns a
// [schemas.OutcomeSuperseded] report when every matching target already holds
// a newer event; a permanent error for a file that does not parse, a missing
// file, a missing or refused token; any other error is transient.
func (w *Worker) Handle(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
	if ev.Event() != schemas.EventPush {
		return runtime.Report{Detail: schemas.Detail{"skipped": "not a push"}}, nil
	}
	var p schemas.Push
	if err := ev.DecodeData(&p); err != nil {
		return runtime.Report{}, runtime.Permanent(err)
	}
	branch := p.Branch
	if branch == "" {
		branch = strings.TrimPrefix(p.Ref, "refs/heads/")
		if branch == p.Ref {
			return runtime.Report{Detail: schemas.Detail{"skipped": "not a branch"}}, nil
		}
	}
	if p.Deleted || strings.Trim(p.After, "0") == "" {
		return runtime.Report{Detail: schemas.Detail{"skipped": "branch deleted"}}, nil
	}
	full := p.Repository.FullName
	if full == "" {
		full = ev.Repo
	}
	owner, repo, ok := strings.Cut(full, "/")
	if !ok || owner == "" || repo == "" {
		return runtime.Report{}, runtime.Permanent(fmt.Errorf("push has no repository full name"))
	}

	var matched []Rule
	for _, r := range w.cfg.Rules {
		if runtime.MatchRule(r.Repo, r.Branch, full, branch, p.Repository.DefaultBranch) {
			matched = append(matched, r)
		}
	}
	if len(matched) == 0 {
		skiplog.NoRuleFor(w.log, w.cfg.Rules, ev.ID, full, branch)
		return runtime.Report{Detail: schemas.Detail{"skipped": skiplog.NoRuleMatches}}, nil
	}

	detail := schemas.Detail{}
	var errs []error
	superseded := 0
	for _, r := range matched {
		res, err := w.apply(ctx, ev, p.Before, p.After, owner, repo, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", r.name(), err))
			continue
		}
		if res.superseded {
			superseded++
		}
		for k, v := range res.detail {
			if len(matched) > 1 {
				k = r.name() + "." + k
			}
			detail[k] = v
		}
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		for _, e := range errs {
			if !runtime.IsPermanent(e) {
				return runtime.Report{Detail: detail}, err
			}
		}
		return runtime.Report{Detail: detail}, runtime.Permanent(err)
	}
	rep := runtime.Report{Detail: detail}
	if superseded == len(matched) {
		rep.Outcome = schemas.OutcomeSuperseded
	}
	return rep, nil
}

// classify turns a fetch error into one that says what to fix, permanent
// when retrying cannot help.
func classify(err error) error {
	switch {
	case errors.Is(err, gogsapi.ErrNoToken):
		return runtime.Permanent(fmt.Errorf("%w: give the envsync worker a Gogs API token with read access to the repository (FORGEBUS_GOGS_TOKEN or FORGEBUS_GOGS_TOKEN_FILE)", err))
	case errors.Is(err, gogsapi.ErrUnauthorized):
		return runtime.Permanent(fmt.Errorf("%w: Gogs refused the API token; replace it with a valid token (FORGEBUS_GOGS_TOKEN)", err))
	case errors.Is(err, gogsapi.ErrForbidden):
		return runtime.Permanent(fmt.Errorf("%w: the token's user needs read access to the repository", err))
	case errors.Is(err, gogsapi.ErrNotFound):
		return runtime.Permanent(fmt.Errorf("%w (or the token cannot see the repository); keys left unchanged: %w", ErrFileMissing, err))
	case gogsapi.Transient(err):
		return err
	default:
		return runtime.Permanent(err)
	}
}

func (w *Worker) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	w.mu.Lock()
	kv, ok := w.buckets[name]
	w.mu.Unlock()
	if ok {
		return kv, nil
	}
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	kv, err := w.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = w.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: "forgebus envsync: env keys synced from Gogs",
			History:     DefaultHistory,
			Storage:     jetstream.FileStorage,
			Replicas:    w.replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = w.js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open kv bucket %s: %w", name, err)
	}
	w.mu.Lock()
	w.buckets[name] = kv
	w.mu.Unlock()
	return kv, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
