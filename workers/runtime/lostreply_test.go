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
	w, p, calls := behindProxy(t, srv, js, "lost", s, nil)
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
	_, p, calls := behindProxy(t, srv, js, "lostack", s, nil)
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
// a proxy, its handler counting calls per event id (and calling onCall, if
// set, on an event's first call), and waits until it pulls.
func behindProxy(t *testing.T, srv *natstest.Server, js jetstream.JetStream, name string, s Settings, onCall func(p *natstest.Proxy)) (Worker, *natstest.Proxy, *counter) {
	t.Helper()
	w := Worker{Name: name, Subjects: []string{"forge.>"}, Settings: s}
	p := natstest.NewProxy(t, srv.URL())
	_, wjs := natstest.Dial(t, p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	calls := newCounter()
	w.Handler = HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
		if calls.inc(ev.ID) == 1 && onCall != nil {
			onCall(p)
		}
		return Report{}, nil
	})
	start(t, wjs, w)
	natstest.Eventually(t, 10*time.Second, "the worker pulls", func() bool {
		ci, err := consumerInfo(js, name)
		return err == nil && ci.NumWaiting > 0
	})
	return w, p, calls
}

// The node dies as the job's done record leaves (the fault test: envsync
// applied an event the instant nats-1 was SIGKILLed, its record failed
// after a few quick tries, and a redelivery of the message took the key,
// still "running", over once its lease ran out and ran the handler again,
// which then found a newer push: a second terminal result). The effect is
// done, so its record is retried past the outage: a later copy of the
// event is then a duplicate and the handler runs once.
func TestLostRecordIsWrittenAfterReconnect(t *testing.T) {
	srv, _, js := broker(t)
	s := fastSettings()
	s.AckWait = 2 * time.Second
	var w Worker
	w, p, calls := behindProxy(t, srv, js, "lostrec", s, func(p *natstest.Proxy) {
		// The claim is written; the next write of the key is the record.
		p.CutOn("HPUB $KV." + IdempotencyBucket(w).Bucket + ".")
	})
	publish(t, js, envelope("lostrec-1"), "")
	natstest.Eventually(t, 45*time.Second, "the event's result", func() bool {
		return len(resultsOf(results(t, js), "lostrec-1", schemas.OutcomeSucceeded)) == 1
	})
	if p.Cut() == "" {
		t.Fatal("the record never went through the proxy")
	}
	// Another copy of the event (a replay, another hook's delivery).
	publish(t, js, envelope("lostrec-1"), "lostrec-1-copy")
	natstest.Eventually(t, 45*time.Second, "the copy's result", func() bool {
		rs := results(t, js)
		return len(resultsOf(rs, "lostrec-1", schemas.OutcomeDuplicate))+len(resultsOf(rs, "lostrec-1", schemas.OutcomeSucceeded)) >= 2
	})
	if n := calls.get("lostrec-1"); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
}
