package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// A node dies while the event's claim is on its way: the request is lost
// and its reply never comes. The job must not wait for that reply until
// its job timeout, keeping the message with its heartbeat all that time
// (seen in the compose test: a message held 10 minutes after a NATS node
// was killed). It gives up after the publish timeout, and the event is
// handled once.
func TestLostClaimReplyDoesNotHoldTheJob(t *testing.T) {
	srv, _, js := broker(t)
	s := fastSettings()
	s.AckWait = 2 * time.Second
	s.JobTimeout = 5 * time.Minute
	w, p, calls := behindProxy(t, srv, js, "lost", s)
	// The claim of the event: its key's Create in the worker's bucket.
	p.CutOn("$KV." + IdempotencyBucket(w).Bucket + ".")
	publish(t, js, envelope("lost-1"), "")

	began := time.Now()
	deadline := began.Add(45 * time.Second)
	for len(resultsOf(results(t, js), "lost-1", schemas.OutcomeSucceeded)) == 0 {
		if time.Now().After(deadline) {
			ci, err := consumerInfo(js, "lost")
			if err != nil {
				t.Fatal(err)
			}
			t.Fatalf("no result after %s (connection cut: %v): pending=%d ack_pending=%d redelivered=%d delivered=%d; results %+v",
				time.Since(began).Round(time.Second), p.Cut() != "", ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.Delivered.Stream, results(t, js))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.Cut() == "" {
		t.Fatal("the claim never went through the proxy")
	}
	if n := calls.get("lost-1"); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
	t.Logf("dropped %q", p.Cut())
	t.Logf("handled %s after the claim was lost", time.Since(began).Round(100*time.Millisecond))
}

// The ack of a handled event is lost (its node dies as it leaves), so
// JetStream delivers the message again after ack_wait, and the redelivery,
// finding the event done by this same message, publishes its result again
// under the same Nats-Msg-Id. FORGE_RESULTS keeps one copy only while the
// first is inside its duplicate window: the compose test stored a second
// terminal result when that window was the server's default, 2 minutes,
// and docs' ack_wait 2 minutes as well. forgebus provisions FORGE_RESULTS
// with the duplicate window (24 h; services/provision), longer than any
// ack_wait; here a minute stands for it against a 2 s ack_wait.
func TestLostAckPublishesNoSecondResult(t *testing.T) {
	srv, _, js := broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{
		Name: schemas.StreamResults, Subjects: schemas.ResultsSubjects, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	s := fastSettings()
	s.AckWait = 2 * time.Second
	_, p, calls := behindProxy(t, srv, js, "lostack", s)
	p.CutOn("+ACK")
	publish(t, js, envelope("lostack-1"), "")

	natstest.Eventually(t, 20*time.Second, "the message delivered again and acked", func() bool {
		ci, err := consumerInfo(js, "lostack")
		return err == nil && ci.Delivered.Consumer >= 2 && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	if p.Cut() == "" {
		t.Fatal("the ack never went through the proxy")
	}
	if n := calls.get("lostack-1"); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
	time.Sleep(500 * time.Millisecond) // a second result, if any, is stored by now
	if got := resultsOf(results(t, js), "lostack-1", schemas.OutcomeSucceeded); len(got) != 1 {
		t.Errorf("%d succeeded results for the event, want 1: %+v", len(got), got)
	}
}

// behindProxy starts worker name with settings s, connected to srv through
// a proxy, its handler counting calls per event id, and waits until it
// pulls.
func behindProxy(t *testing.T, srv *natstest.Server, js jetstream.JetStream, name string, s Settings) (Worker, *natstest.Proxy, *counter) {
	t.Helper()
	w := Worker{Name: name, Subjects: []string{"forge.>"}, Settings: s}
	p := natstest.NewProxy(t, srv.URL())
	_, wjs := natstest.Dial(t, p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	calls := newCounter()
	w.Handler = HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
		calls.inc(ev.ID)
		return Report{}, nil
	})
	start(t, wjs, w)
	natstest.Eventually(t, 10*time.Second, "the worker pulls", func() bool {
		ci, err := consumerInfo(js, name)
		return err == nil && ci.NumWaiting > 0
	})
	return w, p, calls
}
