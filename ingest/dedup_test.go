package ingest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/ingest/spool"
)

// TestSamePayloadThroughTwoHooks: Gogs sends one payload to every matching
// hook, each with its own delivery id. The JSON hook's copy is stored; the
// form hook's copy is a duplicate that names the stored event; a redelivery
// of the first (same id) is still a duplicate.
func TestSamePayloadThroughTwoHooks(t *testing.T) {
	b := newBroker(t)
	h := newHandler(t, signedConfig(fixtureSecret), b.js)

	jsonHook := loadFixture(t, "push-multi-commit")
	first := serve(t, h, jsonHook.request())
	if first.Code != http.StatusAccepted || first.Duplicate || first.ID != jsonHook.delivery() {
		t.Fatalf("JSON hook: %d %s, want 202 stored as %s", first.Code, first.Raw, jsonHook.delivery())
	}
	formHook := loadFixture(t, "form-push-multi-commit")
	if formHook.delivery() == jsonHook.delivery() {
		t.Fatal("the two hooks' captures share a delivery id")
	}
	second := serve(t, h, formHook.request())
	if second.Code != http.StatusAccepted || !second.Duplicate || second.ID != first.ID || second.StreamSeq != first.StreamSeq {
		t.Errorf("form hook, same payload: %d %s, want 202 duplicate of %s at seq %d", second.Code, second.Raw, first.ID, first.StreamSeq)
	}
	redelivery := loadFixture(t, "push-redelivery")
	if redelivery.delivery() != jsonHook.delivery() {
		t.Fatal("push-redelivery does not repeat push-multi-commit's delivery id")
	}
	third := serve(t, h, redelivery.request())
	if third.Code != http.StatusAccepted || !third.Duplicate || third.ID != first.ID || third.StreamSeq != first.StreamSeq {
		t.Errorf("redelivery: %d %s, want 202 duplicate of %s at seq %d", third.Code, third.Raw, first.ID, first.StreamSeq)
	}
	if got := b.count(t); got != 1 {
		t.Errorf("stream holds %d events, want 1", got)
	}
}

// TestReplayUnderNewDeliveryID: push A, push B, then A's signed body again
// under a fresh delivery id, within the duplicate window: a duplicate of A,
// not a new event that would roll a "newest wins" worker back to A.
func TestReplayUnderNewDeliveryID(t *testing.T) {
	b := newBroker(t)
	h := newHandler(t, signedConfig(fixtureSecret), b.js)
	a, bb := loadFixture(t, "push-multi-commit"), loadFixture(t, "push-force")
	ra := serve(t, h, a.request())
	rb := serve(t, h, bb.request())
	if ra.Code != http.StatusAccepted || rb.Code != http.StatusAccepted || ra.Duplicate || rb.Duplicate {
		t.Fatalf("A %d %s, B %d %s: want both stored", ra.Code, ra.Raw, rb.Code, rb.Raw)
	}
	r := a.request()
	r.Header.Set(HeaderDelivery, uuid.NewString())
	replay := serve(t, h, r)
	if replay.Code != http.StatusAccepted || !replay.Duplicate || replay.ID != a.delivery() || replay.StreamSeq != ra.StreamSeq {
		t.Errorf("replay of A: %d %s, want 202 duplicate of %s at seq %d", replay.Code, replay.Raw, a.delivery(), ra.StreamSeq)
	}
	if got := b.count(t); got != 2 {
		t.Errorf("stream holds %d events, want 2", got)
	}
}

// switchPublisher fails every publish while down is set, as a broker that
// cannot be reached does.
type switchPublisher struct {
	jetstream.JetStream
	down atomic.Bool
}

func (p *switchPublisher) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if p.down.Load() {
		return nil, errors.New("nats: no responders available for request")
	}
	return p.JetStream.PublishMsg(ctx, m, opts...)
}

// TestSpooledAndPublishedCopiesOneEvent: one payload through two hooks
// while the broker is down for one of them: the spooled copy and the
// published copy end up as one event, in either order.
func TestSpooledAndPublishedCopiesOneEvent(t *testing.T) {
	for _, spoolFirst := range []bool{true, false} {
		name := "published first"
		if spoolFirst {
			name = "spooled first"
		}
		t.Run(name, func(t *testing.T) {
			b := newBroker(t)
			sp, err := spool.Open(t.TempDir(), spool.Limits{}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sp.Close() })
			pub := &switchPublisher{JetStream: b.js}
			h := newHandler(t, Config{Secrets: [][]byte{[]byte(fixtureSecret)}, PublishTimeout: time.Second}, pub, WithSpool(realSpool{sp}))

			hooks := []*fixture{loadFixture(t, "push-multi-commit"), loadFixture(t, "form-push-multi-commit")}
			for i, f := range hooks {
				spoolIt := (i == 0) == spoolFirst
				pub.down.Store(spoolIt)
				resp := serve(t, h, f.request())
				if resp.Code != http.StatusAccepted || resp.Spooled != spoolIt {
					t.Fatalf("%s (spool %v): %d %s", f.Name, spoolIt, resp.Code, resp.Raw)
				}
				if spoolIt {
					forward(t, sp, b.js)
				}
			}
			if got := b.count(t); got != 1 {
				t.Errorf("stream holds %d events, want 1", got)
			}
		})
	}
}

// realSpool adapts the spool package to [Spooler], as forgebus does.
type realSpool struct{ s *spool.Spool }

func (a realSpool) Append(msgID, subject string, data []byte) error {
	return a.s.Append(spool.Entry{MsgID: msgID, Subject: subject, Data: data})
}

func (a realSpool) Depth() int { return a.s.Depth() }

// forward runs the spool's forwarder until the spool is empty.
func forward(t *testing.T, sp *spool.Spool, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Forward(ctx, js) }()
	deadline := time.Now().Add(10 * time.Second)
	for sp.Depth() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if sp.Depth() > 0 {
		t.Fatalf("spool still holds %d entries", sp.Depth())
	}
}

// dupPublisher acks every publish as a duplicate of seq 7 and cannot read
// stored events, as a connection without the rights to would.
type dupPublisher struct{}

func (dupPublisher) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return &jetstream.PubAck{Stream: "FORGE_EVENTS", Sequence: 7, Duplicate: true}, nil
}

// TestDuplicateStoredEventUnreadable: when the stored event cannot be read
// back, the duplicate is still 202 duplicate with the acked sequence, and is
// counted and logged as of kind unknown.
func TestDuplicateStoredEventUnreadable(t *testing.T) {
	var out bytes.Buffer
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h, err := NewHandler(signedConfig(fixtureSecret), dupPublisher{}, zerolog.New(&out), WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	f := loadFixture(t, "push-multi-commit")
	resp := serve(t, h, f.request())
	if resp.Code != http.StatusAccepted || !resp.Duplicate || resp.StreamSeq != 7 || resp.ID != f.delivery() {
		t.Fatalf("%d %s, want 202 duplicate at seq 7 with its own id", resp.Code, resp.Raw)
	}
	if !strings.Contains(out.String(), `"duplicate_of":"unknown"`) {
		t.Errorf("log line does not say the kind is unknown: %s", out.String())
	}
	if got := gathered(t, reg)[`forgebus_ingest_duplicates_total{kind="unknown"}`]; got != 1 {
		t.Errorf("duplicates{kind=unknown} = %v, want 1", got)
	}
}
