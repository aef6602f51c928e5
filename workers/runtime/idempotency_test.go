package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
)

// The hand-written record encoding writes what encoding/json writes, for
// every outcome a record can hold.
func TestIdemRecordJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 16, 5, 44, 123456789, time.UTC)
	for _, o := range []schemas.Outcome{schemas.OutcomeSucceeded, schemas.OutcomeSuperseded, schemas.OutcomeDenied, schemas.OutcomeDuplicate} {
		r := idemRecord{Outcome: o, Seq: 18446744073709551615, Attempt: 7, At: at}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); string(got) != string(want) {
			t.Errorf("appendJSON = %s, want %s", got, want)
		}
		var back idemRecord
		if err := json.Unmarshal(r.appendJSON(nil), &back); err != nil || back != r {
			t.Errorf("round trip = %+v, %v; want %+v", back, err, r)
		}
	}
}

func newTestIdempotency(t *testing.T, js jetstream.JetStream) (*idempotency, jetstream.KeyValue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: IdempotencyBucketPrefix + "t", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newIdempotency(js, kv, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s, kv
}

// Lookups made at the same time share multi gets, and each gets its own
// answer: recorded ids are found with their record, deleted and unknown
// ones are not, ids that need escaping are found too.
func TestIdempotencyBatchedLookups(t *testing.T) {
	_, _, js := broker(t)
	s, kv := newTestIdempotency(t, js)
	ctx := context.Background()
	const n = 400
	id := func(i int) string { return fmt.Sprintf("evt.%d/ü", i) }
	for i := 0; i < n; i += 3 {
		if err := s.record(ctx, id(i), idemRecord{Outcome: schemas.OutcomeSucceeded, Seq: uint64(i), Attempt: 1, At: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	// A record deleted afterwards is no record.
	if err := kv.Delete(ctx, IdempotencyKey(id(3))); err != nil {
		t.Fatal(err)
	}
	before := s.batches.Load()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			rec, found, err := s.done(lctx, id(i))
			want := i%3 == 0 && i != 3
			switch {
			case err != nil:
				errs <- fmt.Errorf("%s: %w", id(i), err)
			case found != want:
				errs <- fmt.Errorf("%s: found %v, want %v", id(i), found, want)
			case found && (rec.Seq != uint64(i) || rec.Outcome != schemas.OutcomeSucceeded):
				errs <- fmt.Errorf("%s: record %+v", id(i), rec)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sent := s.batches.Load() - before
	t.Logf("%d lookups in %d multi gets", n, sent)
	if sent < 1 || sent >= n/2 {
		t.Errorf("%d lookups took %d requests: not batched", n, sent)
	}
}

// With the broker gone a lookup fails; it never says "not found", which
// would run the event again.
func TestIdempotencyLookupBrokerDown(t *testing.T) {
	srv, _, js := broker(t)
	s, _ := newTestIdempotency(t, js)
	srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, found, err := s.done(ctx, "evt-1")
	if err == nil || found {
		t.Fatalf("done with the broker down = found %v, err %v; want an error", found, err)
	}
}
