package runtime

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// TestStopNakRedeliversPromptly: a job cut short by a stop is nak'ed so
// that the replica started after it runs the job again at once, not when
// the ack wait (20 s here) runs out; also when the server restarted in
// between, as the embedded one does with "forgebus dev".
func TestStopNakRedeliversPromptly(t *testing.T) {
	for _, tc := range []struct {
		name                string
		prefetch, restartNS bool
	}{
		{name: "pull per free slot"},
		{name: "prefetch", prefetch: true},
		{name: "server restarted", restartNS: true},
		{name: "prefetch, server restarted", prefetch: true, restartNS: true},
	} {
		prefetch := tc.prefetch
		t.Run(tc.name, func(t *testing.T) {
			ns, nc, js := broker(t)
			var runs atomic.Int32
			var restarted atomic.Int64 // unix nanos of the second run's start
			s := fastSettings()
			s.AckWait = 20 * time.Second
			s.GracePeriod = 200 * time.Millisecond
			if prefetch {
				s.JobTimeout = 5 * time.Second
			}
			if s.prefetch() != prefetch {
				t.Fatalf("prefetch = %v", s.prefetch())
			}
			w := Worker{Name: "stopnak", Subjects: []string{"forge.>"}, Settings: s,
				Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
					if runs.Add(1) == 1 {
						<-ctx.Done() // longer than the grace period
						return Report{}, ctx.Err()
					}
					restarted.CompareAndSwap(0, time.Now().UnixNano())
					return Report{}, nil
				})}
			stop := start(t, js, w)
			publish(t, js, envelope("slow"), "")
			natstest.Eventually(t, 5*time.Second, "job started", func() bool { return runs.Load() == 1 })
			if err := stop(); err != nil {
				t.Fatalf("Run after stop = %v", err)
			}
			if tc.restartNS {
				// As the platform does before it stops the embedded server.
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				ns.Restart()
				_, js = ns.Connect(t)
			}
			t0 := time.Now()
			start(t, js, w)
			natstest.Eventually(t, 25*time.Second, "job ran again", func() bool { return restarted.Load() != 0 })
			if d := time.Unix(0, restarted.Load()).Sub(t0); d > 5*time.Second {
				t.Errorf("job ran again %s after the restart; want about at once, not after the ack wait (%s)", d.Round(time.Millisecond), s.AckWait)
			}
		})
	}
}
