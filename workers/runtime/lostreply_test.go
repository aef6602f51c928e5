package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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
	w := Worker{Name: "lost", Subjects: []string{"forge.>"}, Settings: s}
	p := natstest.NewProxy(t, srv.URL())
	_, wjs := natstest.Dial(t, p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	calls := newCounter()
	w.Handler = HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
		calls.inc(ev.ID)
		return Report{}, nil
	})
	start(t, wjs, w)
	natstest.Eventually(t, 10*time.Second, "the worker pulls", func() bool {
		ci, err := consumerInfo(js, "lost")
		return err == nil && ci.NumWaiting > 0
	})
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
