package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/workers/runtime"
)

// ProgressBucket holds, per event, the rules that already succeeded for
// it, so that a retry runs only the others. Its keys expire after
// [ProgressTTL].
const ProgressBucket = "forgebus_models_progress"

// ProgressTTL is how long the rules done for an event are remembered: longer
// than any retry, redelivery or replay of it is expected to come.
const ProgressTTL = 7 * 24 * time.Hour

// LastBucket holds, per repository and branch, the commit the worker last
// ran for, so that a result can say when it ran for an older one.
const LastBucket = "forgebus_models_last"

// store keeps the worker's state in two JetStream KV buckets.
type store struct {
	js       jetstream.JetStream
	replicas int

	mu       sync.Mutex
	progress jetstream.KeyValue
	last     jetstream.KeyValue
}

func (s *store) open(ctx context.Context) (progress, last jetstream.KeyValue, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.progress == nil {
		if s.progress, err = s.bucket(ctx, jetstream.KeyValueConfig{
			Bucket: ProgressBucket, Description: "forgebus models: rules done per event",
			TTL: ProgressTTL, Storage: jetstream.FileStorage, Replicas: s.replicas,
		}); err != nil {
			return nil, nil, err
		}
	}
	if s.last == nil {
		if s.last, err = s.bucket(ctx, jetstream.KeyValueConfig{
			Bucket: LastBucket, Description: "forgebus models: last commit run per branch",
			Storage: jetstream.FileStorage, Replicas: s.replicas,
		}); err != nil {
			return nil, nil, err
		}
	}
	return s.progress, s.last, nil
}

func (s *store) bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	kv, err := s.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = s.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = s.js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open kv bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// done returns the ids of the rules that already succeeded for the event.
func (s *store) done(ctx context.Context, eventID string) ([]string, error) {
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	progress, _, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	e, err := progress.Get(ctx, runtime.IdempotencyKey(eventID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rules done for %s: %w", eventID, err)
	}
	var ids []string
	if err := json.Unmarshal(e.Value(), &ids); err != nil {
		return nil, fmt.Errorf("read rules done for %s: %w", eventID, err)
	}
	return ids, nil
}

// markDone records that the rules ids succeeded for the event. One event
// is handled by one replica at a time, so a plain put is enough. The rule
// has run: the put is tried past the job's deadline ([runtime.Record]),
// since a record given up makes the next delivery run it again.
func (s *store) markDone(ctx context.Context, eventID string, ids []string) error {
	b, _ := json.Marshal(ids)
	err := runtime.Record(ctx, func(ctx context.Context) error {
		progress, _, err := s.open(ctx)
		if err != nil {
			return err
		}
		_, err = progress.Put(ctx, runtime.IdempotencyKey(eventID), b)
		return err
	})
	if err != nil {
		return fmt.Errorf("record rules done for %s: %w", eventID, err)
	}
	return nil
}

// lastRun is what [LastBucket] holds for a branch.
type lastRun struct {
	Commit  string `json:"commit"`
	EventID string `json:"event_id"`
}

func branchKey(repo, branch string) string {
	h := sha256.Sum256([]byte(repo + "\x00" + branch))
	return hex.EncodeToString(h[:])
}

// lastCommit returns the last run of repo/branch (nil when none) and its
// revision.
func (s *store) lastCommit(ctx context.Context, repo, branch string) (*lastRun, uint64, error) {
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	_, last, err := s.open(ctx)
	if err != nil {
		return nil, 0, err
	}
	e, err := last.Get(ctx, branchKey(repo, branch))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read last run of %s %s: %w", repo, branch, err)
	}
	var lr lastRun
	if err := json.Unmarshal(e.Value(), &lr); err != nil {
		return nil, 0, fmt.Errorf("read last run of %s %s: %w", repo, branch, err)
	}
	return &lr, e.Revision(), nil
}

// setLast records run as the last of repo/branch if the entry is still at
// rev (0: none); it reports false when another replica wrote first.
func (s *store) setLast(ctx context.Context, repo, branch string, rev uint64, run lastRun) (bool, error) {
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	_, last, err := s.open(ctx)
	if err != nil {
		return false, err
	}
	b, _ := json.Marshal(run)
	key := branchKey(repo, branch)
	if rev == 0 {
		_, err = last.Create(ctx, key, b)
	} else {
		_, err = last.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record last run of %s %s: %w", repo, branch, err)
	}
	return true, nil
}

// id names a rule across retries and restarts: its name and a hash of what
// it watches and does, so an edited rule counts as a new one.
func (r *Rule) id() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", r.Repo, r.Branch, strings.Join(r.Paths, "\x00"))
	if r.Post != nil {
		fmt.Fprintf(h, "post\x00%s", r.Post.URL)
	}
	if r.Command != nil {
		fmt.Fprintf(h, "command\x00%s", strings.Join(r.Command.Argv, "\x00"))
	}
	return r.Name + "@" + hex.EncodeToString(h.Sum(nil))[:12]
}

func contains(ids []string, id string) bool { return slices.Contains(ids, id) }
