package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// benchWorker measures the worker runtime with a no-op handler against a
// bare nats.go loop doing the same broker work, on the same stream. One
// run swings by about 0.05 on two cores shared with the broker, so it runs
// o.rounds rounds (each: runtime, ceiling, ceiling + KV put) and shows the
// round whose ratio is the median, with every round's ratio beside it.
func benchWorker(ctx context.Context, st *stack, o options) error {
	if o.rounds < 1 {
		return fmt.Errorf("worker bench: -worker-rounds %d: want at least 1", o.rounds)
	}
	var rounds []runtime.BenchResult
	for range o.rounds {
		if err := st.purge(ctx, schemas.StreamEvents); err != nil {
			return err
		}
		res, err := runtime.Bench(ctx, st.js, o.workerN, o.inFlight)
		if err != nil {
			return fmt.Errorf("worker bench: %w", err)
		}
		rounds = append(rounds, res)
	}
	ratios := make([]string, len(rounds))
	rates := make([]string, len(rounds))
	for i, r := range rounds {
		ratios[i] = fmt.Sprintf("%.2f", r.Ratio)
		rates[i] = fmt.Sprintf("%.0f/%.0f", r.Runtime.PerSecond, r.Ceiling.PerSecond)
	}
	slices.SortFunc(rounds, func(a, b runtime.BenchResult) int { return cmp.Compare(a.Ratio, b.Ratio) })
	res := rounds[len(rounds)/2]
	row := func(f runtime.BenchFigures) string {
		return fmt.Sprintf("%8.0f msg/s  p50 %7s  p99 %7s  (%d messages)",
			f.PerSecond, f.P50.Round(time.Microsecond), f.P99.Round(time.Microsecond), f.Messages)
	}
	fmt.Printf("worker runtime, no-op handler, one replica, %d in flight (median of %d rounds by ratio)\n", res.InFlight, len(rounds))
	fmt.Printf("  forgebus runtime                               %s\n", row(res.Runtime))
	fmt.Printf("  ceiling (pull, result pub+ack, ack)            %s\n", row(res.Ceiling))
	fmt.Printf("  ceiling + idempotency record (KV put)          %s\n", row(res.CeilingIdem))
	fmt.Printf("  ratio runtime/ceiling %.3f   (target >= 0.50: %s)   runtime/(ceiling+KV put) %.2f\n",
		res.Ratio, verdict(res.Ratio >= 0.5), res.RatioIdem)
	fmt.Printf("  ratio of each round, in order: %s\n", strings.Join(ratios, " "))
	fmt.Printf("  msg/s of each round, runtime/ceiling: %s\n\n", strings.Join(rates, " "))
	return st.purge(ctx, schemas.StreamEvents)
}
