package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/natstest"
)

// The hand-written record encoding writes what encoding/json writes, for
// every outcome a record can hold.
func TestIdemRecordJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 16, 5, 44, 123456789, time.UTC)
	for _, o := range []schemas.Outcome{schemas.OutcomeSucceeded, schemas.OutcomeSuperseded, schemas.OutcomeDenied, schemas.OutcomeDuplicate, outcomeRunning} {
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
	acks, err := newAcker(js.Conn(), publishTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(acks.close)
	s, err := newIdempotency(js, kv, acks, zerolog.Nop())
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
			l, err := s.get(lctx, id(i))
			rec, found := l.rec, l.found
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

// Running markers: a claim is conditional on the marker as a lookup saw
// it, an unclaim removes only the marker it wrote, and a lookup returns the
// record and the marker apart, batched or key by key.
func TestIdempotencyMarkers(t *testing.T) {
	_, _, js := broker(t)
	s, _ := newTestIdempotency(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	at := time.Now().UTC()
	mark := func(seq uint64) idemRecord { return idemRecord{Outcome: outcomeRunning, Seq: seq, Attempt: 1, At: at} }
	if err := s.record(ctx, "a", idemRecord{Outcome: schemas.OutcomeSucceeded, Seq: 1, Attempt: 1, At: at}); err != nil {
		t.Fatal(err)
	}
	revA, err := s.claim(ctx, "a", mark(2), false, 0)
	if err != nil {
		t.Fatalf("claim a: %v", err)
	}
	if _, err := s.claim(ctx, "a", mark(3), false, 0); !errors.Is(err, errClaimed) {
		t.Errorf("second claim of a as absent = %v, want errClaimed", err)
	}
	if _, err := s.claim(ctx, "a", mark(3), true, revA-1); !errors.Is(err, errClaimed) {
		t.Errorf("claim of a at a wrong revision = %v, want errClaimed", err)
	}
	revB, err := s.claim(ctx, "b", mark(4), false, 0)
	if err != nil {
		t.Fatalf("claim b: %v", err)
	}
	if revB, err = s.claim(ctx, "b", mark(5), true, revB); err != nil {
		t.Fatalf("claim b over its marker at its revision: %v", err)
	}
	if err := s.unclaim(ctx, "b", revB-1); err != nil {
		t.Fatalf("unclaim b at an old revision: %v", err)
	}
	check := func(named int64) {
		t.Helper()
		for _, perKey := range []bool{false, true} {
			s.mu.Lock()
			s.perKey = perKey
			s.mu.Unlock()
			l, err := s.get(ctx, "a")
			if err != nil || !l.found || l.rec.Seq != 1 || !l.marked || l.mark.Seq != 2 || l.mark.Outcome != outcomeRunning || l.markRev != revA {
				t.Errorf("perKey %v: a = %+v, %v; want record seq 1 and marker seq 2 at revision %d", perKey, l, err, revA)
			}
			if l, err := s.get(ctx, "b"); err != nil || l.found || !l.marked || l.mark.Seq != 5 {
				t.Errorf("perKey %v: b = %+v, %v; want its marker of seq 5, left by the unclaim at an old revision", perKey, l, err)
			}
			if l, err := s.get(ctx, "c"); err != nil || l.found || l.marked {
				t.Errorf("perKey %v: c = %+v, %v; want nothing", perKey, l, err)
			}
		}
		if n := s.named.Load(); n != named {
			t.Errorf("%d batches named their markers, want %d", n, named)
		}
	}
	check(0) // the markers come through the wildcard
	// More live markers than one answer takes through the wildcard: the
	// batch names its keys' markers instead.
	for i := range maxMarkersAnswered + 1 {
		if _, err := s.claim(ctx, fmt.Sprintf("other-%d", i), mark(100), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	check(3)
	if err := s.unclaim(ctx, "b", revB); err != nil {
		t.Fatalf("unclaim b: %v", err)
	}
	s.mu.Lock()
	s.perKey = false
	s.mu.Unlock()
	if l, err := s.get(ctx, "b"); err != nil || l.marked {
		t.Errorf("b after unclaim = %+v, %v; want no marker", l, err)
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
	l, err := s.get(ctx, "evt-1")
	if err == nil || l.found {
		t.Fatalf("get with the broker down = found %v, err %v; want an error", l.found, err)
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

// The lookups travel on a connection of their own, opened with the
// caller's options and closed when the runtime stops, and the caller's
// connection callbacks stay the caller's: its closed handler does not run
// when the runtime closes the lookups' connection.
func TestLookupsHaveTheirOwnConnection(t *testing.T) {
	srv := natstest.Run(t)
	var closed atomic.Int32
	nc, js := srv.Connect(t, nats.Name("owner"), nats.ClosedHandler(func(*nats.Conn) { closed.Add(1) }))
	natstest.Streams(t, js)
	var logs lockedBuffer
	rt, err := New(js, Worker{Name: "conns", Subjects: []string{"forge.>"}, Settings: fastSettings(),
		Handler: HandlerFunc(func(context.Context, *schemas.Envelope) (Report, error) { return Report{}, nil })},
		zerolog.New(&logs).Level(zerolog.WarnLevel), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- rt.Run(ctx) }()
	stop := func() error {
		cancel()
		return <-runErr
	}
	publish(t, js, envelope("evt-1"), "")
	natstest.Eventually(t, 10*time.Second, "evt-1 succeeded", func() bool {
		return len(resultsOf(results(t, js), "evt-1", schemas.OutcomeSucceeded)) == 1
	})
	lookups := func() *server.ConnInfo {
		for _, c := range srv.Conns() {
			if c.Name == "owner idempotency-lookups" {
				return c
			}
		}
		return nil
	}
	c := lookups()
	if c == nil {
		t.Fatalf("no connection named %q among %d", "owner idempotency-lookups", len(srv.Conns()))
	}
	// Its only subscription is the answers' inbox, and the event's lookup
	// went out on it.
	if len(c.Subs) != 1 || !strings.HasPrefix(c.Subs[0], "_INBOX.") || c.InMsgs < 1 {
		t.Errorf("lookups' connection: subscriptions %v, %d messages in; want one inbox and at least one lookup", c.Subs, c.InMsgs)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The server notices a client's close a moment after it.
	natstest.Eventually(t, 5*time.Second, "lookups' connection closed after the runtime stopped", func() bool {
		return lookups() == nil
	})
	if n := closed.Load(); n != 0 || !nc.IsConnected() {
		t.Errorf("owner's connection: closed handler ran %d times, connected %v; want 0 and true", n, nc.IsConnected())
	}
	// A clean stop closes the lookups' connection: nothing to warn of.
	if got := logs.String(); got != "" {
		t.Errorf("warnings logged by a clean run and stop:\n%s", got)
	}
}

// lockedBuffer is a log destination that goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// While the lookups' own connection is down, lookups take the replica's
// main connection and still answer, rather than fail every job.
func TestLookupsFallBackToTheMainConnection(t *testing.T) {
	_, _, js := broker(t)
	s, _ := newTestIdempotency(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.record(ctx, "done", idemRecord{Outcome: schemas.OutcomeSucceeded, Seq: 1, Attempt: 1, At: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	s.own.nc.Close()
	for id, want := range map[string]bool{"done": true, "new": false} {
		l, err := s.get(ctx, id)
		if err != nil || l.found != want {
			t.Errorf("get(%q) with the lookups' connection down = found %v, err %v; want found %v, no error", id, l.found, err, want)
		}
	}
}
