package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
)

func TestZZFetchMode(t *testing.T) {
	_, _, js := broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, inflight := range []int{4, 64} {
		subject, _ := benchEvents(ctx, js, "fm", 5000)
		s := DefaultSettings()
		s.MaxInFlight = inflight
		rt, _ := New(js, Worker{Name: "fm", Subjects: []string{subject}, Settings: s,
			Handler: HandlerFunc(func(context.Context, *schemas.Envelope) (Report, error) { return Report{}, nil })}, zerolog.Nop(), nil)
		lat := newLatencies(5000)
		rt.settled = func(d time.Duration) { lat.add(time.Now().Add(-d), d) }
		rctx, c2 := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rt.Run(rctx) }()
		<-lat.done
		c2()
		<-done
		t.Logf("inflight %d: %+v", inflight, lat.figures())
		benchCleanup(js, "fm", subject)
	}
}
