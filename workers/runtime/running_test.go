package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/natstest"
)

// setDupWindow sets FORGE_EVENTS's duplicate window (before a worker
// starts: the runtime reads it at start).
func setDupWindow(t *testing.T, js jetstream.JetStream, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Duplicates = d
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("update stream: %v", err)
	}
}

// markerGone waits until w's bucket has no running marker for id, and
// returns the bucket.
func markerGone(t *testing.T, js jetstream.JetStream, w Worker, id string) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, IdempotencyBucket(w).Bucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, "marker removed", func() bool {
		_, err := kv.Get(ctx, markerKey(IdempotencyKey(id)))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	return kv
}

// overlap counts a handler's calls and the most that ran at once.
type overlap struct {
	mu          sync.Mutex
	calls, now  int
	most        int
	started     chan struct{}
	startedOnce sync.Once
	hold        time.Duration
	fail        error // every call's error
	failFirst   error // the first call's error, at once
}

func (o *overlap) handler() Handler {
	return HandlerFunc(func(ctx context.Context, _ *schemas.Envelope) (Report, error) {
		o.mu.Lock()
		o.calls++
		first := o.calls == 1
		o.now++
		o.most = max(o.most, o.now)
		o.mu.Unlock()
		o.startedOnce.Do(func() { close(o.started) })
		if first && o.failFirst != nil {
			o.mu.Lock()
			o.now--
			o.mu.Unlock()
			return Report{}, o.failFirst
		}
		select {
		case <-time.After(o.hold):
		case <-ctx.Done():
		}
		o.mu.Lock()
		o.now--
		o.mu.Unlock()
		return Report{}, o.fail
	})
}

func (o *overlap) counts() (calls, most int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls, o.most
}

// publishCopy publishes a copy of ev with the event id as Nats-Msg-Id, as
// ingest does, and fails the test if the stream dropped it as a duplicate.
func publishCopy(t *testing.T, js jetstream.JetStream, ev schemas.Envelope) uint64 {
	t.Helper()
	data, err := jsonMarshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, testSubject, data, jetstream.WithMsgID(ev.ID))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Duplicate {
		t.Fatal("the copy was dropped as a duplicate: publish it later")
	}
	return ack.Sequence
}

// TestCopyWaitsForTheRunningOne: a second copy of an event (a Gogs
// redelivery, stored after the duplicate window) that reaches another
// replica while the first copy still runs does not run beside it: it waits
// and ends as a duplicate.
func TestCopyWaitsForTheRunningOne(t *testing.T) {
	_, _, js := broker(t)
	setDupWindow(t, js, time.Second)
	o := &overlap{started: make(chan struct{}), hold: 3 * time.Second}
	s := fastSettings()
	s.MaxInFlight = 1 // the busy replica takes nothing more: the copy goes to the other
	w := Worker{Name: "long", Subjects: []string{"forge.>"}, Settings: s, Handler: o.handler()}
	start(t, js, w)
	start(t, js, w)

	publishCopy(t, js, envelope("build"))
	select {
	case <-o.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first copy did not start")
	}
	time.Sleep(1500 * time.Millisecond) // past the duplicate window, and the marker written at half of it
	publishCopy(t, js, envelope("build"))

	natstest.Eventually(t, 15*time.Second, "a result for each copy", func() bool { return len(results(t, js)) == 2 })
	rs := results(t, js)
	if n := len(resultsOf(rs, "build", schemas.OutcomeSucceeded)); n != 1 {
		t.Errorf("%d succeeded results, want 1: %+v", n, rs)
	}
	if n := len(resultsOf(rs, "build", schemas.OutcomeDuplicate)); n != 1 {
		t.Errorf("%d duplicate results, want 1: %+v", n, rs)
	}
	if calls, most := o.counts(); calls != 1 || most != 1 {
		t.Errorf("handler ran %d times, %d at once; want once", calls, most)
	}
	// The first copy wrote its marker from its heartbeat, then its record,
	// then removed the marker.
	kv := markerGone(t, js, w, "build")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kv.Get(ctx, IdempotencyKey("build")); err != nil {
		t.Errorf("record: %v", err)
	}
	if st, err := js.Stream(ctx, "KV_"+kv.Bucket()); err != nil {
		t.Error(err)
	} else if state := st.CachedInfo().State; state.LastSeq != 2 || state.Msgs != 1 {
		t.Errorf("bucket: %d writes, %d kept; want 2 (marker, record) and 1 (the record)", state.LastSeq, state.Msgs)
	}
}

// TestLateCopiesClaimTheEvent: two stored copies of an event that start at
// the same moment on two replicas, both old (a backlog after an outage):
// one claims the event, the other waits for it and ends as a duplicate.
func TestLateCopiesClaimTheEvent(t *testing.T) {
	_, _, js := broker(t)
	setDupWindow(t, js, time.Second)
	publishCopy(t, js, envelope("backlog"))
	time.Sleep(1200 * time.Millisecond)
	publishCopy(t, js, envelope("backlog"))
	time.Sleep(600 * time.Millisecond) // both at least half the window old

	o := &overlap{started: make(chan struct{}), hold: time.Second}
	s := fastSettings()
	s.MaxInFlight = 1
	w := Worker{Name: "late", Subjects: []string{"forge.>"}, Settings: s, Handler: o.handler()}
	start(t, js, w)
	start(t, js, w)

	natstest.Eventually(t, 15*time.Second, "a result for each copy", func() bool { return len(results(t, js)) == 2 })
	rs := results(t, js)
	if len(resultsOf(rs, "backlog", schemas.OutcomeSucceeded)) != 1 || len(resultsOf(rs, "backlog", schemas.OutcomeDuplicate)) != 1 {
		t.Errorf("results %+v, want one succeeded and one duplicate", rs)
	}
	if calls, most := o.counts(); calls != 1 || most != 1 {
		t.Errorf("handler ran %d times, %d at once; want once", calls, most)
	}
}

// TestRunningMarkers: a marker whose job is long over is run past; a live
// marker of another delivery holds a copy back until its job timeout, as a
// failure that says why; a late job that fails removes its own marker.
func TestRunningMarkers(t *testing.T) {
	_, _, js := broker(t)
	setDupWindow(t, js, time.Second)
	o := &overlap{started: make(chan struct{}), hold: 0}
	s := fastSettings()
	s.JobTimeout = 1500 * time.Millisecond
	s.MaxDeliver = 1
	w := Worker{Name: "markers", Subjects: []string{"forge.>"}, Settings: s, Handler: o.handler()}
	rt, err := New(js, w, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var kv jetstream.KeyValue
	natstest.Eventually(t, 10*time.Second, "the idempotency bucket", func() bool {
		var err error
		kv, err = js.KeyValue(ctx, IdempotencyBucket(w).Bucket)
		return err == nil
	})
	mark := func(id string, seq uint64, at time.Time) {
		t.Helper()
		rec := idemRecord{Outcome: outcomeRunning, Seq: seq, Attempt: 1, At: at.UTC()}
		if _, err := kv.Put(ctx, markerKey(IdempotencyKey(id)), rec.appendJSON(nil)); err != nil {
			t.Fatal(err)
		}
	}

	mark("stale", 999999, time.Now().Add(-time.Hour))
	publishCopy(t, js, envelope("stale"))
	natstest.Eventually(t, 10*time.Second, "stale marker run past", func() bool {
		return len(resultsOf(results(t, js), "stale", schemas.OutcomeSucceeded)) == 1
	})

	mark("held", 999999, time.Now())
	publishCopy(t, js, envelope("held"))
	natstest.Eventually(t, 10*time.Second, "held copy dead-lettered", func() bool {
		return len(resultsOf(results(t, js), "held", schemas.OutcomeDeadLettered)) == 1
	})
	dl := resultsOf(results(t, js), "held", schemas.OutcomeDeadLettered)[0]
	if !strings.Contains(dl.Error, "still running in the delivery of stream sequence 999999") {
		t.Errorf("error %q does not say which delivery holds the event", dl.Error)
	}
	if calls, _ := o.counts(); calls != 1 {
		t.Errorf("handler ran %d times, want once (for stale only)", calls)
	}
	if n := testutil.ToFloat64(rt.metrics.waits.WithLabelValues("markers")); n != 1 {
		t.Errorf("running_waits_total = %v, want 1", n)
	}

}

// TestLateFailureRemovesItsMarker: a job that starts late claims the
// event with a marker, and a failure removes it, so the next copy need not
// wait for it to go stale.
func TestLateFailureRemovesItsMarker(t *testing.T) {
	_, _, js := broker(t)
	setDupWindow(t, js, time.Second)
	publishCopy(t, js, envelope("fails"))
	time.Sleep(600 * time.Millisecond) // half the window old: it starts late
	o := &overlap{started: make(chan struct{}), fail: Permanent(errorString("broken"))}
	w := Worker{Name: "fails", Subjects: []string{"forge.>"}, Settings: fastSettings(), Handler: o.handler()}
	start(t, js, w)
	natstest.Eventually(t, 10*time.Second, "dead-lettered", func() bool {
		return len(resultsOf(results(t, js), "fails", schemas.OutcomeDeadLettered)) == 1
	})
	markerGone(t, js, w, "fails")
	// Written, then purged: one write, nothing kept.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_"+IdempotencyBucket(w).Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if state := st.CachedInfo().State; state.LastSeq != 1 || state.Msgs != 0 {
		t.Errorf("bucket: %d writes, %d kept; want 1 (the marker) and 0", state.LastSeq, state.Msgs)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestRetryHoldsTheEvent: a copy that failed and waits for its retry
// leaves a marker; a younger copy that starts meanwhile claims the event
// before its handler, so the retry, when it comes, waits for it instead of
// running beside it, and ends as a duplicate.
func TestRetryHoldsTheEvent(t *testing.T) {
	_, _, js := broker(t)
	// The retry comes back while the younger copy is still too young for
	// a heartbeat marker (under half the window old).
	setDupWindow(t, js, 4*time.Second)
	o := &overlap{started: make(chan struct{}), hold: 4 * time.Second, failFirst: errorString("flaky")}
	s := fastSettings()
	s.MaxInFlight = 1
	s.NakDelays = []time.Duration{5 * time.Second}
	w := Worker{Name: "retry", Subjects: []string{"forge.>"}, Settings: s, Handler: o.handler()}
	start(t, js, w)
	start(t, js, w)

	seqA := publishCopy(t, js, envelope("flaky"))
	natstest.Eventually(t, 10*time.Second, "the first copy failed", func() bool {
		return len(resultsOf(results(t, js), "flaky", schemas.OutcomeFailed)) == 1
	})
	time.Sleep(4200 * time.Millisecond) // past the duplicate window, before the retry
	seqB := publishCopy(t, js, envelope("flaky"))

	natstest.Eventually(t, 30*time.Second, "both copies settled", func() bool {
		rs := results(t, js)
		return len(resultsOf(rs, "flaky", schemas.OutcomeSucceeded))+len(resultsOf(rs, "flaky", schemas.OutcomeDuplicate)) == 2
	})
	rs := results(t, js)
	if len(resultsOf(rs, "flaky", schemas.OutcomeSucceeded)) != 1 || len(resultsOf(rs, "flaky", schemas.OutcomeDuplicate)) != 1 {
		t.Errorf("results %+v, want one succeeded and one duplicate (copies at stream seq %d and %d)", rs, seqA, seqB)
	}
	if calls, most := o.counts(); calls != 2 || most != 1 {
		t.Errorf("handler ran %d times, %d at once; want twice (the failure, then one success), one at a time", calls, most)
	}
}

// TestKeyLocks: one job at a time holds an event id in a replica; the
// others wait for it, every waiter is woken when it is released, another id
// is never held up, and a waiter gives up when its context ends.
func TestKeyLocks(t *testing.T) {
	var l keyLocks
	ctx := context.Background()
	if err := l.lock(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := l.lock(ctx, "b"); err != nil {
		t.Fatalf("another key waits for a: %v", err)
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := l.lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of a held key = %v, want the context's end", err)
	}

	// Three waiters: each gets it in turn, never two at once.
	var holding, most atomic.Int32
	got := make(chan error, 3)
	for range 3 {
		go func() {
			err := l.lock(ctx, "a")
			if err == nil {
				n := holding.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(10 * time.Millisecond)
				holding.Add(-1)
				l.unlock("a")
			}
			got <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("a waiter went on while a was held: %v", err)
	default:
	}
	l.unlock("a")
	for range 3 {
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was never woken")
		}
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("%d jobs held a at once", m)
	}
	l.unlock("b")
	if len(l.held) != 0 {
		t.Fatalf("keys left held: %v", l.held)
	}
}
