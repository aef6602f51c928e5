package envsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// metaRoot starts every meta key: "__forgebus_meta.<prefix>".
const metaRoot = "__forgebus_meta"

const (
	stateApplying = "applying"
	stateApplied  = "applied"
)

// meta is a target's record of the newest event applied to it.
type meta struct {
	// Time is the event's envelope time, the ordering key; EventID breaks ties.
	Time    time.Time `json:"time"`
	EventID string    `json:"event_id"`
	Commit  string    `json:"commit"`
	State   string    `json:"state"`
	// ClaimedAt is when an applying claim was taken.
	ClaimedAt time.Time `json:"claimed_at"`
	// Keys are the env keys the last applied file held, with value hashes.
	Keys map[string]string `json:"keys"`
	// Pending are the keys an applying claim may write.
	Pending []string `json:"pending,omitempty"`
}

// newerThan reports whether m orders after the event (t, id).
func (m *meta) newerThan(t time.Time, id string) bool {
	if !m.Time.Equal(t) {
		return m.Time.After(t)
	}
	return m.EventID > id
}

type applyResult struct {
	superseded bool
	detail     schemas.Detail
}

const maxClaimTries = 8

func (w *Worker) apply(ctx context.Context, ev *schemas.Envelope, before, commit, owner, repo string, r Rule) (applyResult, error) {
	kv, err := w.bucket(ctx, r.bucket())
	if err != nil {
		return applyResult{}, err
	}
	prefix := r.prefix(owner, repo)
	metaKey := metaRoot + "." + prefix
	target := r.bucket() + "/" + prefix
	evTime := ev.Time.UTC()
	base := schemas.Detail{"rule": r.name(), "target": target, "commit": commit}
	log := w.log.With().Str("event_id", ev.ID).Str("rule", r.name()).Str("target", target).Str("commit", commit).Logger()

	superseded := func(m *meta) (applyResult, error) {
		d := clone(base)
		d["newer_event_id"] = m.EventID
		d["newer_commit"] = m.Commit
		log.Info().Str("newer_event_id", m.EventID).Msg("superseded by a newer push")
		return applyResult{superseded: true, detail: d}, nil
	}
	// checked is the applied commit the history check last passed against.
	checked := ""
	history := func(m *meta) (applyResult, bool, error) {
		if m == nil || m.EventID == ev.ID || m.Commit == checked {
			return applyResult{}, false, nil
		}
		reason, err := w.refusal(ctx, owner, repo, m.Commit, before, commit)
		if err != nil || reason == "" {
			checked = m.Commit
			return applyResult{}, false, err
		}
		d := clone(base)
		d["applied_event_id"] = m.EventID
		d["applied_commit"] = m.Commit
		d["reason"] = reason
		log.Info().Str("applied_commit", m.Commit).Str("reason", reason).Msg("superseded by the applied commit's history")
		return applyResult{superseded: true, detail: d}, true, nil
	}

	// Cheap checks first: no fetch for an event that is already too old.
	m, _, err := w.getMeta(ctx, kv, metaKey)
	if err != nil {
		return applyResult{}, err
	}
	if m != nil && m.EventID != ev.ID && m.newerThan(evTime, ev.ID) {
		return superseded(m)
	}
	if res, refused, err := history(m); err != nil || refused {
		return res, err
	}

	body, err := w.api.RawFile(ctx, owner, repo, commit, r.File)
	if err != nil {
		return applyResult{}, classify(err)
	}
	env, err := parseEnv(body)
	if err != nil {
		return applyResult{}, runtime.Permanent(fmt.Errorf("%s at %s: %w", r.File, commit, err))
	}
	var rendered []byte
	if r.EnvFile != "" {
		if rendered, err = render(env); err != nil {
			return applyResult{}, runtime.Permanent(err)
		}
	}
	hashes := make(map[string]string, len(env))
	for k, v := range env {
		hashes[k] = valueHash(k, v)
	}

	for try := 0; try < maxClaimTries; try++ {
		m, rev, err := w.getMeta(ctx, kv, metaKey)
		if err != nil {
			return applyResult{}, err
		}
		fresh := m != nil && m.State == stateApplying && w.now().Sub(m.ClaimedAt) < w.cfg.ClaimTTL
		switch {
		case m == nil:
		case m.EventID == ev.ID && m.State == stateApplied:
			d := clone(base)
			d["already_applied"] = "true"
			d["env_sha256"] = envHash(env)
			return applyResult{detail: d}, nil
		case m.EventID != ev.ID && m.newerThan(evTime, ev.ID):
			return superseded(m)
		}
		if fresh && m.EventID != ev.ID {
			// An older event is being applied right now. The same event's own
			// claim is retaken at once: a retry after a failure must not wait
			// for its own claim, and two replicas applying the same event
			// write the same values (per-key CAS sorts out the races).
			return applyResult{}, fmt.Errorf("%s: %w (event %s)", target, ErrBusy, m.EventID)
		}
		if res, refused, err := history(m); err != nil || refused {
			return res, err
		}

		// Claim the target.
		prevKeys := map[string]bool{}
		if m != nil {
			for k := range m.Keys {
				prevKeys[k] = true
			}
			for _, k := range m.Pending { // an abandoned claim may have written these
				prevKeys[k] = true
			}
		}
		claim := meta{Time: evTime, EventID: ev.ID, Commit: commit, State: stateApplying, ClaimedAt: w.now().UTC()}
		if m != nil {
			claim.Keys = m.Keys
		}
		claim.Pending = sortedKeys(env)
		claimRev, err := w.putMeta(ctx, kv, metaKey, &claim, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue // someone else moved first: look again
		}
		if err != nil {
			return applyResult{}, err
		}

		put, deleted, err := w.diff(ctx, kv, prefix, env, prevKeys)
		if err != nil {
			return applyResult{}, err
		}
		if r.EnvFile != "" {
			if err := writeAtomic(r.EnvFile, rendered); err != nil {
				return applyResult{}, err
			}
		}
		done := meta{Time: evTime, EventID: ev.ID, Commit: commit, State: stateApplied, ClaimedAt: claim.ClaimedAt, Keys: hashes}
		if _, err := w.putMeta(ctx, kv, metaKey, &done, claimRev); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				return applyResult{}, fmt.Errorf("%s: %w: the claim was taken over", target, ErrConflict)
			}
			return applyResult{}, err
		}

		d := clone(base)
		d["keys_put"] = strings.Join(put, ",")
		d["keys_deleted"] = strings.Join(deleted, ",")
		d["keys_total"] = fmt.Sprint(len(env))
		d["env_sha256"] = envHash(env)
		hs := make([]string, 0, len(put))
		for _, k := range put {
			hs = append(hs, k+":"+hashes[k])
		}
		d["key_sha256"] = strings.Join(hs, ",")
		log.Info().Strs("keys_put", put).Strs("keys_deleted", deleted).Str("env_sha256", d["env_sha256"]).Msg("env applied")
		return applyResult{detail: d}, nil
	}
	return applyResult{}, fmt.Errorf("%s: %w: gave up after %d claim attempts", target, ErrConflict, maxClaimTries)
}

// diff puts the keys whose value differs from the bucket's, and deletes the
// previously managed keys the file no longer has. Every write is CAS on the
// key's revision.
func (w *Worker) diff(ctx context.Context, kv jetstream.KeyValue, prefix string, env map[string]string, prev map[string]bool) (put, deleted []string, err error) {
	for _, k := range sortedKeys(env) {
		key := prefix + "." + k
		v := env[k]
		changed, err := putKey(ctx, kv, key, v)
		if !changed && err == nil {
			continue
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				return nil, nil, fmt.Errorf("put %s: %w", key, ErrConflict)
			}
			return nil, nil, fmt.Errorf("put %s: %w", key, err)
		}
		put = append(put, k)
	}
	for _, k := range sortedKeys(prev) {
		if _, ok := env[k]; ok {
			continue
		}
		key := prefix + "." + k
		gone, err := deleteKey(ctx, kv, key)
		if gone {
			continue
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				return nil, nil, fmt.Errorf("delete %s: %w", key, ErrConflict)
			}
			return nil, nil, fmt.Errorf("delete %s: %w", key, err)
		}
		deleted = append(deleted, k)
	}
	return put, deleted, nil
}

// putKey sets key to v (compare-and-set on the revision it read); it
// reports false, and no error, when the key already holds v. Each request
// is bounded by runtime.OpTimeout.
func putKey(ctx context.Context, kv jetstream.KeyValue, key, v string) (bool, error) {
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = kv.Create(ctx, key, []byte(v))
	case err != nil:
		return false, fmt.Errorf("get %s: %w", key, err)
	case string(e.Value()) == v:
		return false, nil
	default:
		_, err = kv.Update(ctx, key, []byte(v), e.Revision())
	}
	return true, err
}

// deleteKey deletes key at the revision it read; it reports true, and no
// error, when the key is not there.
func deleteKey(ctx context.Context, kv jetstream.KeyValue, key string) (bool, error) {
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	return false, kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
}

func (w *Worker) getMeta(ctx context.Context, kv jetstream.KeyValue, key string) (*meta, uint64, error) {
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", key, err)
	}
	var m meta
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return nil, 0, runtime.Permanent(fmt.Errorf("decode %s: %w", key, err))
	}
	return &m, e.Revision(), nil
}

// putMeta writes m at key if the key is still at rev (0: does not exist).
func (w *Worker) putMeta(ctx context.Context, kv jetstream.KeyValue, key string, m *meta, rev uint64) (uint64, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	ctx, cancel := runtime.OpContext(ctx)
	defer cancel()
	if rev == 0 {
		return kv.Create(ctx, key, b)
	}
	return kv.Update(ctx, key, b, rev)
}

func clone(d schemas.Detail) schemas.Detail {
	out := make(schemas.Detail, len(d)+8)
	for k, v := range d {
		out[k] = v
	}
	return out
}
