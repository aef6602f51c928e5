// Package runtimetest is the contract suite every forgebus worker runs
// against a real JetStream: redelivery is idempotent, a permanent error
// reaches the DLQ, a retry can end in success. A worker's test calls [Run]
// with a [Case] that builds the worker and its events.
package runtimetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// Case describes the worker under test.
type Case struct {
	// Worker builds the worker (name, subjects, handler, policy) against
	// the test broker. Its Settings are replaced by [Settings] unless
	// KeepSettings is set.
	Worker       func(t *testing.T, js jetstream.JetStream) runtime.Worker
	KeepSettings bool
	// Event returns an event the worker handles with success, and the
	// subject to publish it on. id is a fresh event id; use it as the
	// envelope's ID.
	Event func(t *testing.T, id string) (subject string, ev schemas.Envelope)
	// Poison returns an event the worker's handler rejects with a
	// permanent error ([runtime.Permanent]).
	Poison func(t *testing.T, id string) (subject string, ev schemas.Envelope)
	// Effects, if set, returns how many times the effect of event id is
	// visible (1 once done, however often the handler ran).
	Effects func(t *testing.T, id string) int
	// Timeout bounds each wait; 20 s when zero.
	Timeout time.Duration
}

// Settings are the fast runtime settings the suite runs with: no
// in-process retry, 10 ms between deliveries, three deliveries.
func Settings() runtime.Settings {
	s := runtime.DefaultSettings()
	s.AckWait = time.Second
	s.MaxDeliver = 3
	s.Retry.MaxElapsed = 0
	s.NakDelays = []time.Duration{10 * time.Millisecond}
	s.GracePeriod = 2 * time.Second
	s.JobTimeout = 30 * time.Second
	return s
}

// Streams creates FORGE_EVENTS, FORGE_RESULTS and FORGE_DLQ as forgebus
// provisions them, for tests.
func Streams(t testing.TB, js jetstream.JetStream) { natstest.Streams(t, js) }

// errInjected is the transient failure the suite injects.
var errInjected = errors.New("runtimetest: injected transient failure")

// Run runs the contract suite on c.
func Run(t *testing.T, c Case) {
	if c.Timeout == 0 {
		c.Timeout = 20 * time.Second
	}
	t.Run("redelivery is idempotent", func(t *testing.T) {
		e := setup(t, c, noFault)
		subject, ev := c.Event(t, "idem-1")
		e.publish(subject, ev, "first")
		e.waitOutcome(ev.ID, schemas.OutcomeSucceeded, 1)
		e.publish(subject, ev, "again") // the same event, redelivered by Gogs or replayed
		e.waitOutcome(ev.ID, schemas.OutcomeDuplicate, 1)
		if n := e.calls(ev.ID); n != 1 {
			t.Errorf("handler ran %d times for one event, want 1", n)
		}
		if c.Effects != nil {
			if n := c.Effects(t, ev.ID); n != 1 {
				t.Errorf("effect visible %d times, want 1", n)
			}
		}
	})
	t.Run("redelivery after a lost ack", func(t *testing.T) {
		// The first run does the effect, then its replica "dies" before
		// the ack: the handler must do it again without harm.
		e := setup(t, c, failAfter)
		subject, ev := c.Event(t, "idem-2")
		e.publish(subject, ev, "")
		r := e.waitOutcome(ev.ID, schemas.OutcomeSucceeded, 1)[0]
		if r.Attempt != 2 {
			t.Errorf("succeeded at attempt %d, want 2", r.Attempt)
		}
		if c.Effects != nil {
			if n := c.Effects(t, ev.ID); n != 1 {
				t.Errorf("effect visible %d times after a redelivery, want 1", n)
			}
		}
	})
	t.Run("permanent error reaches the DLQ", func(t *testing.T) {
		e := setup(t, c, noFault)
		subject, ev := c.Poison(t, "poison-1")
		e.publish(subject, ev, "")
		r := e.waitOutcome(ev.ID, schemas.OutcomeDeadLettered, 1)[0]
		if r.Attempt != 1 || r.Error == "" {
			t.Errorf("dead_lettered result = %+v, want attempt 1 with the error", r)
		}
		natstest.Eventually(t, c.Timeout, "dead letter", func() bool {
			l, err := runtime.ListDeadLetters(context.Background(), e.js, e.worker)
			return err == nil && len(l) == 1 && l[0].Letter.EventID == ev.ID && l[0].Letter.Permanent && l[0].Letter.Attempts == 1
		})
	})
	t.Run("retry can end in success", func(t *testing.T) {
		e := setup(t, c, failBefore)
		subject, ev := c.Event(t, "retry-1")
		e.publish(subject, ev, "")
		r := e.waitOutcome(ev.ID, schemas.OutcomeSucceeded, 1)[0]
		if r.Attempt != 2 {
			t.Errorf("succeeded at attempt %d, want 2", r.Attempt)
		}
		if f := e.outcomes(ev.ID, schemas.OutcomeFailed); len(f) != 1 || f[0].Attempt != 1 {
			t.Errorf("failed results = %+v, want one at attempt 1", f)
		}
	})
}

// env is one sub-test's broker and running worker.
type env struct {
	t      *testing.T
	c      Case
	js     jetstream.JetStream
	worker string
	mu     sync.Mutex
	n      map[string]int
}

// fault is what the suite does to the handler's first call of an event.
type fault int

const (
	noFault fault = iota
	// failBefore fails the first call without running the handler.
	failBefore
	// failAfter runs the handler, then fails the call as if the replica
	// had died before its ack.
	failAfter
)

// setup starts a broker and the worker, its handler wrapped to count
// calls and inject f.
func setup(t *testing.T, c Case, f fault) *env {
	t.Helper()
	_, js := natstest.Run(t).Connect(t)
	Streams(t, js)
	e := &env{t: t, c: c, js: js, n: map[string]int{}}
	w := c.Worker(t, js)
	if !c.KeepSettings {
		w.Settings = Settings()
	}
	e.worker = w.Name
	inner := w.Handler
	w.Handler = runtime.HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
		e.mu.Lock()
		e.n[ev.ID]++
		first := e.n[ev.ID] == 1
		e.mu.Unlock()
		if first && f == failBefore {
			return runtime.Report{}, errInjected
		}
		rep, err := inner.Handle(ctx, ev)
		if first && f == failAfter && err == nil {
			return runtime.Report{}, errInjected
		}
		return rep, err
	})
	rt, err := runtime.New(js, w, zerolog.Nop(), nil)
	if err != nil {
		t.Fatalf("runtimetest: New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runtimetest: Run: %v", err)
		}
	})
	return e
}

func (e *env) calls(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[id]
}

func (e *env) publish(subject string, ev schemas.Envelope, msgID string) {
	e.t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.Publish(ctx, subject, data, jetstream.WithMsgID(ev.ID+"/"+msgID)); err != nil {
		e.t.Fatalf("runtimetest: publish on %s: %v", subject, err)
	}
}

// outcomes reads this worker's results for id with outcome o.
func (e *env) outcomes(id string, o schemas.Outcome) []schemas.Result {
	e.t.Helper()
	var out []schemas.Result
	for _, m := range natstest.StreamMsgs(e.t, e.js, schemas.StreamResults) {
		var r schemas.Result
		if json.Unmarshal(m.Data, &r) == nil && r.Worker == e.worker && r.EventID == id && r.Outcome == o {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) waitOutcome(id string, o schemas.Outcome, n int) []schemas.Result {
	e.t.Helper()
	var got []schemas.Result
	natstest.Eventually(e.t, e.c.Timeout, fmt.Sprintf("%d %s result(s) for %s", n, o, id), func() bool {
		got = e.outcomes(id, o)
		return len(got) >= n
	})
	if len(got) != n {
		e.t.Errorf("%d %s results for %s, want %d", len(got), o, id, n)
	}
	return got
}
