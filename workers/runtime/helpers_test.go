package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// broker starts a server with the forgebus streams.
func broker(t testing.TB) (*natstest.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.Connect(t)
	natstest.Streams(t, js)
	return srv, nc, js
}

// fastSettings are settings for tests: short waits, no in-process retry.
func fastSettings() Settings {
	s := DefaultSettings()
	s.AckWait = time.Second
	s.MaxInFlight = 8
	s.MaxDeliver = 5
	s.Retry.MaxElapsed = 0
	s.NakDelays = []time.Duration{10 * time.Millisecond}
	s.GracePeriod = 5 * time.Second
	s.JobTimeout = 20 * time.Second
	return s
}

type eventOpt func(*schemas.Envelope)

func withSender(s string) eventOpt { return func(e *schemas.Envelope) { e.Sender = s } }
func withRef(r string) eventOpt    { return func(e *schemas.Envelope) { e.Subject = r } }

// envelope builds a push event for o/r.
func envelope(id string, opts ...eventOpt) schemas.Envelope {
	e := schemas.Envelope{
		SpecVersion: schemas.SpecVersion, ID: id, Source: "https://git.example.com",
		Type: schemas.TypePrefix + schemas.EventPush, Subject: "refs/heads/main",
		Time: time.Now().UTC(), DataContentType: "application/json",
		DataSchema: schemas.SchemaURI(schemas.EventPush), ForgeInstance: "gogs",
		Repo: "o/r", Sender: "alice", BodySHA256: "00", Data: json.RawMessage(`{"ref":"refs/heads/main"}`),
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

var testSubject = schemas.EventSubject("gogs", schemas.EventPush, "o", "r")

// publish publishes ev with msgID (the event id when empty) and returns
// the bytes and the stream sequence.
func publish(t testing.TB, js jetstream.JetStream, ev schemas.Envelope, msgID string) ([]byte, uint64) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if msgID == "" {
		msgID = ev.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, testSubject, data, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return data, ack.Sequence
}

// start runs a replica of w until the test ends; stop stops it and
// returns Run's error.
func start(t testing.TB, js jetstream.JetStream, w Worker) (stop func() error) {
	t.Helper()
	rt, err := New(js, w, zerolog.Nop(), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// streamMsgs returns the messages of stream, decoded into T, in order.
func streamMsgs[T any](t testing.TB, js jetstream.JetStream, stream string) []T {
	t.Helper()
	var out []T
	for _, m := range natstest.StreamMsgs(t, js, stream) {
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func results(t testing.TB, js jetstream.JetStream) []schemas.Result {
	return streamMsgs[schemas.Result](t, js, schemas.StreamResults)
}

func deadLetters(t testing.TB, js jetstream.JetStream) []schemas.DeadLetter {
	return streamMsgs[schemas.DeadLetter](t, js, schemas.StreamDLQ)
}

func streamCount(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	return natstest.StreamState(t, js, stream).Msgs
}

// consumerInfo reads the FORGE_EVENTS consumer of worker name.
func consumerInfo(js jetstream.JetStream, name string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, schemas.StreamEvents, name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// resultsOf returns the results with outcome o for event id (any when id
// is empty).
func resultsOf(rs []schemas.Result, id string, o schemas.Outcome) []schemas.Result {
	var out []schemas.Result
	for _, r := range rs {
		if (id == "" || r.EventID == id) && r.Outcome == o {
			out = append(out, r)
		}
	}
	return out
}

// counter counts handler calls per event id.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func (c *counter) inc(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[id]++
	return c.n[id]
}

func (c *counter) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

func byWorker(rs []schemas.Result, worker string) []schemas.Result {
	var out []schemas.Result
	for _, r := range rs {
		if r.Worker == worker {
			out = append(out, r)
		}
	}
	return out
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// validateOutcomes checks every result and dead letter in the streams
// against the contract's JSON Schemas.
func validateOutcomes(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for stream, validate := range map[string]func([]byte) error{
		schemas.StreamResults: schemas.ValidateResult,
		schemas.StreamDLQ:     schemas.ValidateDeadLetter,
	} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			if err := validate(m.Data); err != nil {
				t.Errorf("%s seq %d does not match its schema: %v\n%s", stream, seq, err, m.Data)
			}
		}
	}
}
