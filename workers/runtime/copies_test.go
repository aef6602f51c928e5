package runtime

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// TestYoungCopiesRunOnce: a second stored copy of an event (a replay, or a
// Gogs redelivery stored after the duplicate window) reaches another
// replica while the first copy still runs, both young: it does not run
// beside it, it waits and ends as a duplicate.
func TestYoungCopiesRunOnce(t *testing.T) {
	_, _, js := broker(t)
	o := &overlap{started: make(chan struct{}), hold: 2500 * time.Millisecond}
	s := fastSettings()
	s.MaxInFlight = 1 // the busy replica takes nothing more: the copy goes to the other
	w := Worker{Name: "young", Subjects: []string{"forge.>"}, Settings: s, Handler: o.handler()}
	start(t, js, w)
	start(t, js, w)

	publish(t, js, envelope("build"), "copy-a")
	select {
	case <-o.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first copy did not start")
	}
	publish(t, js, envelope("build"), "copy-b")

	natstest.Eventually(t, 20*time.Second, "a result for each copy", func() bool { return len(results(t, js)) == 2 })
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
}

func (o *overlap) handler() Handler {
	return HandlerFunc(func(ctx context.Context, _ *schemas.Envelope) (Report, error) {
		o.mu.Lock()
		o.calls++
		o.now++
		o.most = max(o.most, o.now)
		o.mu.Unlock()
		o.startedOnce.Do(func() { close(o.started) })
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

type errorString string

func (e errorString) Error() string { return string(e) }

// TestRunningKeys: a running key whose lease ran out (its replica died) is
// taken over; a live one, kept fresh by its holder, holds a copy back until
// the copy's job timeout, as a failure that says which delivery holds it.
func TestRunningKeys(t *testing.T) {
	_, _, js := broker(t)
	o := &overlap{started: make(chan struct{})}
	s := fastSettings() // AckWait, and so the lease, is 1 s
	s.JobTimeout = 2 * time.Second
	s.MaxDeliver = 1
	w := Worker{Name: "keys", Subjects: []string{"forge.>"}, Settings: s, Handler: o.handler()}
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
	running := keyState{State: stateRunning, Seq: 999999, Attempt: 1, At: time.Now().UTC()}

	// A dead delivery's key: written once, never refreshed.
	if _, err := kv.Create(ctx, IdempotencyKey("dead"), running.encode()); err != nil {
		t.Fatal(err)
	}
	publish(t, js, envelope("dead"), "")
	natstest.Eventually(t, 10*time.Second, "the dead delivery's key taken over", func() bool {
		return len(resultsOf(results(t, js), "dead", schemas.OutcomeSucceeded)) == 1
	})
	if k, ok := keyOf(t, js, w, "dead"); !ok || k.State != stateDone || k.Seq == 999999 {
		t.Errorf("key of dead = %+v, %v; want done by the new delivery", k, ok)
	}

	// A live delivery's key: refreshed well within the lease.
	rev, err := kv.Create(ctx, IdempotencyKey("held"), running.encode())
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	go func() {
		for hctx.Err() == nil {
			if n, err := kv.Update(hctx, IdempotencyKey("held"), running.encode(), rev); err == nil {
				rev = n
			}
			_ = sleepCtx(hctx, 200*time.Millisecond)
		}
	}()
	publish(t, js, envelope("held"), "")
	natstest.Eventually(t, 10*time.Second, "held copy dead-lettered", func() bool {
		return len(resultsOf(results(t, js), "held", schemas.OutcomeDeadLettered)) == 1
	})
	hcancel()
	dl := resultsOf(results(t, js), "held", schemas.OutcomeDeadLettered)[0]
	if !strings.Contains(dl.Error, "still running in the delivery of stream sequence 999999") {
		t.Errorf("error %q does not say which delivery holds the event", dl.Error)
	}
	if calls, _ := o.counts(); calls != 1 {
		t.Errorf("handler ran %d times, want once (for dead only)", calls)
	}
	if n := testutil.ToFloat64(rt.metrics.waits.WithLabelValues("keys")); n != 2 {
		t.Errorf("running_waits_total = %v, want 2 (dead's copy until the lease ran out, held's)", n)
	}
}

// TestLongJobHoldsItsKey: a job that runs for several leases keeps its key
// fresh with its heartbeat; a copy that arrives meanwhile waits all that
// time and ends as a duplicate. Then the key says done, by the first copy.
func TestLongJobHoldsItsKey(t *testing.T) {
	_, _, js := broker(t)
	o := &overlap{started: make(chan struct{}), hold: 3500 * time.Millisecond} // the lease is AckWait, 1 s
	s := fastSettings()
	s.MaxInFlight = 1
	w := Worker{Name: "long", Subjects: []string{"forge.>"}, Settings: s, Handler: o.handler()}
	start(t, js, w)
	start(t, js, w)
	_, first := publish(t, js, envelope("build"), "copy-a")
	select {
	case <-o.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first copy did not start")
	}
	publish(t, js, envelope("build"), "copy-b")
	natstest.Eventually(t, 20*time.Second, "a result for each copy", func() bool { return len(results(t, js)) == 2 })
	rs := results(t, js)
	if len(resultsOf(rs, "build", schemas.OutcomeSucceeded)) != 1 || len(resultsOf(rs, "build", schemas.OutcomeDuplicate)) != 1 {
		t.Errorf("results %+v, want one succeeded and one duplicate", rs)
	}
	if calls, most := o.counts(); calls != 1 || most != 1 {
		t.Errorf("handler ran %d times, %d at once; want once", calls, most)
	}
	if k, ok := keyOf(t, js, w, "build"); !ok || k.State != stateDone || k.Seq != first || k.Outcome != schemas.OutcomeSucceeded {
		t.Errorf("key = %+v, %v; want done, succeeded, by seq %d", k, ok, first)
	}
}

// TestFailureReleasesTheKey: a job that fails deletes its key, so a copy
// runs at once rather than wait out the lease, and a dead letter leaves no
// key, so its replay runs.
func TestFailureReleasesTheKey(t *testing.T) {
	_, _, js := broker(t)
	o := &overlap{started: make(chan struct{}), fail: Permanent(errorString("broken"))}
	w := Worker{Name: "fails", Subjects: []string{"forge.>"}, Settings: fastSettings(), Handler: o.handler()}
	start(t, js, w)
	publish(t, js, envelope("fails"), "copy-a")
	natstest.Eventually(t, 10*time.Second, "dead-lettered", func() bool {
		return len(resultsOf(results(t, js), "fails", schemas.OutcomeDeadLettered)) == 1
	})
	if k, ok := keyOf(t, js, w, "fails"); ok {
		t.Errorf("key after a dead letter = %+v, want none", k)
	}
	publish(t, js, envelope("fails"), "copy-b")
	natstest.Eventually(t, 10*time.Second, "the copy ran, at once", func() bool {
		return len(resultsOf(results(t, js), "fails", schemas.OutcomeDeadLettered)) == 2
	})
	if calls, _ := o.counts(); calls != 2 {
		t.Errorf("handler ran %d times, want twice", calls)
	}
}

// TestStoppedJobRestartsPromptly: a job cut short by a graceful stop is
// handed back (its key released, its message nak'ed with no delay), so
// another replica restarts it at once, long before AckWait or the lease
// would let it.
func TestStoppedJobRestartsPromptly(t *testing.T) {
	_, _, js := broker(t)
	s := fastSettings()
	s.AckWait = 30 * time.Second
	s.GracePeriod = 100 * time.Millisecond
	s.MaxInFlight = 1
	starts := make(chan time.Time, 4)
	w := Worker{Name: "handback", Subjects: []string{"forge.>"}, Settings: s,
		Handler: HandlerFunc(func(ctx context.Context, _ *schemas.Envelope) (Report, error) {
			starts <- time.Now()
			<-ctx.Done() // runs until the stop cancels it
			return Report{}, ctx.Err()
		})}
	stopA := start(t, js, w)
	publish(t, js, envelope("long"), "")
	select {
	case <-starts:
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not start")
	}
	start(t, js, w)
	stopped := time.Now()
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-starts:
		if took := at.Sub(stopped); took > 10*time.Second {
			t.Errorf("restarted %s after the stop, want well under AckWait (%s)", took, s.AckWait)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the job did not restart on the other replica within 15 s (AckWait %s)", s.AckWait)
	}
	if f := resultsOf(results(t, js), "long", schemas.OutcomeFailed); len(f) != 0 {
		t.Errorf("failed results from a stop: %+v", f)
	}
}
