package runtime

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

var errFlaky = errors.New("flaky")

func TestRetryEndsInSuccess(t *testing.T) {
	tests := []struct {
		name        string
		inProcess   bool
		wantAttempt int
		wantFailed  int
	}{
		// Every failure is a JetStream redelivery: the attempt counts them.
		{name: "redelivery", inProcess: false, wantAttempt: 3, wantFailed: 2},
		// The in-process retry absorbs both failures in delivery 1.
		{name: "in process", inProcess: true, wantAttempt: 1, wantFailed: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, js := broker(t)
			calls := newCounter()
			s := fastSettings()
			if tc.inProcess {
				s.Retry = RetrySettings{Initial: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, Multiplier: 2, MaxElapsed: 5 * time.Second}
			}
			start(t, js, Worker{Name: "flaky", Subjects: []string{"forge.>"}, Settings: s,
				Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
					if calls.inc(ev.ID) <= 2 {
						return Report{}, errFlaky
					}
					return Report{Detail: schemas.Detail{"seq": "x"}}, nil
				})})
			publish(t, js, envelope("ev-1"), "")
			natstest.Eventually(t, 10*time.Second, "a succeeded result", func() bool {
				return len(resultsOf(results(t, js), "ev-1", schemas.OutcomeSucceeded)) > 0
			})
			rs := results(t, js)
			ok := resultsOf(rs, "ev-1", schemas.OutcomeSucceeded)
			if len(ok) != 1 || ok[0].Attempt != tc.wantAttempt || ok[0].Detail["seq"] != "x" {
				t.Fatalf("succeeded results = %+v, want one with attempt %d", ok, tc.wantAttempt)
			}
			failed := resultsOf(rs, "ev-1", schemas.OutcomeFailed)
			if len(failed) != tc.wantFailed {
				t.Fatalf("failed results = %d, want %d", len(failed), tc.wantFailed)
			}
			for i, f := range failed {
				if f.Attempt != i+1 || !strings.Contains(f.Error, "flaky") {
					t.Errorf("failed result %d = attempt %d error %q", i, f.Attempt, f.Error)
				}
			}
			if got := calls.get("ev-1"); got != 3 {
				t.Errorf("handler calls = %d, want 3", got)
			}
			if n := streamCount(t, js, schemas.StreamDLQ); n != 0 {
				t.Errorf("dlq has %d messages", n)
			}
			// Each failure released the key; the success wrote it done.
			if k, ok := keyOf(t, js, Worker{Name: "flaky"}, "ev-1"); !ok || k.State != stateDone || k.Attempt != tc.wantAttempt {
				t.Errorf("key = %+v, %v; want done by attempt %d", k, ok, tc.wantAttempt)
			}
		})
	}
}

func TestDeadLetters(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		wantAttempts  int
		wantPermanent bool
		wantFailed    int
	}{
		{name: "permanent at once", err: Permanent(errors.New("bad input")), wantAttempts: 1, wantPermanent: true},
		{name: "always failing", err: errors.New("down"), wantAttempts: 3, wantFailed: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, js := broker(t)
			calls := newCounter()
			s := fastSettings()
			s.MaxDeliver = 3
			start(t, js, Worker{Name: "dead", Subjects: []string{"forge.>"}, Settings: s,
				Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
					calls.inc(ev.ID)
					return Report{}, tc.err
				})})
			data, _ := publish(t, js, envelope("ev-d"), "")
			natstest.Eventually(t, 10*time.Second, "a dead letter", func() bool {
				return streamCount(t, js, schemas.StreamDLQ) == 1 &&
					len(resultsOf(results(t, js), "ev-d", schemas.OutcomeDeadLettered)) == 1
			})
			dl := deadLetters(t, js)[0]
			if dl.Worker != "dead" || dl.EventID != "ev-d" || dl.Attempts != tc.wantAttempts ||
				dl.Permanent != tc.wantPermanent || dl.EventSubject != testSubject || !bytes.Equal(dl.Event, data) ||
				!strings.Contains(dl.Error, tc.err.Error()) || dl.DeadAt.Before(dl.FirstTried) {
				t.Errorf("dead letter = %+v", dl)
			}
			rs := results(t, js)
			if d := resultsOf(rs, "ev-d", schemas.OutcomeDeadLettered); d[0].Attempt != tc.wantAttempts {
				t.Errorf("dead_lettered attempt = %d, want %d", d[0].Attempt, tc.wantAttempts)
			}
			if f := resultsOf(rs, "ev-d", schemas.OutcomeFailed); len(f) != tc.wantFailed {
				t.Errorf("failed results = %d, want %d", len(f), tc.wantFailed)
			}
			if got := calls.get("ev-d"); got != tc.wantAttempts {
				t.Errorf("handler calls = %d, want %d", got, tc.wantAttempts)
			}
			validateOutcomes(t, js)
			// The original is acked: nothing is left to deliver.
			natstest.Eventually(t, 5*time.Second, "consumer drained", func() bool {
				info, err := consumerInfo(js, "dead")
				return err == nil && info.NumAckPending == 0 && info.NumPending == 0
			})
			// No key outlives the dead letter: a replay runs.
			if k, ok := keyOf(t, js, Worker{Name: "dead"}, "ev-d"); ok {
				t.Errorf("key after the dead letter = %+v, want none", k)
			}
		})
	}
}

func TestPanicIsAFailureWithStack(t *testing.T) {
	_, _, js := broker(t)
	s := fastSettings()
	s.MaxDeliver = 1
	start(t, js, Worker{Name: "panicky", Subjects: []string{"forge.>"}, Settings: s,
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			var p *Report
			_ = p.Detail // nil pointer: panics
			return Report{}, nil
		})})
	publish(t, js, envelope("ev-p"), "")
	natstest.Eventually(t, 10*time.Second, "dead letter of the panic", func() bool {
		return len(resultsOf(results(t, js), "ev-p", schemas.OutcomeDeadLettered)) == 1
	})
	r := resultsOf(results(t, js), "ev-p", schemas.OutcomeDeadLettered)[0]
	if !strings.Contains(r.Error, "panicked") || !strings.Contains(r.Error, "runtime_test.go") {
		t.Errorf("result error has no panic stack: %q", r.Error)
	}
}

func TestPolicyAndDuplicates(t *testing.T) {
	_, _, js := broker(t)
	calls := newCounter()
	s := fastSettings()
	start(t, js, Worker{Name: "pol", Subjects: []string{"forge.>"}, Settings: s,
		Policy: Policy{DenySenders: []string{"bot*"}, Refs: []string{"main"}},
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			calls.inc(ev.ID)
			if ev.ID == "old" {
				return Report{Outcome: schemas.OutcomeSuperseded}, nil
			}
			return Report{}, nil
		})})
	publish(t, js, envelope("bot", withSender("Bot-7")), "")
	publish(t, js, envelope("branch", withRef("refs/heads/dev")), "")
	publish(t, js, envelope("ok"), "")
	publish(t, js, envelope("old"), "")
	// The same events again under new delivery ids: redelivered or replayed.
	publish(t, js, envelope("ok"), "ok-again")
	publish(t, js, envelope("old"), "old-again")
	natstest.Eventually(t, 10*time.Second, "six results", func() bool { return len(results(t, js)) == 6 })
	rs := results(t, js)
	want := []struct {
		id      string
		outcome schemas.Outcome
		rule    string
		n       int
	}{
		{"bot", schemas.OutcomeDenied, "deny_senders: bot*", 1},
		{"branch", schemas.OutcomeDenied, "refs", 1},
		{"ok", schemas.OutcomeSucceeded, "", 1},
		{"ok", schemas.OutcomeDuplicate, "", 1},
		{"old", schemas.OutcomeSuperseded, "", 1},
		{"old", schemas.OutcomeDuplicate, "", 1},
	}
	for _, w := range want {
		got := resultsOf(rs, w.id, w.outcome)
		if len(got) != w.n || got[0].Rule != w.rule {
			t.Errorf("%s %s: %+v, want %d with rule %q", w.id, w.outcome, got, w.n, w.rule)
		}
	}
	validateOutcomes(t, js)
	for id, n := range map[string]int{"bot": 0, "branch": 0, "ok": 1, "old": 1} {
		if got := calls.get(id); got != n {
			t.Errorf("handler calls for %s = %d, want %d", id, got, n)
		}
	}
}

func TestReplay(t *testing.T) {
	_, _, js := broker(t)
	var fixed atomic.Bool
	calls := newCounter()
	others := newCounter()
	s := fastSettings()
	start(t, js, Worker{Name: "docs", Subjects: []string{"forge.>"}, Settings: s,
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			calls.inc(ev.ID)
			if !fixed.Load() {
				return Report{}, Permanent(errors.New("bad template"))
			}
			return Report{}, nil
		})})
	// Another worker on the same events: a replay for docs is not its.
	start(t, js, Worker{Name: "models", Subjects: []string{"forge.>"}, Settings: s,
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			others.inc(ev.ID)
			return Report{}, nil
		})})
	ctx := context.Background()
	publish(t, js, envelope("a"), "")
	publish(t, js, envelope("b"), "")
	natstest.Eventually(t, 10*time.Second, "two dead letters", func() bool {
		l, err := ListDeadLetters(ctx, js, "docs")
		return err == nil && len(l) == 2
	})
	if l, err := ListDeadLetters(ctx, js, "models"); err != nil || len(l) != 0 {
		t.Fatalf("models dead letters = %v, %v", l, err)
	}
	list, err := ListDeadLetters(ctx, js, "")
	if err != nil || len(list) != 2 || list[0].Seq >= list[1].Seq {
		t.Fatalf("ListDeadLetters = %+v, %v; want 2, oldest first", list, err)
	}
	ids := map[string]bool{}
	for _, e := range list {
		ids[e.Letter.EventID] = true
		if e.Letter.Attempts != 1 || e.Err != "" || e.Letter.Worker != "docs" {
			t.Errorf("dead letter %+v", e)
		}
	}
	if !ids["a"] || !ids["b"] {
		t.Fatalf("dead letters for %v, want a and b", ids)
	}

	// The fault is fixed; "b" comes again from Gogs and succeeds.
	fixed.Store(true)
	publish(t, js, envelope("b"), "b-redelivered")
	natstest.Eventually(t, 10*time.Second, "b succeeded", func() bool {
		return len(resultsOf(byWorker(results(t, js), "docs"), "b", schemas.OutcomeSucceeded)) == 1
	})
	for _, e := range list {
		res, err := Replay(ctx, js, e.Seq)
		if err != nil || res.Worker != "docs" || res.EventID != e.Letter.EventID || res.EventSeq == 0 {
			t.Fatalf("Replay(%d) = %+v, %v", e.Seq, res, err)
		}
	}
	natstest.Eventually(t, 10*time.Second, "replays handled", func() bool {
		rs := results(t, js)
		return len(resultsOf(byWorker(rs, "docs"), "a", schemas.OutcomeSucceeded)) == 1 &&
			len(resultsOf(byWorker(rs, "docs"), "b", schemas.OutcomeDuplicate)) == 1
	})
	rs := results(t, js)
	if r := resultsOf(byWorker(rs, "docs"), "a", schemas.OutcomeSucceeded)[0]; r.Attempt != 1 {
		t.Errorf("replayed a = %+v, want attempt 1 by docs", r)
	}
	if n := streamCount(t, js, schemas.StreamDLQ); n != 0 {
		t.Errorf("dlq has %d messages after replay", n)
	}
	if _, err := Replay(ctx, js, list[0].Seq); !errors.Is(err, ErrNotDeadLetter) {
		t.Errorf("second Replay = %v, want ErrNotDeadLetter", err)
	}
	// models saw a, b and b's redelivery (a duplicate), never the replays.
	for _, r := range rs {
		if r.Worker == "models" && r.Outcome != schemas.OutcomeSucceeded && r.Outcome != schemas.OutcomeDuplicate {
			t.Errorf("models result %+v", r)
		}
	}
	if got := len(resultsOf(rs, "", "")); got != 0 {
		t.Errorf("results with no outcome: %d", got)
	}
	modelsResults := 0
	for _, r := range rs {
		if r.Worker == "models" {
			modelsResults++
		}
	}
	if modelsResults != 3 || others.get("a") != 1 || others.get("b") != 1 {
		t.Errorf("models: %d results, calls a=%d b=%d; want 3 results, one call each", modelsResults, others.get("a"), others.get("b"))
	}
}

func TestLongJobKeepsItsMessage(t *testing.T) {
	_, _, js := broker(t)
	calls := newCounter()
	s := fastSettings() // AckWait 1s
	h := HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
		calls.inc(ev.ID)
		select {
		case <-time.After(3 * time.Second):
			return Report{}, nil
		case <-ctx.Done():
			return Report{}, ctx.Err()
		}
	})
	// Two replicas: a message whose ack timer ran out would go to the other.
	start(t, js, Worker{Name: "long", Subjects: []string{"forge.>"}, Settings: s, Handler: h})
	start(t, js, Worker{Name: "long", Subjects: []string{"forge.>"}, Settings: s, Handler: h})
	publish(t, js, envelope("slow"), "")
	natstest.Eventually(t, 10*time.Second, "slow job done", func() bool {
		return len(resultsOf(results(t, js), "slow", schemas.OutcomeSucceeded)) == 1
	})
	if r := resultsOf(results(t, js), "slow", schemas.OutcomeSucceeded)[0]; r.Attempt != 1 || r.DurationMS < 3000 {
		t.Errorf("result = %+v, want attempt 1 after 3 s", r)
	}
	if n := calls.get("slow"); n != 1 {
		t.Errorf("handler calls = %d, want 1", n)
	}
	// Not redelivered at all: a redelivery to the same replica would wait
	// for the event id's lock and end as a duplicate. One that happened
	// did so an AckWait into the job, long before it ended.
	info, err := consumerInfo(js, "long")
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 1 {
		t.Errorf("%d deliveries of one message, want 1", info.Delivered.Consumer)
	}
}

func TestStopDrainsInFlight(t *testing.T) {
	tests := []struct {
		name  string
		grace time.Duration
		// block: the handler waits for its context, longer than any grace.
		block bool
		// prefetch: short jobs, so the replica pulls ahead.
		prefetch bool
	}{
		{name: "jobs finish within grace", grace: 5 * time.Second},
		{name: "grace over: cancelled and nak'ed", grace: 200 * time.Millisecond, block: true},
		{name: "prefetch: jobs finish within grace", grace: 5 * time.Second, prefetch: true},
		{name: "prefetch: grace over", grace: 200 * time.Millisecond, block: true, prefetch: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, js := broker(t)
			effects := newCounter()
			var started atomic.Int32
			var blocking atomic.Bool
			blocking.Store(tc.block)
			s := fastSettings()
			s.MaxInFlight = 4
			s.GracePeriod = tc.grace
			if tc.prefetch {
				s.AckWait, s.JobTimeout = 4*time.Second, 2*time.Second
			}
			if s.prefetch() != tc.prefetch {
				t.Fatalf("prefetch = %v", s.prefetch())
			}
			w := Worker{Name: "drain", Subjects: []string{"forge.>"}, Settings: s,
				Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
					started.Add(1)
					wait := 300 * time.Millisecond
					if blocking.Load() {
						wait = time.Hour
					}
					select {
					case <-time.After(wait):
					case <-ctx.Done():
						return Report{}, ctx.Err()
					}
					effects.inc(ev.ID)
					return Report{}, nil
				})}
			stop := start(t, js, w)
			ids := []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"}
			for _, id := range ids {
				publish(t, js, envelope(id), "")
			}
			natstest.Eventually(t, 5*time.Second, "4 jobs started", func() bool { return started.Load() >= 4 })
			t0 := time.Now()
			if err := stop(); err != nil {
				t.Fatalf("Run after stop = %v", err)
			}
			if el := time.Since(t0); el > tc.grace+4*time.Second {
				t.Errorf("stop took %s", el)
			}
			done := len(resultsOf(results(t, js), "", schemas.OutcomeSucceeded))
			if tc.block && done != 0 {
				t.Errorf("%d jobs finished, want 0", done)
			}
			if !tc.block && done < 4 {
				t.Errorf("%d jobs finished within the grace period, want the 4 running at least", done)
			}
			if n := len(resultsOf(results(t, js), "", schemas.OutcomeFailed)); n != 0 {
				t.Errorf("%d failed results from a stop", n)
			}
			// A new replica does the rest, each exactly once.
			blocking.Store(false)
			start(t, js, w)
			natstest.Eventually(t, 15*time.Second, "all jobs done", func() bool {
				return len(resultsOf(results(t, js), "", schemas.OutcomeSucceeded)) == len(ids)
			})
			for _, id := range ids {
				if n := effects.get(id); n != 1 {
					t.Errorf("effect of %s happened %d times", id, n)
				}
			}
		})
	}
}

func TestBadEnvelopeIsDeadLettered(t *testing.T) {
	_, _, js := broker(t)
	calls := newCounter()
	start(t, js, Worker{Name: "strict", Subjects: []string{"forge.>"}, Settings: fastSettings(),
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			calls.inc(ev.ID)
			return Report{}, nil
		})})
	ctx := context.Background()
	raw := []byte("not json \x00\xff")
	if _, err := js.Publish(ctx, testSubject, raw, jetstream.WithMsgID("raw-1")); err != nil {
		t.Fatal(err)
	}
	var list []DeadLetterEntry
	natstest.Eventually(t, 10*time.Second, "dead letter", func() bool {
		var err error
		list, err = ListDeadLetters(ctx, js, "strict")
		return err == nil && len(list) == 1
	})
	dl := list[0].Letter
	if dl.EventID != "raw-1" || !dl.Permanent || dl.Attempts != 1 || !strings.Contains(dl.Error, ErrBadEnvelope.Error()) {
		t.Errorf("dead letter = %+v", dl)
	}
	if calls.get("raw-1") != 0 {
		t.Error("handler ran on a bad envelope")
	}
	validateOutcomes(t, js)
	// A replay sends the very bytes back.
	res, err := Replay(ctx, js, list[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, schemas.StreamEvents)
	m, err := st.GetMsg(ctx, res.EventSeq)
	if err != nil || !bytes.Equal(m.Data, raw) || m.Header.Get(ReplayHeader) != "strict" {
		t.Errorf("replayed event = %q %v, %v", m.Data, m.Header, err)
	}
}

func TestSurvivesBrokerRestart(t *testing.T) {
	for _, prefetch := range []bool{false, true} {
		t.Run(map[bool]string{false: "fetch", true: "prefetch"}[prefetch], func(t *testing.T) {
			srv, _, js := broker(t)
			s := fastSettings()
			if prefetch {
				s.AckWait, s.JobTimeout = 4*time.Second, 2*time.Second
			}
			start(t, js, Worker{Name: "steady", Subjects: []string{"forge.>"}, Settings: s,
				Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) { return Report{}, nil })})
			publish(t, js, envelope("before"), "")
			natstest.Eventually(t, 10*time.Second, "before done", func() bool {
				return len(resultsOf(results(t, js), "before", schemas.OutcomeSucceeded)) == 1
			})
			srv.Restart()
			natstest.Eventually(t, 10*time.Second, "publish after restart", func() bool {
				data, _ := jsonMarshal(envelope("after"))
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := js.Publish(ctx, testSubject, data, jetstream.WithMsgID("after"))
				return err == nil
			})
			natstest.Eventually(t, 20*time.Second, "after done", func() bool {
				return len(resultsOf(results(t, js), "after", schemas.OutcomeSucceeded)) == 1
			})
		})
	}
}

// TestResultPublishFailsAfterEffect: the effect is done and recorded, but
// publishing its result fails (FORGE_RESULTS is gone for a moment, as when
// its leader dies), so the message is nak'ed. The redelivery must publish
// the recorded result, once and as attempt 1, and not run the effect again:
// the event ends with exactly one succeeded result and no duplicate.
func TestResultPublishFailsAfterEffect(t *testing.T) {
	_, _, js := broker(t)
	calls := newCounter()
	s := fastSettings()
	// The stream comes back once the runtime has given up publishing the
	// result and nak'ed, well before the redelivery.
	s.NakDelays = []time.Duration{2 * time.Second}
	rt, err := New(js, Worker{Name: "recorded", Subjects: []string{"forge.>"}, Settings: s,
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			if calls.inc(ev.ID) == 1 {
				if err := js.DeleteStream(ctx, schemas.StreamResults); err != nil {
					return Report{}, err
				}
			}
			return Report{}, nil
		})}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); <-done }()
	go func() {
		for testutil.ToFloat64(rt.metrics.jobs.WithLabelValues("recorded", "publish_error")) == 0 {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // polls a condition
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: schemas.StreamResults, Subjects: schemas.ResultsSubjects}); err != nil {
			t.Errorf("recreate results stream: %v", err)
		}
	}()
	publish(t, js, envelope("ev-r"), "")
	natstest.Eventually(t, 10*time.Second, "a result for ev-r", func() bool {
		info, err := js.Stream(context.Background(), schemas.StreamResults)
		return err == nil && info.CachedInfo().State.Msgs > 0
	})
	natstest.Eventually(t, 10*time.Second, "the consumer settled every delivery", func() bool {
		info, err := consumerInfo(js, "recorded")
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
	rs := results(t, js)
	ok := resultsOf(rs, "ev-r", schemas.OutcomeSucceeded)
	if len(ok) != 1 || ok[0].Attempt != 1 {
		t.Fatalf("succeeded results = %+v, want one, attempt 1", ok)
	}
	if dup := resultsOf(rs, "ev-r", schemas.OutcomeDuplicate); len(dup) != 0 {
		t.Errorf("duplicate results = %+v, want none", dup)
	}
	if got := calls.get("ev-r"); got != 1 {
		t.Errorf("handler calls = %d, want 1 (the effect runs once)", got)
	}
	if n := streamCount(t, js, schemas.StreamDLQ); n != 0 {
		t.Errorf("dlq has %d messages", n)
	}
	if k, ok := keyOf(t, js, Worker{Name: "recorded"}, "ev-r"); !ok || k.State != stateDone || k.Attempt != 1 {
		t.Errorf("key = %+v, %v; want done by attempt 1", k, ok)
	}
}

// The idempotency record cannot be stored after the effect (its bucket is
// gone for longer than the record's retries): the job still ends with one
// succeeded result and is acked, not run again, and the failure is counted.
func TestRecordFailsAfterEffect(t *testing.T) {
	_, _, js := broker(t)
	calls := newCounter()
	reg := prometheus.NewRegistry()
	w := Worker{Name: "unrecorded", Subjects: []string{"forge.>"}, Settings: fastSettings(),
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			if calls.inc(ev.ID) == 1 {
				if err := js.DeleteKeyValue(ctx, IdempotencyBucketPrefix+"unrecorded"); err != nil {
					return Report{}, err
				}
			}
			return Report{}, nil
		})}
	rt, err := New(js, w, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); <-done }()
	publish(t, js, envelope("ev-u"), "")
	natstest.Eventually(t, 15*time.Second, "the consumer settled every delivery", func() bool {
		info, err := consumerInfo(js, "unrecorded")
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Consumer == 1
	})
	if got := calls.get("ev-u"); got != 1 {
		t.Errorf("handler calls = %d, want 1 (the effect runs once)", got)
	}
	if ok := resultsOf(results(t, js), "ev-u", schemas.OutcomeSucceeded); len(ok) != 1 {
		t.Errorf("succeeded results = %+v, want one", ok)
	}
	if n, err := testutil.GatherAndCount(reg, "forgebus_worker_idempotency_record_errors_total"); err != nil || n != 1 {
		t.Fatalf("record error series = %d, %v", n, err)
	}
	if got := testutil.ToFloat64(rt.metrics.recordErrors.WithLabelValues("unrecorded")); got != 1 {
		t.Errorf("idempotency_record_errors_total = %v, want 1", got)
	}
}
