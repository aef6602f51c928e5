package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

func TestMetrics(t *testing.T) {
	_, _, js := broker(t)
	reg := prometheus.NewRegistry()
	h := HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
		if Attempt(ctx) == 1 && ev.ID == "again" {
			return Report{}, errFlaky
		}
		if EventSeq(ctx) == 0 {
			t.Error("EventSeq(ctx) = 0 in a handler")
		}
		if _, ok := JetStreamMsg(ctx); !ok {
			t.Error("no JetStreamMsg(ctx) in a handler")
		}
		return Report{}, nil
	})
	w := Worker{Name: "metered", Subjects: []string{"forge.>"}, Settings: fastSettings(), Handler: h,
		Policy: Policy{DenySenders: []string{"mallory"}}}
	rt, err := New(js, w, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second worker on the same registry (as in "forgebus dev") shares
	// the collectors.
	if _, err := New(js, Worker{Name: "other", Subjects: []string{"forge.>"}, Settings: fastSettings(), Handler: h}, zerolog.Nop(), reg); err != nil {
		t.Fatalf("second New on one registry: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); <-done }()
	publish(t, js, envelope("ok"), "")
	publish(t, js, envelope("no", withSender("mallory")), "")
	publish(t, js, envelope("again"), "")
	m := rt.metrics
	natstest.Eventually(t, 10*time.Second, "three jobs done", func() bool {
		return testutil.ToFloat64(m.jobs.WithLabelValues("metered", "succeeded")) == 2 &&
			testutil.ToFloat64(m.jobs.WithLabelValues("metered", "denied")) == 1
	})
	if got := testutil.ToFloat64(m.jobs.WithLabelValues("metered", "failed")); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.redeliveries.WithLabelValues("metered")); got != 1 {
		t.Errorf("redeliveries = %v, want 1", got)
	}
	// The gauge drops as the job's goroutine returns, just after its
	// outcome is counted.
	natstest.Eventually(t, 5*time.Second, "in flight back to 0", func() bool {
		return testutil.ToFloat64(m.inFlight.WithLabelValues("metered")) == 0
	})
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
	if n, err := testutil.GatherAndCount(reg, "forgebus_worker_consumer_pending"); err != nil || n != 1 {
		t.Errorf("consumer_pending series = %d, %v", n, err)
	}
}
