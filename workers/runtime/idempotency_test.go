package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// A key's value round-trips; a record from before key states, or one that
// does not decode, says done, so the event never runs twice.
func TestKeyState(t *testing.T) {
	at := time.Date(2026, 11, 24, 16, 5, 44, 123456789, time.UTC)
	k := keyState{State: stateRunning, Seq: 18446744073709551615, Attempt: 7, At: at}
	if back := decodeKeyState(k.encode()); back != k {
		t.Errorf("round trip = %+v, want %+v", back, k)
	}
	old, _ := json.Marshal(map[string]any{"outcome": "superseded", "seq": 4, "attempt": 1, "at": at})
	if got := decodeKeyState(old); got.State != stateDone || got.Outcome != schemas.OutcomeSuperseded || got.Seq != 4 {
		t.Errorf("old record = %+v, want done, superseded, seq 4", got)
	}
	if got := decodeKeyState([]byte("{not json")); got.State != stateDone || got.Outcome != schemas.OutcomeSucceeded {
		t.Errorf("garbage = %+v, want done", got)
	}
}

func testBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, IdempotencyBucket(Worker{Name: "t", Settings: DefaultSettings()}))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// claim takes an absent or deleted key, reports a done or live running
// one, takes over a running one past its lease, and of copies claiming at
// once exactly one wins.
func TestClaim(t *testing.T) {
	_, _, js := broker(t)
	kv := testBucket(t, js)
	ctx := context.Background()
	st := func(seq uint64) keyState {
		return keyState{State: stateRunning, Seq: seq, Attempt: 1, At: time.Now().UTC()}
	}
	key := IdempotencyKey("evt.1/ü")

	c, err := claim(ctx, kv, key, st(1), time.Minute)
	if err != nil || c.rev == 0 {
		t.Fatalf("first claim = %+v, %v; want it claimed", c, err)
	}
	c2, err := claim(ctx, kv, key, st(2), time.Minute)
	if err != nil || c2.rev != 0 || c2.running == nil || c2.running.Seq != 1 {
		t.Fatalf("second claim = %+v, %v; want running by seq 1", c2, err)
	}
	// Past its lease, a running key is taken over.
	c3, err := claim(ctx, kv, key, st(3), time.Nanosecond)
	if err != nil || c3.rev == 0 {
		t.Fatalf("claim past the lease = %+v, %v; want it claimed", c3, err)
	}
	done := keyState{State: stateDone, Outcome: schemas.OutcomeSucceeded, Seq: 3, Attempt: 1}
	if _, err := kv.Update(ctx, key, done.encode(), c3.rev); err != nil {
		t.Fatal(err)
	}
	c4, err := claim(ctx, kv, key, st(4), time.Nanosecond)
	if err != nil || c4.done == nil || c4.done.Seq != 3 {
		t.Fatalf("claim of a done key = %+v, %v; want done by seq 3", c4, err)
	}
	// A deleted key (a released claim) is claimed again.
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if c, err := claim(ctx, kv, key, st(5), time.Minute); err != nil || c.rev == 0 {
		t.Fatalf("claim after delete = %+v, %v; want it claimed", c, err)
	}

	const copies = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := claim(ctx, kv, IdempotencyKey("race"), st(uint64(i+1)), time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if c.rev != 0 {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d of %d copies claimed at once, want 1", won, copies)
	}
}

// With the broker gone a claim fails; it never says "claimed", which
// would run the event with no one else knowing.
func TestClaimBrokerDown(t *testing.T) {
	srv, _, js := broker(t)
	kv := testBucket(t, js)
	srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := claim(ctx, kv, "evt-1", keyState{State: stateRunning, Seq: 1}, time.Minute)
	if err == nil || c.rev != 0 {
		t.Fatalf("claim with the broker down = %+v, %v; want an error", c, err)
	}
}

// keyOf reads the event id's key in w's bucket: its state, or false when
// it is absent or deleted.
func keyOf(t *testing.T, js jetstream.JetStream, w Worker, id string) (keyState, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, IdempotencyBucket(w).Bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, IdempotencyKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return keyState{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return decodeKeyState(e.Value()), true
}

// Many copies of one event arrive together (redeliveries, replays) and
// start at once: one claims the event's key, the others wait for it and
// find it done, so the handler runs once and every other copy is a
// duplicate, pulling ahead or not.
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
