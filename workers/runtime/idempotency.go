package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// IdempotencyBucketPrefix starts the name of every worker's idempotency
// bucket: forgebus_idem_<worker>.
const IdempotencyBucketPrefix = "forgebus_idem_"

// IdempotencyBucket is the configuration of w's idempotency bucket: a
// JetStream KV bucket with one key per event id ([IdempotencyKey]) that w
// is running or has done, forgotten after Settings.IdempotencyTTL.
func IdempotencyBucket(w Worker) jetstream.KeyValueConfig {
	replicas := w.Settings.Replicas
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:      IdempotencyBucketPrefix + w.Name,
		Description: "forgebus: events the " + w.Name + " worker runs or has done",
		TTL:         w.Settings.IdempotencyTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// KeepReplicas returns want, or the replica count stream has now when that
// is higher: a process started with a smaller count (FORGEBUS_STREAM_REPLICAS
// unset on a cluster) must never shrink a stream or bucket to fewer copies.
// A stream that does not exist, or cannot be read, leaves want as it is.
func KeepReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) int {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return want
	}
	return max(want, st.CachedInfo().Config.Replicas)
}

// maxKeyLen bounds an idempotency key; longer ids are hashed.
const maxKeyLen = 200

// IdempotencyKey is the KV key of an event id. KV keys allow
// [-/_=.a-zA-Z0-9]; every other byte, and '.', '/' and '=', is written as
// "=XX" (upper-case hex), so the mapping is reversible and one token long.
// An empty id, or one whose key would be longer than 200 bytes, becomes
// "sha256/<hex>", which no escaped id can be (a '/' is always escaped).
func IdempotencyKey(id string) string {
	var b strings.Builder
	b.Grow(len(id) + 8)
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0x0f])
		}
	}
	if b.Len() == 0 || b.Len() > maxKeyLen {
		sum := sha256.Sum256([]byte(id))
		return "sha256/" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

const hexDigits = "0123456789ABCDEF"

// The states of an event's key.
const (
	// stateRunning: a delivery of the event (Seq) claimed it and runs its
	// handler; its heartbeat rewrites the key, so an entry older than the
	// lease belongs to a delivery that is gone.
	stateRunning = "running"
	// stateDone: the event's effect is done (Outcome succeeded or
	// superseded) and its result published as the outcome of Seq.
	stateDone = "done"
)

// keyState is the value of an event's key.
type keyState struct {
	// State is running or done. A record written before states existed
	// has none and means done.
	State   string          `json:"state,omitempty"`
	Outcome schemas.Outcome `json:"outcome,omitempty"`
	Seq     uint64          `json:"seq"`
	Attempt int             `json:"attempt"`
	At      time.Time       `json:"at"`
}

func (k keyState) encode() []byte {
	b, _ := json.Marshal(k) // no field can fail to encode
	return b
}

// decodeKeyState reads a key's value; one it cannot read still says the
// event was done, so that it never runs twice.
func decodeKeyState(v []byte) keyState {
	var k keyState
	if err := json.Unmarshal(v, &k); err != nil || k.State == "" {
		k.State = stateDone
		if k.Outcome == "" {
			k.Outcome = schemas.OutcomeSucceeded
		}
	}
	return k
}

// claimResult is what claim found: the event is ours now (rev), done
// before (done), or running in another delivery (running, not stale).
type claimResult struct {
	rev     uint64
	done    *keyState
	running *keyState
}

// claim makes the event's key "running" for j's delivery: created when it
// is absent (or deleted), or written over a running entry older than lease
// (its delivery is gone), each a compare-and-set, so of two copies only
// one claims. Otherwise it reports the done or running state it found.
//
// Each request has its own deadline ([OpTimeout]), shorter than the job's: a
// request lost with a node that died never gets a reply, and waiting for
// one until the job's deadline would hold the message all that time (the
// heartbeat keeps it) while nothing happens.
func claim(ctx context.Context, kv jetstream.KeyValue, key string, st keyState, lease time.Duration) (claimResult, error) {
	for {
		rev, err := opCall(ctx, func(ctx context.Context) (uint64, error) { return kv.Create(ctx, key, st.encode()) })
		if err == nil {
			return claimResult{rev: rev}, nil
		}
		if !isConflict(err) {
			return claimResult{}, fmt.Errorf("idempotency claim: %w", err)
		}
		e, err := opCall(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return kv.Get(ctx, key) })
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since: create again
		}
		if err != nil {
			return claimResult{}, fmt.Errorf("idempotency get: %w", err)
		}
		cur := decodeKeyState(e.Value())
		switch {
		case cur.State == stateDone:
			return claimResult{done: &cur}, nil
		case time.Since(e.Created()) < lease:
			return claimResult{running: &cur}, nil
		}
		rev, err = opCall(ctx, func(ctx context.Context) (uint64, error) { return kv.Update(ctx, key, st.encode(), e.Revision()) })
		if err == nil {
			return claimResult{rev: rev}, nil
		}
		if !isConflict(err) {
			return claimResult{}, fmt.Errorf("idempotency claim: %w", err)
		}
	}
}

// isConflict reports a compare-and-set write refused because the key moved
// on (JetStream's wrong last sequence).
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// OpTimeout bounds one broker request made during a job: a reply lost
// with a node that died is given up after it, not at the job's deadline
// (minutes away), while the heartbeat keeps the message and nothing moves.
const OpTimeout = publishTimeout

// OpContext is ctx bounded by [OpTimeout], for one broker request (a KV
// get or write, a publish) of a handler. The runtime bounds its own the
// same way.
func OpContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, OpTimeout)
}

// opCall runs f with ctx bounded by [OpTimeout].
func opCall[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := OpContext(ctx)
	defer cancel()
	return f(ctx)
}

// RecordTimeout bounds how long [Record] keeps trying.
const RecordTimeout = 30 * time.Second

// Record runs write, the broker write that records an effect of the job as
// done, until it succeeds or [RecordTimeout] has passed. The effect has
// happened: a record given up runs it again on the next delivery, so the
// write is not cut by the job's deadline or cancel (ctx's values are kept),
// and a failure (a node dying, a stream between leaders) is tried again,
// each try bounded by [OpTimeout]. write must be safe to repeat. The
// heartbeat keeps the message meanwhile.
func Record(ctx context.Context, write func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RecordTimeout)
	defer cancel()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0), // ctx bounds it
	)
	return backoff.Retry(func() error {
		_, err := opCall(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, write(ctx) })
		return err
	}, backoff.WithContext(b, ctx))
}
