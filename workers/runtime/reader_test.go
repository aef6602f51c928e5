package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// Each listing of the dead letters reads FORGE_DLQ through an ordered
// consumer. nats.go leaves one for 5 minutes after its last pull, and the
// server allows 1,000 consumers per stream by default, so reads in a loop
// (a console page reloaded, a test waiting for a record) were refused with
// "maximum consumers limit reached". A read removes its consumer when it
// ends.
func TestReadsLeaveNoConsumers(t *testing.T) {
	_, _, js := broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 1010 {
		if _, err := ListDeadLetters(ctx, js, ""); err != nil {
			t.Fatalf("listing %d: %v", i+1, err)
		}
	}
	if n := natstest.StreamState(t, js, schemas.StreamDLQ).Consumers; n != 0 {
		t.Errorf("%d consumers left on %s after the listings, want 0", n, schemas.StreamDLQ)
	}
}
