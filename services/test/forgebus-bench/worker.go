package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

// benchWorker measures the worker runtime with a no-op handler against
// the fair ceiling (the same broker and encoding work in a plain loop) and
// the bare loop, on the same server. One round swings a lot on a shared
// machine, so it runs o.rounds rounds and shows the median round by ratio,
// with every round's ratio beside it.
func benchWorker(ctx context.Context, st *stack, o options) error {
	if o.rounds < 1 {
		return fmt.Errorf("worker bench: -worker-rounds %d: want at least 1", o.rounds)
	}
	var rounds []workerRound
	for range o.rounds {
		if err := st.purge(ctx, schemas.StreamEvents); err != nil {
			return err
		}
		res, err := runWorkerRound(ctx, st.js, o.workerN, o.inFlight)
		if err != nil {
			return err
		}
		rounds = append(rounds, res)
	}
	ratios := make([]string, len(rounds))
	rates := make([]string, len(rounds))
	cpus := make([]string, len(rounds))
	for i, r := range rounds {
		ratios[i] = fmt.Sprintf("%.2f", r.Ratio())
		rates[i] = fmt.Sprintf("%.0f/%.0f/%.0f", r.Runtime.PerSecond, r.Fair.PerSecond, r.Bare.PerSecond)
		cpus[i] = fmt.Sprintf("%d/%d/%d", r.Runtime.CPUPerMsg.Microseconds(), r.Fair.CPUPerMsg.Microseconds(), r.Bare.CPUPerMsg.Microseconds())
	}
	slices.SortFunc(rounds, func(a, b workerRound) int { return cmp.Compare(a.Ratio(), b.Ratio()) })
	res := rounds[len(rounds)/2]
	row := func(f benchFigures) string {
		return fmt.Sprintf("%8.0f msg/s  p50 %7s  p99 %7s  cpu %4dµs/msg  (%d messages)",
			f.PerSecond, f.P50.Round(time.Microsecond), f.P99.Round(time.Microsecond), f.CPUPerMsg.Microseconds(), f.Messages)
	}
	fmt.Printf("worker runtime, no-op handler, one replica, %d in flight (median of %d rounds by ratio)\n", res.InFlight, len(rounds))
	fmt.Printf("  forgebus runtime                                   %s\n", row(res.Runtime))
	fmt.Printf("  fair ceiling (decode, KV write, result pub+ack, ack) %s\n", row(res.Fair))
	fmt.Printf("  bare loop (pull, raw result pub+ack, ack)          %s\n", row(res.Bare))
	fmt.Printf("  ratio runtime/fair ceiling %.3f   runtime/bare loop %.3f\n", res.Ratio(), res.RatioBare())
	fmt.Printf("  runtime/fair ratio of each round, in order: %s\n", strings.Join(ratios, " "))
	fmt.Printf("  msg/s of each round, runtime/fair/bare: %s\n", strings.Join(rates, " "))
	fmt.Printf("  cpu µs/msg of each round, runtime/fair/bare: %s\n\n", strings.Join(cpus, " "))
	return st.purge(ctx, schemas.StreamEvents)
}
