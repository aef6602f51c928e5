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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// IdempotencyBucketPrefix starts the name of every worker's idempotency
// bucket: forgebus_idem_<worker>.
const IdempotencyBucketPrefix = "forgebus_idem_"

// IdempotencyBucket is the configuration of w's idempotency bucket: a
// JetStream KV bucket whose keys are the ids of the events w finished,
// forgotten after Settings.IdempotencyTTL.
func IdempotencyBucket(w Worker) jetstream.KeyValueConfig {
	replicas := w.Settings.Replicas
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:      IdempotencyBucketPrefix + w.Name,
		Description: "forgebus: events the " + w.Name + " worker finished",
		TTL:         w.Settings.IdempotencyTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
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

// idemRecord is the value stored under an event id.
type idemRecord struct {
	Outcome schemas.Outcome `json:"outcome"`
	Seq     uint64          `json:"seq"`
	Attempt int             `json:"attempt"`
	At      time.Time       `json:"at"`
}

// idempotency remembers the events a worker finished.
type idempotency struct {
	kv jetstream.KeyValue
}

// done returns the record of id, or found false when the worker has not
// finished it.
func (s *idempotency) done(ctx context.Context, id string) (idemRecord, bool, error) {
	e, err := s.kv.Get(ctx, IdempotencyKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return idemRecord{}, false, nil
	}
	if err != nil {
		return idemRecord{}, false, fmt.Errorf("idempotency get: %w", err)
	}
	var r idemRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		// A record we cannot read still says the event was handled.
		return idemRecord{Outcome: schemas.OutcomeSucceeded}, true, nil
	}
	return r, true, nil
}

// record stores id as finished with r.
func (s *idempotency) record(ctx context.Context, id string, r idemRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("idempotency record: %w", err)
	}
	if _, err := s.kv.Put(ctx, IdempotencyKey(id), v); err != nil {
		return fmt.Errorf("idempotency put: %w", err)
	}
	return nil
}
