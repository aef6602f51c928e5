package main

import (
	"context"
	"fmt"
	"github.com/nats-io/nuid"
	"slices"
	"strings"

	"github.com/forgebus/forgebus/ingest"
	"github.com/forgebus/forgebus/schemas"
)

// maxAuthCost is the most throughput authentication may cost.
const maxAuthCost = 0.05

// benchAuthCost measures what NATS authentication costs: the real ingest
// handler (over ingest's own role's connection) and the worker runtime on a
// fresh stack with auth, against a fresh stack without, in interleaved
// rounds whose order alternates, so that a passing disturbance of the
// shared machine and the store's history hit both alike.
func benchAuthCost(ctx context.Context, fx fixtureFile, o options) error {
	off, err := startStack(ctx, false)
	if err != nil {
		return err
	}
	defer off.close()
	on, err := startStack(ctx, true)
	if err != nil {
		return err
	}
	defer on.close()
	stacks := []*stack{off, on}
	reqs := make([]request, len(stacks))
	for i, st := range stacks {
		h, err := ingest.NewHandler(ingest.Config{Secrets: [][]byte{[]byte(benchSecret)}}, st.ingestJS, quietLogger())
		if err != nil {
			return err
		}
		u, err := st.serve(h)
		if err != nil {
			return err
		}
		reqs[i] = request{url: u + "/hooks/gogs", body: fx.Body, contentType: "application/json",
			event: fx.Headers["X-Gogs-Event"], signature: sign([]byte(benchSecret), fx.Body)}
		if _, err := post(ctx, reqs[i], 1000, o.clients); err != nil {
			return err
		}
	}
	const ingestRounds = 3
	best := make([]loadResult, len(stacks))
	for round := range ingestRounds {
		for _, i := range order(round) {
			st := stacks[i]
			if err := st.purge(ctx, schemas.StreamEvents); err != nil {
				return err
			}
			res, err := post(ctx, reqs[i], o.requests, o.clients)
			if err != nil {
				return err
			}
			if res.ok != res.sent {
				return fmt.Errorf("auth cost: %s: only %d of %d answered 2xx: %v", reqs[i].url, res.ok, res.sent, res.codes)
			}
			if best[i].elapsed == 0 || res.rate() > best[i].rate() {
				best[i] = res
			}
		}
	}
	workerRounds := max(o.rounds, 3)
	rates := make([][]float64, len(stacks))
	for round := range workerRounds {
		for _, i := range order(round) {
			st := stacks[i]
			if err := st.purge(ctx, schemas.StreamEvents); err != nil {
				return err
			}
			res, err := benchRuntime(ctx, st.js, "bench-auth-"+nuid.Next(), o.workerN, o.inFlight)
			if err != nil {
				return fmt.Errorf("auth cost: worker bench: %w", err)
			}
			rates[i] = append(rates[i], res.PerSecond)
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	ingCost := 1 - best[1].rate()/best[0].rate()
	wOff, wOn := median(rates[0]), median(rates[1])
	wCost := 1 - wOn/wOff
	each := func(v []float64) string {
		parts := make([]string, len(v))
		for i, r := range v {
			parts[i] = fmt.Sprintf("%.0f", r)
		}
		return strings.Join(parts, " ")
	}
	fmt.Printf("NATS auth on vs off, same run (ingest best of %d interleaved rounds; runtime median of %d)\n", ingestRounds, workerRounds)
	fmt.Printf("  ingest, %d clients, auth off   %s\n", o.clients, best[0])
	fmt.Printf("  ingest, %d clients, auth on    %s\n", o.clients, best[1])
	fmt.Printf("  ingest cost of auth  %+.1f%%   (target <= %.0f%%: %s)\n", 100*ingCost, 100*maxAuthCost, verdict(ingCost <= maxAuthCost))
	fmt.Printf("  worker runtime, auth off   %8.0f msg/s  (rounds: %s)\n", wOff, each(rates[0]))
	fmt.Printf("  worker runtime, auth on    %8.0f msg/s  (rounds: %s)\n", wOn, each(rates[1]))
	fmt.Printf("  runtime cost of auth %+.1f%%   (target <= %.0f%%: %s)\n\n", 100*wCost, 100*maxAuthCost, verdict(wCost <= maxAuthCost))
	return nil
}

// order is off then on in even rounds, on then off in odd ones.
func order(round int) []int {
	if round%2 == 0 {
		return []int{0, 1}
	}
	return []int{1, 0}
}
