// Package streamcheck holds what the fault and compose tests both ask of
// the streams: whether every consumer has drained, and every message up
// to the last sequence ([Read]).
package streamcheck

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrTimeout is a wait that ran out of time.
var ErrTimeout = errors.New("timed out")

// Drained waits until every consumer of the given streams has nothing
// pending and nothing waiting for an ack, three polls in a row, polling
// every poll, for at most d.
func Drained(ctx context.Context, js jetstream.JetStream, streams []string, d, poll time.Duration) error {
	deadline := time.Now().Add(d)
	var last string
	quiet := 0
	for time.Now().Before(deadline) {
		busy := ""
		for _, name := range streams {
			s, err := js.Stream(ctx, name)
			if err != nil {
				busy = fmt.Sprintf("%s: %v", name, err)
				break
			}
			l := s.ListConsumers(ctx)
			for ci := range l.Info() {
				if ci.NumPending > 0 || ci.NumAckPending > 0 {
					busy = fmt.Sprintf("%s/%s pending=%d ack_pending=%d", name, ci.Name, ci.NumPending, ci.NumAckPending)
					break
				}
			}
			if err := l.Err(); err != nil && busy == "" {
				busy = fmt.Sprintf("%s consumers: %v", name, err)
			}
			if busy != "" {
				break
			}
		}
		if busy == "" {
			quiet++
			if quiet >= 3 {
				return nil
			}
		} else {
			quiet, last = 0, busy
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
	return fmt.Errorf("consumers not drained after %s (%s): %w", d, last, ErrTimeout)
}
