package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// benchFigures are one side of a worker bench round.
type benchFigures struct {
	Messages int
	Elapsed  time.Duration
	// PerSecond is Messages over Elapsed (first message in hand to last
	// settled).
	PerSecond float64
	// P50 and P99: a message in hand to settled.
	P50, P99 time.Duration
	// CPUPerMsg is the process's CPU time (user and system, the embedded
	// broker's included) over the side's run, per message: less swayed by
	// other load on the machine than the rate.
	CPUPerMsg time.Duration
}

// workerRound is one round: the runtime and its two reference loops, each
// on n events of its own, at the same concurrency and on one connection.
type workerRound struct {
	InFlight int
	// Runtime: a no-op handler run by workers/runtime, everything around it.
	Runtime benchFigures
	// Fair: a loop doing the broker and encoding work the runtime must do
	// (decode the envelope, one idempotency write, encode the result,
	// publish it and wait for its ack, ack the event).
	Fair benchFigures
	// Bare: pull, publish the event's bytes as the result with ack, ack.
	Bare benchFigures
}

// Ratio is the runtime's rate over the fair ceiling's.
func (r workerRound) Ratio() float64 { return ratio(r.Runtime, r.Fair) }

// RatioBare is the runtime's rate over the bare loop's.
func (r workerRound) RatioBare() float64 { return ratio(r.Runtime, r.Bare) }

func ratio(a, b benchFigures) float64 {
	if b.PerSecond == 0 {
		return 0
	}
	return a.PerSecond / b.PerSecond
}

// runWorkerRound publishes n events per side and measures the three sides
// in turn. The streams must exist; what each side leaves is removed.
func runWorkerRound(ctx context.Context, js jetstream.JetStream, n, inFlight int) (workerRound, error) {
	res := workerRound{InFlight: inFlight}
	if n < 1 || inFlight < 1 {
		return res, fmt.Errorf("worker bench: n %d and in-flight %d must be at least 1", n, inFlight)
	}
	tag := "bench-" + nuid.Next()
	var err error
	if res.Runtime, err = withCPU(n, func() (benchFigures, error) { return benchRuntime(ctx, js, tag+"-rt", n, inFlight) }); err != nil {
		return res, err
	}
	if res.Fair, err = withCPU(n, func() (benchFigures, error) { return benchLoop(ctx, js, tag+"-fair", n, inFlight, true) }); err != nil {
		return res, err
	}
	if res.Bare, err = withCPU(n, func() (benchFigures, error) { return benchLoop(ctx, js, tag+"-bare", n, inFlight, false) }); err != nil {
		return res, err
	}
	return res, nil
}

// withCPU runs side and adds the process CPU time it took per message
// (publishing its events and cleaning up included, alike for every side).
func withCPU(n int, side func() (benchFigures, error)) (benchFigures, error) {
	before := cpuTime()
	f, err := side()
	if n > 0 {
		f.CPUPerMsg = (cpuTime() - before) / time.Duration(n)
	}
	return f, err
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchEvents publishes n push envelopes on a subject of their own.
func benchEvents(ctx context.Context, js jetstream.JetStream, name string, n int) (string, error) {
	subject := schemas.EventSubject(name, schemas.EventPush, "bench", "repo")
	for i := range n {
		ev := schemas.Envelope{
			SpecVersion: schemas.SpecVersion, ID: fmt.Sprintf("%s-%d", name, i), Source: "https://git.example.com",
			Type: schemas.TypePrefix + schemas.EventPush, Subject: "refs/heads/main", Time: time.Now().UTC(),
			DataContentType: "application/json", DataSchema: schemas.SchemaURI(schemas.EventPush),
			ForgeInstance: name, Repo: "bench/repo", Sender: "bench", BodySHA256: "00",
			Data: json.RawMessage(`{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"1111111111111111111111111111111111111111","repository":{"full_name":"bench/repo"}}`),
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return "", err
		}
		for {
			_, err := js.PublishAsync(subject, data, jetstream.WithMsgID(ev.ID))
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				// The broker is behind: let it catch up.
				select {
				case <-js.PublishAsyncComplete():
				case <-ctx.Done():
					return "", ctx.Err()
				}
				continue
			}
			if err != nil {
				return "", fmt.Errorf("worker bench: publish: %w", err)
			}
			break
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return subject, nil
}

// latencies collects per-message times.
type latencies struct {
	mu    sync.Mutex
	d     []time.Duration
	first time.Time
	last  time.Time
	n     int
	done  chan struct{}
	dump  io.Writer // where stuck writes the goroutines
}

func newLatencies(n int) *latencies {
	return &latencies{d: make([]time.Duration, 0, n), n: n, done: make(chan struct{}), dump: os.Stderr}
}

// add records one message, in hand at start and settled now.
func (l *latencies) add(start time.Time) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == l.n {
		return
	}
	if l.first.IsZero() || start.Before(l.first) {
		l.first = start
	}
	l.d = append(l.d, now.Sub(start))
	l.last = now
	if len(l.d) == l.n {
		close(l.done)
	}
}

// benchStall is how long a side may go without settling a message before
// it is called stuck.
const benchStall = 30 * time.Second

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// stuck is closed when stall passes with no message added before all n are
// in; the goroutines' stacks then go to l.dump.
func (l *latencies) stuck(ctx context.Context, stall time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		t := time.NewTicker(stall / 10)
		defer t.Stop()
		seen, since := -1, time.Now()
		for {
			select {
			case <-l.done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				if c := l.count(); c != seen {
					seen, since = c, now
				} else if now.Sub(since) >= stall {
					_ = pprof.Lookup("goroutine").WriteTo(l.dump, 1)
					close(ch)
					return
				}
			}
		}
	}()
	return ch
}

func (l *latencies) stuckError(side string, stall time.Duration) error {
	return fmt.Errorf("worker bench: %s stuck: %d of %d messages settled, none in the last %s (goroutines on stderr)", side, l.count(), l.n, stall)
}

func (l *latencies) figures() benchFigures {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := slices.Clone(l.d)
	slices.Sort(d)
	f := benchFigures{Messages: len(d), Elapsed: l.last.Sub(l.first)}
	if len(d) > 0 {
		f.P50 = d[len(d)*50/100]
		f.P99 = d[min(len(d)-1, len(d)*99/100)]
	}
	if f.Elapsed > 0 {
		f.PerSecond = float64(f.Messages) / f.Elapsed.Seconds()
	}
	return f
}

// benchRuntime runs a no-op worker over n events. A message is in hand
// when its handler is called and settled when its succeeded result reaches
// a subscriber of its results subject (the runtime acks right after the
// stream's ack).
func benchRuntime(ctx context.Context, js jetstream.JetStream, name string, n, inFlight int) (benchFigures, error) {
	subject, err := benchEvents(ctx, js, name, n)
	if err != nil {
		return benchFigures{}, err
	}
	defer benchCleanup(js, name, subject)
	lat := newLatencies(n)
	var mu sync.Mutex
	started := make(map[string]time.Time, n)
	failed := make(chan string, 1)
	// The result's Nats-Msg-Id says <worker>:<event id>:<seq>:<outcome>:
	// read rather than decode the result, to add little work to this side.
	sub, err := js.Conn().Subscribe(schemas.ResultsRoot+"."+schemas.EscapeToken(name)+".>", func(m *nats.Msg) {
		parts := strings.Split(m.Header.Get(jetstream.MsgIDHeader), ":")
		if len(parts) != 4 || parts[3] != string(schemas.OutcomeSucceeded) {
			// A no-op handler always succeeds: anything else is a fault,
			// and the figures would not mean what they say.
			select {
			case failed <- m.Header.Get(jetstream.MsgIDHeader):
			default:
			}
			return
		}
		mu.Lock()
		at, ok := started[parts[1]]
		mu.Unlock()
		if ok {
			lat.add(at)
		}
	})
	if err != nil {
		return benchFigures{}, fmt.Errorf("worker bench: subscribe to results: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	s := runtime.DefaultSettings()
	s.MaxInFlight = inFlight
	s.JobTimeout = 10 * time.Second // short jobs: the runtime pulls ahead
	rt, err := runtime.New(js, runtime.Worker{Name: name, Subjects: []string{subject}, Settings: s,
		Policy: runtime.Policy{Events: []string{"push"}, DenySenders: []string{"nobody"}},
		Handler: runtime.HandlerFunc(func(_ context.Context, ev *schemas.Envelope) (runtime.Report, error) {
			mu.Lock()
			started[ev.ID] = time.Now()
			mu.Unlock()
			return runtime.Report{}, nil
		})}, zerolog.Nop(), nil)
	if err != nil {
		return benchFigures{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(rctx) }()
	var runErr error
	select {
	case <-lat.done:
	case o := <-failed:
		runErr = fmt.Errorf("worker bench: a no-op job did not succeed: result %s", o)
	case <-lat.stuck(ctx, benchStall):
		runErr = lat.stuckError("runtime", benchStall)
	case err := <-errc:
		errc <- err
		runErr = fmt.Errorf("worker bench: runtime stopped: %w", err)
	case <-ctx.Done():
		runErr = ctx.Err()
	}
	cancel()
	<-errc
	return lat.figures(), runErr
}

// benchLoop is a reference loop over n events with inFlight goroutines on
// js's connection. fair: it also does the runtime's encoding and
// idempotency work (see workerRound.Fair); otherwise the bare minimum.
func benchLoop(ctx context.Context, js jetstream.JetStream, name string, n, inFlight int, fair bool) (benchFigures, error) {
	subject, err := benchEvents(ctx, js, name, n)
	if err != nil {
		return benchFigures{}, err
	}
	defer benchCleanup(js, name, subject)
	var kv jetstream.KeyValue
	if fair {
		kv, err = js.CreateOrUpdateKeyValue(ctx, runtime.IdempotencyBucket(runtime.Worker{Name: name, Settings: runtime.DefaultSettings()}))
		if err != nil {
			return benchFigures{}, fmt.Errorf("worker bench: bucket: %w", err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return benchFigures{}, fmt.Errorf("worker bench: consumer: %w", err)
	}
	// The runtime's pull options for short jobs.
	it, err := cons.Messages(runtime.PullOpts(inFlight)...)
	if err != nil {
		return benchFigures{}, fmt.Errorf("worker bench: consume: %w", err)
	}
	defer it.Stop()
	type arrival struct {
		m  jetstream.Msg
		at time.Time
	}
	work := make(chan arrival)
	lat := newLatencies(n)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				var err error
				if fair {
					err = fairJob(ctx, js, kv, name, a.m)
				} else {
					err = bareJob(ctx, js, name, a.m)
				}
				if err != nil {
					_ = a.m.Nak()
					continue
				}
				_ = a.m.Ack()
				lat.add(a.at)
			}
		}()
	}
	var nextErr error
	var nextMu sync.Mutex
	go func() {
		defer close(work)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			if err != nil {
				// A missed heartbeat, say: the iterator pulls again.
				nextMu.Lock()
				nextErr = err
				nextMu.Unlock()
				continue
			}
			select {
			case work <- arrival{m: m, at: time.Now()}:
			case <-lat.done:
				return
			}
		}
	}()
	side := "bare loop"
	if fair {
		side = "fair ceiling"
	}
	var runErr error
	select {
	case <-lat.done:
	case <-lat.stuck(ctx, benchStall):
		runErr = lat.stuckError(side, benchStall)
		nextMu.Lock()
		if nextErr != nil {
			runErr = fmt.Errorf("%w; the pull's last error: %w", runErr, nextErr)
		}
		nextMu.Unlock()
	case <-ctx.Done():
		runErr = ctx.Err()
	}
	it.Stop()
	wg.Wait()
	return lat.figures(), runErr
}

// bareJob publishes the event's bytes as its result and waits for the ack.
func bareJob(ctx context.Context, js jetstream.JetStream, name string, m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		return err
	}
	out := &nats.Msg{Subject: schemas.ResultSubject(name, "bench", "repo"), Data: m.Data(), Header: nats.Header{}}
	out.Header.Set(jetstream.MsgIDHeader, name+":"+strconv.FormatUint(meta.Sequence.Stream, 10))
	_, err = js.PublishMsg(ctx, out)
	return err
}

// fairJob does what the runtime must do around a no-op handler: decode the
// envelope, write its idempotency key, encode its result, publish it with
// ack. The caller acks.
func fairJob(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, name string, m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		return err
	}
	started := time.Now()
	var ev schemas.Envelope
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		return err
	}
	if _, err := kv.Create(ctx, runtime.IdempotencyKey(ev.ID), []byte(`{"state":"done","outcome":"succeeded"}`)); err != nil {
		return err
	}
	now := time.Now().UTC()
	res := schemas.Result{Worker: name, EventID: ev.ID, EventType: ev.Type, Repo: ev.Repo, Subject: ev.Subject,
		Outcome: schemas.OutcomeSucceeded, Attempt: int(meta.NumDelivered),
		DurationMS: float64(now.Sub(started).Microseconds()) / 1000, Started: started.UTC(), Finished: now}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	out := &nats.Msg{Subject: schemas.ResultSubject(name, "bench", "repo"), Data: data, Header: nats.Header{}}
	out.Header.Set(jetstream.MsgIDHeader, name+":"+ev.ID+":"+strconv.FormatUint(meta.Sequence.Stream, 10)+":succeeded")
	out.Header.Set(jetstream.ExpectedStreamHeader, schemas.StreamResults)
	_, err = js.PublishMsg(ctx, out)
	return err
}

// benchCleanup removes what a side left: its consumer, bucket, events and
// results.
func benchCleanup(js jetstream.JetStream, name, subject string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, schemas.StreamEvents, name)
	_ = js.DeleteKeyValue(ctx, runtime.IdempotencyBucketPrefix+name)
	if st, err := js.Stream(ctx, schemas.StreamEvents); err == nil {
		_ = st.Purge(ctx, jetstream.WithPurgeSubject(subject))
	}
	if st, err := js.Stream(ctx, schemas.StreamResults); err == nil {
		_ = st.Purge(ctx, jetstream.WithPurgeSubject(schemas.ResultsRoot+"."+schemas.EscapeToken(name)+".>"))
	}
}
