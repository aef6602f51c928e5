package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
)

// BenchFigures are one side of a [Bench] run.
type BenchFigures struct {
	Messages int           `json:"messages"`
	Elapsed  time.Duration `json:"elapsed"`
	// PerSecond is Messages over Elapsed (first delivery to last ack).
	PerSecond float64 `json:"per_second"`
	// P50 and P99 are the handling latency: a message's arrival in the
	// process to its ack.
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
}

// BenchResult compares the full runtime to the bare broker work.
type BenchResult struct {
	InFlight int `json:"in_flight"`
	// Runtime: a no-op handler through one replica with everything around
	// it (policy, idempotency get and put, result publish with ack, ack).
	Runtime BenchFigures `json:"runtime"`
	// Ceiling: a bare nats.go loop doing the broker work every job needs
	// (pull, publish a result with ack, ack) at the same concurrency.
	Ceiling BenchFigures `json:"ceiling"`
	// Ratio is Runtime.PerSecond over Ceiling.PerSecond.
	Ratio float64 `json:"ratio"`
	// CeilingIdem is the bare loop also storing the idempotency record
	// (a KV put, sent with the result, both acks awaited before the ack):
	// the least broker work a worker that keeps issue 3's KV record can
	// do, leaving out even the lookup. RatioIdem is the runtime over it.
	CeilingIdem BenchFigures `json:"ceiling_idem"`
	RatioIdem   float64      `json:"ratio_idem"`
}

// Bench publishes n events to FORGE_EVENTS (on a subject of its own) and
// measures the runtime handling them with inFlight jobs at once, then the
// ceiling on another n events. The streams must exist. It removes its
// consumers, bucket, events and results when done.
func Bench(ctx context.Context, js jetstream.JetStream, n, inFlight int) (BenchResult, error) {
	res := BenchResult{InFlight: inFlight}
	if n < 1 || inFlight < 1 {
		return res, fmt.Errorf("bench: n %d and in-flight %d must be at least 1", n, inFlight)
	}
	tag := "bench-" + nuid.Next()
	var err error
	if res.Runtime, err = benchRuntime(ctx, js, tag+"-rt", n, inFlight); err != nil {
		return res, err
	}
	if res.Ceiling, err = benchCeiling(ctx, js, tag+"-bare", n, inFlight, false); err != nil {
		return res, err
	}
	if res.CeilingIdem, err = benchCeiling(ctx, js, tag+"-idem", n, inFlight, true); err != nil {
		return res, err
	}
	if res.Ceiling.PerSecond > 0 {
		res.Ratio = res.Runtime.PerSecond / res.Ceiling.PerSecond
	}
	if res.CeilingIdem.PerSecond > 0 {
		res.RatioIdem = res.Runtime.PerSecond / res.CeilingIdem.PerSecond
	}
	return res, nil
}

// benchEvents publishes n push events on a subject of their own.
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
				// The broker is behind (a busy machine): let it
				// catch up rather than fail the run.
				select {
				case <-js.PublishAsyncComplete():
				case <-ctx.Done():
					return "", ctx.Err()
				}
				continue
			}
			if err != nil {
				return "", fmt.Errorf("bench: publish: %w", err)
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

func (l *latencies) add(start time.Time, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first.IsZero() || start.Before(l.first) {
		l.first = start
	}
	l.d = append(l.d, d)
	l.last = time.Now()
	if len(l.d) == l.n {
		close(l.done)
	}
}

// benchStall is how long a bench side may go without settling a message
// before it is called stuck.
const benchStall = 30 * time.Second

// count is how many messages have been added.
func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// stuck is closed when stall passes without a message added, before all
// n are in: the bench then fails, with every goroutine's stack written to
// l.dump (stderr), rather than wait for its overall deadline.
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

// stuckError says how far a stuck side got.
func (l *latencies) stuckError(side string) error {
	return fmt.Errorf("bench: %s stuck: %d of %d messages settled, none in the last %s (goroutines on stderr)", side, l.count(), l.n, benchStall)
}

func (l *latencies) figures() BenchFigures {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	f := BenchFigures{Messages: len(l.d), Elapsed: l.last.Sub(l.first)}
	if len(l.d) > 0 {
		f.P50 = l.d[len(l.d)*50/100]
		f.P99 = l.d[min(len(l.d)-1, len(l.d)*99/100)]
	}
	if f.Elapsed > 0 {
		f.PerSecond = float64(f.Messages) / f.Elapsed.Seconds()
	}
	return f
}

func benchRuntime(ctx context.Context, js jetstream.JetStream, name string, n, inFlight int) (BenchFigures, error) {
	subject, err := benchEvents(ctx, js, name, n)
	if err != nil {
		return BenchFigures{}, err
	}
	defer benchCleanup(js, name, subject)
	s := DefaultSettings()
	s.MaxInFlight = inFlight
	s.JobTimeout = 10 * time.Second // short jobs: pull ahead
	rt, err := New(js, Worker{Name: name, Subjects: []string{subject}, Settings: s,
		Policy: Policy{Events: []string{"push"}, DenySenders: []string{"nobody"}},
		Handler: HandlerFunc(func(context.Context, *schemas.Envelope) (Report, error) {
			return Report{}, nil
		})}, zerolog.Nop(), nil)
	if err != nil {
		return BenchFigures{}, err
	}
	lat := newLatencies(n)
	var failed atomic.Int64
	rt.settled = func(outcome string, d time.Duration) {
		if outcome == string(schemas.OutcomeSucceeded) {
			lat.add(time.Now().Add(-d), d)
		} else {
			failed.Add(1)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(rctx) }()
	select {
	case <-lat.done:
	case <-lat.stuck(ctx, benchStall):
		cancel()
		return lat.figures(), lat.stuckError("runtime")
	case err := <-errc:
		cancel()
		return BenchFigures{}, fmt.Errorf("bench: runtime stopped: %w", err)
	case <-ctx.Done():
		cancel()
		<-errc
		return lat.figures(), ctx.Err()
	}
	cancel()
	<-errc
	if n := failed.Load(); n > 0 {
		// A no-op handler always succeeds: anything else is a broker or
		// runtime fault, and the figures would not mean what they say.
		return lat.figures(), fmt.Errorf("bench: %d deliveries of a no-op handler did not succeed", n)
	}
	return lat.figures(), nil
}

func benchCeiling(ctx context.Context, js jetstream.JetStream, name string, n, inFlight int, idem bool) (BenchFigures, error) {
	subject, err := benchEvents(ctx, js, name, n)
	if err != nil {
		return BenchFigures{}, err
	}
	defer benchCleanup(js, name, subject)
	var kv jetstream.KeyValue
	if idem {
		if kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: IdempotencyBucketPrefix + name, TTL: time.Hour}); err != nil {
			return BenchFigures{}, fmt.Errorf("bench: bucket: %w", err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return BenchFigures{}, fmt.Errorf("bench: consumer: %w", err)
	}
	it, err := cons.Messages(prefetchOpts(inFlight)...)
	if err != nil {
		return BenchFigures{}, fmt.Errorf("bench: consume: %w", err)
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
				meta, _ := a.m.Metadata()
				var put jetstream.PubAckFuture
				if kv != nil {
					var perr error
					key := IdempotencyKey(fmt.Sprintf("%s-%d", name, meta.Sequence.Stream))
					if put, perr = js.PublishAsync("$KV."+kv.Bucket()+"."+key, []byte(`{"outcome":"succeeded"}`)); perr != nil {
						_ = a.m.Nak()
						continue
					}
				}
				out := &nats.Msg{Subject: schemas.ResultSubject(name, "bench", "repo"), Data: a.m.Data(), Header: nats.Header{}}
				out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%d", name, meta.Sequence.Stream))
				if _, err := js.PublishMsg(ctx, out); err != nil {
					_ = a.m.Nak()
					continue
				}
				if put != nil && waitAck(ctx, put) != nil {
					_ = a.m.Nak()
					continue
				}
				_ = a.m.Ack()
				lat.add(a.at, time.Since(a.at))
			}
		}()
	}
	var nextErr atomic.Value // the iterator's last error, for a stuck run
	go func() {
		defer close(work)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			if err != nil {
				// Not the end: a missed heartbeat, say, after which
				// the iterator pulls again. (This loop used to stop
				// here, and the run then hung.) A short pause, so an
				// error that repeats does not spin; a run that gets
				// nothing more is called stuck, with this error.
				nextErr.Store(err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			select {
			case work <- arrival{m: m, at: time.Now()}:
			case <-lat.done:
				return
			}
		}
	}()
	var runErr error
	select {
	case <-lat.done:
	case <-lat.stuck(ctx, benchStall):
		runErr = lat.stuckError("ceiling")
		if e, ok := nextErr.Load().(error); ok {
			runErr = fmt.Errorf("%w; the pull's last error: %w", runErr, e)
		}
	case <-ctx.Done():
		runErr = ctx.Err()
	}
	it.Stop()
	wg.Wait()
	return lat.figures(), runErr
}

// benchCleanup removes what a bench side left: its consumer, bucket,
// events and results.
func benchCleanup(js jetstream.JetStream, name, subject string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, schemas.StreamEvents, name)
	_ = js.DeleteKeyValue(ctx, IdempotencyBucketPrefix+name)
	if st, err := js.Stream(ctx, schemas.StreamEvents); err == nil {
		_ = st.Purge(ctx, jetstream.WithPurgeSubject(subject))
	}
	if st, err := js.Stream(ctx, schemas.StreamResults); err == nil {
		_ = st.Purge(ctx, jetstream.WithPurgeSubject(schemas.ResultsRoot+"."+schemas.EscapeToken(name)+".>"))
	}
}

// waitAck waits for an async publish's ack.
func waitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
