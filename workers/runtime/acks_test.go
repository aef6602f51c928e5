package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/natstest"
)

// jsStreamNotMatch is the server's error code for a Nats-Expected-Stream
// that is not the subject's stream.
const jsStreamNotMatch = 10060

func newTestAcker(t *testing.T, nc *nats.Conn, timeout time.Duration) *acker {
	t.Helper()
	a, err := newAcker(nc, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	return a
}

// ackOf publishes m through a and waits for its verdict.
func ackOf(t *testing.T, a *acker, m *nats.Msg, stream string) error {
	t.Helper()
	p, err := a.publish(m, stream)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.wait(ctx)
}

// A publish the stream stores is acked; the same Nats-Msg-Id again is a
// duplicate, also acked, and stored once; a stream that refuses the
// message gives its error.
func TestAckerVerdicts(t *testing.T) {
	_, nc, js := broker(t)
	a := newTestAcker(t, nc, 5*time.Second)
	subject := schemas.ResultSubject("w", "o", "r")
	msg := func(id string, hdr ...string) *nats.Msg {
		m := &nats.Msg{Subject: subject, Data: []byte(`{"x":1}`), Header: nats.Header{jetstream.MsgIDHeader: {id}}}
		for i := 0; i+1 < len(hdr); i += 2 {
			m.Header.Set(hdr[i], hdr[i+1])
		}
		return m
	}
	if err := ackOf(t, a, msg("one"), schemas.StreamResults); err != nil {
		t.Fatalf("stored: %v", err)
	}
	if err := ackOf(t, a, msg("one"), schemas.StreamResults); err != nil {
		t.Fatalf("duplicate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("%s holds %d messages, want 1 (the duplicate stored once)", schemas.StreamResults, info.State.Msgs)
	}

	// Refused by the server: the stream named in the header is not the one
	// that has the subject.
	err = ackOf(t, a, msg("two", jetstream.ExpectedStreamHeader, "NOT_IT"), schemas.StreamResults)
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != jsStreamNotMatch {
		t.Fatalf("expected-stream mismatch: got %v, want the server's stream-not-match error", err)
	}
	// Acked by another stream than the caller expects.
	if err := ackOf(t, a, msg("three"), schemas.StreamDLQ); !errors.Is(err, errWrongStream) {
		t.Fatalf("ack from %s for %s: got %v, want errWrongStream", schemas.StreamResults, schemas.StreamDLQ, err)
	}
}

// A subject no stream has: "no responders", sent again twice like nats.go,
// then ErrNoStreamResponse. A stream created within the retries stores it.
func TestAckerNoResponders(t *testing.T) {
	_, nc, js := broker(t)
	a := newTestAcker(t, nc, 5*time.Second)
	start := time.Now()
	err := ackOf(t, a, &nats.Msg{Subject: "nostream.x", Data: []byte("x")}, "NOSTREAM")
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("got %v, want ErrNoStreamResponse", err)
	}
	if took := time.Since(start); took < pubRetries*pubRetryWait {
		t.Fatalf("gave up after %s: the %d retries %s apart did not happen", took, pubRetries, pubRetryWait)
	}

	p, err := a.publish(&nats.Msg{Subject: "late.x", Data: []byte("x")}, "LATE")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LATE", Subjects: []string{"late.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(ctx); err != nil {
		t.Fatalf("stream created during the retries: %v", err)
	}
	st, err := js.Stream(ctx, "LATE")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("LATE holds %v messages (%v), want 1", info.State.Msgs, err)
	}
}

// A publish nobody acks (here a plain subscriber takes the subject) fails
// with a timeout once its time is up, and a late ack changes nothing.
func TestAckerTimeout(t *testing.T) {
	_, nc, _ := broker(t)
	late := make(chan *nats.Msg, 1)
	if _, err := nc.Subscribe("silent.x", func(m *nats.Msg) { late <- m }); err != nil {
		t.Fatal(err)
	}
	a := newTestAcker(t, nc, 300*time.Millisecond)
	start := time.Now()
	err := ackOf(t, a, &nats.Msg{Subject: "silent.x", Data: []byte("x")}, "SILENT")
	if !errors.Is(err, nats.ErrTimeout) || !strings.Contains(err.Error(), "SILENT") {
		t.Fatalf("got %v, want a timeout naming the stream", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("timed out after %s, want 300ms to 2s", took)
	}
	m := <-late
	if err := m.Respond([]byte(`{"stream":"SILENT","seq":1}`)); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	open := len(a.open)
	a.mu.Unlock()
	if open != 0 {
		t.Fatalf("%d publishes still waiting after the timeout", open)
	}
}

// The prefix fast path takes only a clean ack from the expected stream;
// anything else is decoded and judged in full.
func TestAckerReadsAcks(t *testing.T) {
	for _, c := range []struct {
		data string
		hdr  nats.Header
		want error // nil: stored
	}{
		{data: `{"stream":"S","seq":7}`},
		{data: `{"stream":"S","seq":7,"duplicate":true}`},
		{data: `{"stream":"S","domain":"hub","seq":7}`},
		{data: `{"stream":"SS","seq":7}`, want: errWrongStream},
		{data: `{"stream":"S2","seq":7}`, want: errWrongStream},
		{data: `{"stream":"T","seq":7}`, want: errWrongStream},
		{data: `{"stream":"Sa,b","seq":7}`, want: errWrongStream},
		{data: `{"stream":"S","seq":0,"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, want: &jetstream.APIError{}},
		{data: `{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"S"}`, want: &jetstream.APIError{}},
		{data: `{"seq":7}`, want: jetstream.ErrInvalidJSAck},
		{data: `not json`, want: jetstream.ErrInvalidJSAck},
		{hdr: nats.Header{"Status": {"503"}}, want: jetstream.ErrNoStreamResponse},
		{hdr: nats.Header{"Status": {"408"}}, want: jetstream.ErrInvalidJSAck},
	} {
		got := verdict(&nats.Msg{Data: []byte(c.data), Header: c.hdr}, "S")
		var api *jetstream.APIError
		switch want := c.want.(type) {
		case nil:
			if got != nil {
				t.Errorf("%q: got %v, want stored", c.data, got)
			}
		case *jetstream.APIError:
			if !errors.As(got, &api) || api.Description == "" {
				t.Errorf("%q: got %v, want the server's error", c.data, got)
			}
		default:
			if !errors.Is(got, want) {
				t.Errorf("%q %v: got %v, want %v", c.data, c.hdr, got, want)
			}
		}
	}
}

// Closing the acker fails the publishes still waiting, and every later
// one: a job never waits on acks nobody collects.
func TestAckerClose(t *testing.T) {
	_, nc, _ := broker(t)
	if _, err := nc.Subscribe("silent.x", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	a, err := newAcker(nc, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.publish(&nats.Msg{Subject: "silent.x", Data: []byte("x")}, "SILENT")
	if err != nil {
		t.Fatal(err)
	}
	a.close()
	a.close() // a second close changes nothing
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.wait(ctx); !errors.Is(err, errAckerClosed) {
		t.Fatalf("waiting publish: got %v, want errAckerClosed", err)
	}
	if _, err := a.publish(&nats.Msg{Subject: "silent.x", Data: []byte("x")}, "SILENT"); !errors.Is(err, errAckerClosed) {
		t.Fatalf("publish after close: got %v, want errAckerClosed", err)
	}
}

// A publish still waiting when the connection is lost fails at once with
// ErrDisconnected, as nats.go's async publish does, rather than at its
// timeout; after the reconnect the acker works again.
func TestAckerDisconnect(t *testing.T) {
	srv, nc, _ := broker(t)
	if _, err := nc.Subscribe("silent.x", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a := newTestAcker(t, nc, time.Minute)
	p, err := a.publish(&nats.Msg{Subject: "silent.x", Data: []byte("x")}, "SILENT")
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.wait(ctx); !errors.Is(err, nats.ErrDisconnected) {
		t.Fatalf("got %v, want ErrDisconnected", err)
	}
	natstest.Eventually(t, 10*time.Second, "client reconnected", nc.IsConnected)
	if err := ackOf(t, a, &nats.Msg{Subject: schemas.ResultSubject("w", "o", "r"), Data: []byte("{}")}, schemas.StreamResults); err != nil {
		t.Fatalf("after the reconnect: %v", err)
	}
}
