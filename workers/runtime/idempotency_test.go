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
	"github.com/forgebus/forgebus/services/natstest"
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

// Many copies of one event arrive together (redeliveries, replays) and
// start at once: the event id's lock runs them one after the other, each
// looking up after the one before recorded, so the handler runs once and
// every other copy is a duplicate, pulling ahead or not.
func TestCopiesArrivingTogetherRunOnce(t *testing.T) {
	for _, prefetch := range []bool{true, false} {
		t.Run(fmt.Sprintf("prefetch=%v", prefetch), func(t *testing.T) {
			_, _, js := broker(t)
			const copies = 30
			for i := range copies {
				publish(t, js, envelope("same"), fmt.Sprintf("copy-%d", i))
			}
			calls := newCounter()
			s := fastSettings()
			s.MaxInFlight = 16
			if prefetch {
				s.AckWait, s.JobTimeout = 10*time.Second, 5*time.Second
			}
			if s.prefetch() != prefetch {
				t.Fatalf("settings prefetch = %v", s.prefetch())
			}
			start(t, js, Worker{Name: "copies", Subjects: []string{"forge.>"}, Settings: s,
				Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
					calls.inc(ev.ID)
					time.Sleep(5 * time.Millisecond)
					return Report{}, nil
				})})
			natstest.Eventually(t, 10*time.Second, "a result per copy", func() bool { return len(results(t, js)) == copies })
			rs := results(t, js)
			if n := len(resultsOf(rs, "same", schemas.OutcomeSucceeded)); n != 1 {
				t.Errorf("%d succeeded results, want 1", n)
			}
			if n := len(resultsOf(rs, "same", schemas.OutcomeDuplicate)); n != copies-1 {
				t.Errorf("%d duplicate results, want %d", n, copies-1)
			}
			if n := calls.get("same"); n != 1 {
				t.Errorf("handler ran %d times, want once", n)
			}
		})
	}
}
