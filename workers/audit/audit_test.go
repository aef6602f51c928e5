package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

const secret = "s3cr3t-VALUE-x9"

// testKey signs the records of every test worker.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func testOpts() Options {
	return Options{Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}}
}

// verifyStream verifies FORGE_AUDIT with the test key and fails the test
// unless it verifies with want records.
func verifyStream(t *testing.T, ctx context.Context, js jetstream.JetStream, want int) {
	t.Helper()
	rep, err := VerifyStream(ctx, js, testOpts())
	if err != nil || !rep.OK() || rep.Count != want {
		t.Fatalf("VerifyStream = %+v, %v; want %d records and no problem", rep, err, want)
	}
}

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns := natstest.Run(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	for name, subj := range map[string][]string{
		schemas.StreamEvents:  schemas.EventsSubjects,
		schemas.StreamResults: schemas.ResultsSubjects,
		schemas.StreamDLQ:     schemas.DLQSubjects,
	} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subj}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateStream(ctx, StreamConfig(0, 1)); err != nil {
		t.Fatal(err)
	}
	return js
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// publishSources publishes n source messages spread over the three streams
// and returns how many went to each.
func publishSources(t *testing.T, js jetstream.JetStream, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		var subj string
		var data []byte
		id := fmt.Sprintf("ev-%04d", i/3)
		switch i % 3 {
		case 0:
			subj = schemas.EventSubject("git", "push", "acme", "app")
			data, _ = json.Marshal(schemas.Envelope{ID: id, Type: "forge.push", Time: t0.Add(time.Duration(i) * time.Millisecond),
				Repo: "acme/app", Sender: "bob", Data: json.RawMessage(`{"secret":"` + secret + `"}`)})
		case 1:
			subj = schemas.ResultSubject("envsync", "acme", "app")
			data, _ = json.Marshal(schemas.Result{Worker: "envsync", EventID: id, EventType: "forge.push", Repo: "acme/app",
				Outcome: schemas.OutcomeSucceeded, Attempt: 1, Finished: t0.Add(time.Duration(i) * time.Millisecond),
				Error:  "boom " + secret,
				Detail: schemas.Detail{"keys_put": "A,B", "key_sha256": "A:0011", "output": secret, "value": secret}})
		case 2:
			subj = schemas.DLQSubject("docs", "acme", "app")
			ev, _ := json.Marshal(schemas.Envelope{ID: id, Sender: "alice", Data: json.RawMessage(`{"x":"` + secret + `"}`)})
			data, _ = json.Marshal(schemas.DeadLetter{Worker: "docs", EventID: id, EventType: "forge.push", Repo: "acme/app",
				Error: secret, Permanent: true, Attempts: 3, DeadAt: t0.Add(time.Duration(i) * time.Millisecond), Event: ev})
		}
		ack, err := js.PublishAsync(subj, data)
		if err != nil {
			t.Fatal(err)
		}
		_ = ack
		counts[map[int]string{0: schemas.StreamEvents, 1: schemas.StreamResults, 2: schemas.StreamDLQ}[i%3]]++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		t.Fatal("async publishes not acked")
	}
	return counts
}

func auditCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	return natstest.StreamState(t, js, schemas.StreamAudit).Msgs
}

func consumersIdle(t *testing.T, js jetstream.JetStream) bool {
	t.Helper()
	for _, s := range Sources {
		c, err := js.Consumer(context.Background(), s.Stream, s.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
			return false
		}
	}
	return true
}

func startWorker(t *testing.T, js jetstream.JetStream, logs *bytes.Buffer, ackWait time.Duration) (w *Worker, stop func()) {
	t.Helper()
	var mu sync.Mutex
	log := zerolog.Nop()
	if logs != nil {
		log = zerolog.New(&lockedWriter{mu: &mu, w: logs})
	}
	w, err := New(js, Config{FetchWait: 200 * time.Millisecond, AckWait: ackWait, Key: testKey}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestTwoReplicasOneChain(t *testing.T) {
	js := setup(t)
	const n = 2000
	counts := publishSources(t, js, n)
	var logs bytes.Buffer
	a, stopA := startWorker(t, js, &logs, 5*time.Second)
	b, stopB := startWorker(t, js, nil, 5*time.Second)

	natstest.Eventually(t, 50*time.Second, "2000 audit records", func() bool { return auditCount(t, js) >= n+1 })
	natstest.Eventually(t, 10*time.Second, "consumers drained", func() bool { return consumersIdle(t, js) })
	stopA()
	stopB()
	if got := auditCount(t, js); got != n+1 {
		t.Fatalf("audit has %d records, want %d and the genesis", got, n)
	}
	appended := func(w *Worker) int {
		total := 0
		for _, s := range Sources {
			total += int(testutil.ToFloat64(w.records.WithLabelValues(s.Stream, "appended")))
		}
		return total
	}
	t.Logf("replica A appended %d, replica B %d; head races lost: %v + %v", appended(a), appended(b),
		testutil.ToFloat64(a.conflicts), testutil.ToFloat64(b.conflicts))
	if appended(a)+appended(b) != n {
		t.Fatalf("replicas appended %d records in all, want %d", appended(a)+appended(b), n)
	}

	verifyStream(t, context.Background(), js, n+1)

	var buf bytes.Buffer
	if written, err := Export(context.Background(), js, Filter{}, &buf); err != nil || written != n+1 {
		t.Fatalf("Export = %d, %v", written, err)
	}
	if strings.Contains(buf.String(), secret) || strings.Contains(logs.String(), secret) {
		t.Fatal("a secret reached the audit log or the worker's logs")
	}
	seen := map[string]int{}
	perSource := map[string]int{}
	kinds := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		r, err := schemas.DecodeAuditRecord([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == schemas.AuditKindGenesis {
			continue
		}
		seen[fmt.Sprintf("%s:%d", r.Source, r.SourceSeq)]++
		perSource[r.Source]++
		kinds[r.Kind]++
		switch r.Kind {
		case schemas.AuditKindResult:
			if r.Detail["keys_put"] != "A,B" || r.Detail["output"] != "" || r.Detail["value"] != "" || r.Worker != "envsync" {
				t.Fatalf("result record %+v", r)
			}
		case schemas.AuditKindDeadLetter:
			if r.Sender != "alice" || r.Outcome != schemas.OutcomeDeadLettered {
				t.Fatalf("dead letter record %+v", r)
			}
		case schemas.AuditKindEvent:
			if r.Sender != "bob" || r.EventType != "push" || r.Repo != "acme/app" {
				t.Fatalf("event record %+v", r)
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct source messages recorded, want %d", len(seen), n)
	}
	for src, c := range counts {
		if perSource[src] != c {
			t.Fatalf("%s: %d records, want %d", src, perSource[src], c)
		}
	}
	if kinds[schemas.AuditKindEvent] == 0 || kinds[schemas.AuditKindResult] == 0 || kinds[schemas.AuditKindDeadLetter] == 0 {
		t.Fatalf("kinds %v", kinds)
	}

	// Query: one repository, since a time.
	recs, err := Query(context.Background(), js, "acme/app", t0.Add(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n-1500 {
		t.Fatalf("Query returned %d records, want %d", len(recs), n-1500)
	}
	if recs, _ := Query(context.Background(), js, "other/repo", time.Time{}); len(recs) != 0 {
		t.Fatalf("Query of another repo returned %d records", len(recs))
	}
	// A read removes its consumer (see runtime.OrderedReader).
	if n := natstest.StreamState(t, js, schemas.StreamAudit).Consumers; n != 0 {
		t.Errorf("%d consumers left on %s after the queries, want 0", n, schemas.StreamAudit)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	js := setup(t)
	const n = 30
	publishSources(t, js, n)
	_, stop := startWorker(t, js, nil, 5*time.Second)
	natstest.Eventually(t, 20*time.Second, "audit records", func() bool { return auditCount(t, js) >= n+1 })
	stop()
	var buf bytes.Buffer
	if _, err := Export(context.Background(), js, Filter{}, &buf); err != nil {
		t.Fatal(err)
	}
	file := buf.Bytes()
	if rep := VerifyFile(bytes.NewReader(file), testOpts()); !rep.OK() || rep.Count != n+1 {
		t.Fatalf("untouched export: VerifyFile = %+v", rep)
	}
	lineStarts := []int{0}
	for i, c := range file {
		if c == '\n' && i+1 < len(file) {
			lineStarts = append(lineStarts, i+1)
		}
	}
	seqOf := func(off int) uint64 {
		r := 0
		for i, s := range lineStarts {
			if s <= off {
				r = i
			}
		}
		return uint64(r + 1)
	}
	// Positions: the first byte, inside a field name, a value, a hash, the
	// prev_hash, a newline, the last byte before the final newline.
	positions := []int{3, lineStarts[1] + 10, lineStarts[n/2] + 40, len(file) - 3, lineStarts[7] - 1}
	for _, field := range []string{`"hash":"`, `"prev_hash":"`, `"sender":"`, `"recorded_at":"`, `"covers":{`, `"sig":"`, `"key":"`} {
		if i := bytes.Index(file[lineStarts[n/3]:], []byte(field)); i >= 0 {
			positions = append(positions, lineStarts[n/3]+i+len(field)+1)
		}
	}
	for _, pos := range positions {
		t.Run(fmt.Sprintf("byte_%d", pos), func(t *testing.T) {
			bad := bytes.Clone(file)
			bad[pos] ^= 0x01
			rep := VerifyFile(bytes.NewReader(bad), testOpts())
			err := rep.Err()
			var be *BrokenError
			if !errors.As(err, &be) || !errors.Is(err, ErrBroken) {
				t.Fatalf("VerifyFile = %v, want a BrokenError", err)
			}
			if want := seqOf(pos); be.Seq != want && !(want == 1 && be.Seq == 0) {
				t.Fatalf("first problem at seq %d (%s), want %d", be.Seq, be.Reason, want)
			}
		})
	}
	t.Run("record removed", func(t *testing.T) {
		lines := bytes.SplitAfter(file, []byte("\n"))
		bad := bytes.Join(append(lines[:5:5], lines[6:]...), nil)
		var be *BrokenError
		if err := VerifyFile(bytes.NewReader(bad), testOpts()).Err(); !errors.As(err, &be) || be.Seq != 7 {
			t.Fatalf("VerifyFile = %v, want a break at seq 7", err)
		}
	})
	t.Run("equivalent json escape", func(t *testing.T) {
		// Same JSON meaning, different bytes: still a break.
		bad := bytes.Replace(file, []byte(`"kind":"event"`), []byte(`"kind":"\u0065vent"`), 1)
		if err := VerifyFile(bytes.NewReader(bad), testOpts()).Err(); !errors.Is(err, ErrBroken) {
			t.Fatalf("VerifyFile = %v, want ErrBroken", err)
		}
	})
}

// A replica records a message and dies before its ack: the redelivery, to
// another replica, must not record it again.
func TestRedeliveryAfterCrashIsNotRecordedTwice(t *testing.T) {
	js := setup(t)
	const n = 9
	publishSources(t, js, n)

	// "Replica A": fetch events #1 and #2 through the durable consumer,
	// append them, never ack (it crashed).
	crashed, err := New(js, Config{AckWait: time.Second, Key: testKey}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.CreateOrUpdateConsumer(context.Background(), schemas.StreamEvents, ConsumerConfig("audit-events", time.Second))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		md, _ := msg.Metadata()
		if ok, err := crashed.append(context.Background(), newRecord(schemas.StreamEvents, md.Sequence.Stream, msg.Data(), crashed.detail)); !ok || err != nil {
			t.Fatalf("append = %v, %v", ok, err)
		}
	}
	if auditCount(t, js) != 2 {
		t.Fatal("the crashed replica's record is missing")
	}

	// A fresh replica, with no cached head, gets the redelivery.
	fresh, err := New(js, Config{Key: testKey}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := fresh.append(context.Background(), newRecord(schemas.StreamEvents, 1, nil, fresh.detail)); ok || err != nil {
		t.Fatalf("re-append of a covered message = %v, %v; want skipped", ok, err)
	}

	// Replica B runs; the consumer redelivers events #1 after AckWait.
	startWorker(t, js, nil, time.Second)
	natstest.Eventually(t, 20*time.Second, "all recorded", func() bool { return auditCount(t, js) >= n+1 && consumersIdle(t, js) })
	if got := auditCount(t, js); got != n+1 {
		t.Fatalf("audit has %d records, want %d and the genesis", got, n)
	}
	verifyStream(t, context.Background(), js, n+1)
}

func TestAuditStreamDeniesDeleteAndPurge(t *testing.T) {
	js := setup(t)
	publishSources(t, js, 3)
	_, stop := startWorker(t, js, nil, 5*time.Second)
	natstest.Eventually(t, 10*time.Second, "records", func() bool { return auditCount(t, js) >= 3 })
	stop()
	s, _ := js.Stream(context.Background(), schemas.StreamAudit)
	if err := s.DeleteMsg(context.Background(), 2); err == nil {
		t.Fatal("deleting an audit record succeeded")
	}
	if err := s.Purge(context.Background()); err == nil {
		t.Fatal("purging the audit stream succeeded")
	}
}

// A source message that does not decode still gets a record, so the chain
// covers everything, and the worker does not stall on it.
func TestUndecodableSourceIsRecorded(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	if _, err := js.Publish(ctx, schemas.EventSubject("git", "push", "acme", "app"), []byte("not json "+secret)); err != nil {
		t.Fatal(err)
	}
	publishSources(t, js, 3)
	_, stop := startWorker(t, js, nil, 5*time.Second)
	natstest.Eventually(t, 10*time.Second, "4 records", func() bool { return auditCount(t, js) >= 5 })
	stop()
	var buf bytes.Buffer
	if _, err := Export(ctx, js, Filter{}, &buf); err != nil {
		t.Fatal(err)
	}
	var first schemas.AuditRecord
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		r, err := schemas.DecodeAuditRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		if r.Source == schemas.StreamEvents && r.SourceSeq == 1 {
			first = r
		}
	}
	if first.Note != "event does not decode" || first.SourceSeq != 1 || strings.Contains(buf.String(), secret) {
		t.Fatalf("record of a bad event: %+v", first)
	}
	if rep := VerifyFile(&buf, testOpts()); !rep.OK() || rep.Count != 5 {
		t.Fatalf("VerifyFile = %+v", rep)
	}
}

// A read of the chain whose pull fails midway with "no responders" (seen
// on a three-node cluster while a restarted node caught up) resumes after
// the last record read: every record once, in order. The broker is real;
// only the reader's pull is made to fail, twice.
func TestWalkResumesAfterAFailedPull(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	const n = 1200
	publishSources(t, js, n)
	_, stop := startWorker(t, js, nil, 5*time.Second)
	natstest.Eventually(t, 30*time.Second, "audit records", func() bool { return auditCount(t, js) >= n+1 })
	stop()

	flaky := &failingPulls{JetStream: js, failAfter: 1, failures: 2}
	var seqs []uint64
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := walk(wctx, flaky, func(_ []byte, seq uint64) error {
		seqs = append(seqs, seq)
		return nil
	}); err != nil {
		t.Fatalf("walk with failing pulls: %v", err)
	}
	if flaky.failed != 2 || len(seqs) != n+1 {
		t.Fatalf("walk read %d records after %d failed pulls, want %d after 2", len(seqs), flaky.failed, n)
	}
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("record %d has sequence %d: a gap or a repeat", i, seq)
		}
	}
	verifyStream(t, wctx, flaky, n+1)
}

// failingPulls makes the pull after failAfter good ones fail with
// ErrNoResponders, failures times in all, on the ordered consumers it
// opens.
type failingPulls struct {
	jetstream.JetStream
	failAfter, failures, failed int
}

func (f *failingPulls) OrderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	c, err := f.JetStream.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	return &failingConsumer{Consumer: c, f: f}, nil
}

type failingConsumer struct {
	jetstream.Consumer
	f     *failingPulls
	pulls int
}

func (c *failingConsumer) Fetch(n int, opts ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	c.pulls++
	if c.pulls > c.f.failAfter && c.f.failed < c.f.failures {
		c.f.failed++
		return nil, nats.ErrNoResponders
	}
	return c.Consumer.Fetch(n, opts...)
}
