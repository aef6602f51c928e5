package streamcheck

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

// A moment of "no responders" from the cluster's JetStream API is asked
// again; any other error ends the read at once.
func TestRetryTransient(t *testing.T) {
	calls := 0
	err := RetryTransient(context.Background(), func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("read FORGE_EVENTS: %w", nats.ErrNoResponders)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("no responders twice, then ok: err %v after %d calls, want nil after 3", err, calls)
	}

	calls = 0
	refused := errors.New("stream not found")
	if err := RetryTransient(context.Background(), func() error { calls++; return refused }); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("another error: %v after %d calls, want it after 1", err, calls)
	}
}
