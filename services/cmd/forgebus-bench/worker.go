package main

import (
	"context"
	"fmt"
	"time"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// benchWorker measures the worker runtime with a no-op handler against a
// bare nats.go loop doing the same broker work, on the same stream.
func benchWorker(ctx context.Context, st *stack, o options) error {
	if err := st.purge(ctx, schemas.StreamEvents); err != nil {
		return err
	}
	res, err := runtime.Bench(ctx, st.js, o.workerN, o.inFlight)
	if err != nil {
		return fmt.Errorf("worker bench: %w", err)
	}
	row := func(f runtime.BenchFigures) string {
		return fmt.Sprintf("%8.0f msg/s  p50 %7s  p99 %7s  (%d messages)",
			f.PerSecond, f.P50.Round(time.Microsecond), f.P99.Round(time.Microsecond), f.Messages)
	}
	fmt.Printf("worker runtime, no-op handler, one replica, %d in flight\n", res.InFlight)
	fmt.Printf("  forgebus runtime                               %s\n", row(res.Runtime))
	fmt.Printf("  ceiling (pull, result pub+ack, ack)            %s\n", row(res.Ceiling))
	fmt.Printf("  ceiling + idempotency record (KV put)          %s\n", row(res.CeilingIdem))
	fmt.Printf("  ratio runtime/ceiling %.2f   (target >= 0.50: %s)   runtime/(ceiling+KV put) %.2f\n\n",
		res.Ratio, verdict(res.Ratio >= 0.5), res.RatioIdem)
	return st.purge(ctx, schemas.StreamEvents)
}
