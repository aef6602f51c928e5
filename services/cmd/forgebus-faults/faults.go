package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

func (e *env) ingestURLs() []string {
	urls := make([]string, len(e.ingest))
	for i, p := range e.ingest {
		urls[i] = "http://" + p.addr
	}
	return urls
}

// faults is the fault test: post, inject the three faults at fixed points,
// drain, count, verify.
func (e *env) faults(ctx context.Context) error {
	o := e.opts
	hooks, err := makeHooks(o.hooks, o.modelsEvery, e.repo, []byte(webhookSecret))
	if err != nil {
		return err
	}
	at := map[int]func(){
		o.hooks * 20 / 100: func() { e.restart(ctx, e.models[0], 2*time.Second) },
		o.hooks * 40 / 100: func() { e.killNATS(ctx, 5*time.Second) },
		o.hooks * 65 / 100: func() { e.restart(ctx, e.ingest[0], 2*time.Second) },
	}
	p := &poster{
		urls:     e.ingestURLs,
		client:   &http.Client{Timeout: 15 * time.Second}, // Gogs's delivery timeout
		attempts: 6,
	}
	t0 := time.Now()
	fmt.Printf("posting %d signed webhooks over %s to 2 ingest processes\n", o.hooks, o.spread)
	lr := p.run(ctx, hooks, o.spread, o.conc, at)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("posted in %s; answers: %s\n", lr.elapsed.Round(time.Millisecond), fmtCodes(lr.codes))

	tDrain := time.Now()
	if err := drained(ctx, e.js, []string{schemas.StreamEvents, schemas.StreamResults, schemas.StreamDLQ}, o.drain); err != nil {
		return err
	}
	fmt.Printf("drained in %s\n", time.Since(tDrain).Round(time.Millisecond))
	// A read can meet a stream that is still electing a leader after the
	// node restart: try again, from scratch, a few times.
	var c *counts
	for try := 1; ; try++ {
		if c, err = countStreams(ctx, e.js); err == nil {
			break
		}
		if try == 8 || ctx.Err() != nil {
			return err
		}
		fmt.Printf("count: %v; again in 2s\n", err)
		time.Sleep(2 * time.Second)
	}
	// A broken chain fails every time; a stream still settling after the
	// node restart only once: try up to three times.
	verifyOut, verifyErr := e.auditVerify(ctx)
	for try := 1; verifyErr != nil && try < 3 && ctx.Err() == nil; try++ {
		fmt.Printf("audit verify: %v: %s; again in 2s\n", verifyErr, verifyOut)
		time.Sleep(2 * time.Second)
		verifyOut, verifyErr = e.auditVerify(ctx)
	}
	return e.report(hooks, lr, c, verifyOut, verifyErr, time.Since(t0))
}

func fmtCodes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// report prints the table and returns errCheck when an invariant fails.
func (e *env) report(hooks []hook, lr loadResult, c *counts, verifyOut string, verifyErr error, total time.Duration) error {
	var problems []string
	fail := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	modelsHooks := map[string]bool{}
	for _, h := range hooks {
		if h.models {
			modelsHooks[h.id] = true
		}
	}
	lost, dupStored, unknown := 0, 0, 0
	for id := range lr.accepted {
		if c.events[id] == 0 {
			lost++
		}
	}
	posted := map[string]bool{}
	for _, h := range hooks {
		posted[h.id] = true
	}
	for id, n := range c.events {
		if n > 1 {
			dupStored++
		}
		if !posted[id] {
			unknown++
		}
	}
	stored := len(c.events)
	if lost > 0 {
		fail("%d deliveries answered 2xx are not in %s", lost, schemas.StreamEvents)
	}
	if dupStored > 0 {
		fail("%d delivery ids are in %s more than once", dupStored, schemas.StreamEvents)
	}
	if unknown > 0 {
		fail("%d events in %s were never posted", unknown, schemas.StreamEvents)
	}

	// models: exactly one terminal result (duplicates aside) per stored event.
	const worker = "models"
	missing, multi, onlyDup := 0, 0, 0
	var sample []string
	for id := range c.events {
		switch n := c.terminal[worker][id]; {
		case n == 0 && c.dupIDs[worker][id]:
			onlyDup++
			if len(sample) < 3 {
				sample = append(sample, id)
			}
		case n == 0:
			missing++
		case n > 1:
			multi++
		}
	}
	if missing > 0 {
		fail("%s: %d stored events have no terminal result", worker, missing)
	}
	if onlyDup > 0 {
		fail("%s: %d events have only a %q result: their real outcome was never published to %s (e.g. event_id %s)",
			worker, onlyDup, schemas.OutcomeDuplicate, schemas.StreamResults, strings.Join(sample, ", "))
	}
	if multi > 0 {
		fail("%s: %d events have more than one terminal result", worker, multi)
	}
	// Effects: one POST per models event that succeeded, none twice.
	posts := e.fx.snapshot()
	dupEffects, effects, wantEffects, strayEffects := 0, 0, 0, 0
	for id, n := range posts {
		effects += n
		if n > 1 {
			dupEffects++
		}
		if !modelsHooks[id] {
			strayEffects++
		}
	}
	for id := range c.events {
		if modelsHooks[id] {
			wantEffects++
			if posts[id] == 0 && c.outcomes[worker] != nil {
				fail("%s: event %s stored but its effect never ran", worker, id)
			}
		}
	}
	if dupEffects > 0 {
		fail("%s: %d events had their effect (refresh POST) run more than once", worker, dupEffects)
	}
	if strayEffects > 0 {
		fail("%s: %d effects for events that should not have one", worker, strayEffects)
	}
	// Audit: one event record per stored event.
	auditMissing, auditDup := 0, 0
	for id := range c.events {
		switch n := c.auditEvents[id]; {
		case n == 0:
			auditMissing++
		case n > 1:
			auditDup++
		}
	}
	if auditMissing > 0 || auditDup > 0 {
		fail("audit: %d stored events without an event record, %d with more than one", auditMissing, auditDup)
	}
	if verifyErr != nil {
		fail("forgebus audit verify: %v: %s", verifyErr, verifyOut)
	}

	fmt.Println()
	fmt.Println("faults injected:")
	for _, f := range e.notes {
		fmt.Println("  " + f)
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "  %s\t%v\n", k, v) }
	row("posted (distinct deliveries)", lr.posted)
	row("accepted (answered 2xx)", len(lr.accepted))
	row("never accepted (gave up)", lr.failed)
	row("needed a retry", lr.retried)
	row("stored in FORGE_EVENTS", stored)
	row("lost (accepted, not stored)", lost)
	row("duplicated in FORGE_EVENTS", dupStored)
	row("handled by models (terminal results)", sumCounts(c.terminal[worker]))
	row("  outcomes", fmtOutcomes(c.outcomes[worker]))
	row("  events with 0 / >1 terminal results", fmt.Sprintf("%d / %d", missing, multi))
	row("  events whose only result is \"duplicate\"", onlyDup)
	row("  dead letters (FORGE_DLQ)", c.deadLetters[worker])
	row("  effects run (refresh POSTs)", fmt.Sprintf("%d for %d stored models events", effects, wantEffects))
	row("  duplicated effects", dupEffects)
	row("handled by audit (event records)", len(c.auditEvents))
	row("  events with 0 / >1 event records", fmt.Sprintf("%d / %d", auditMissing, auditDup))
	row("  audit records / results / dead letters", fmt.Sprintf("%d / %d / %d", c.auditRecords, c.resultsMsgs, c.dlqMsgs))
	row("forgebus audit verify", firstLine(verifyOut))
	e.mu.Lock()
	exits := strings.Join(e.exits, ", ")
	e.mu.Unlock()
	if exits == "" {
		exits = "none"
	}
	row("unplanned process exits (restarted)", exits)
	row("wall time", total.Round(time.Second))
	tw.Flush()
	fmt.Println()
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Println("FAIL: " + p)
		}
		return fmt.Errorf("%d problems: %w", len(problems), errCheck)
	}
	fmt.Println("PASS: lost = 0, duplicated events = 0, duplicated effects = 0, one terminal result per event per worker, audit chain verified")
	return nil
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func fmtOutcomes(m map[schemas.Outcome]int) string {
	s := map[string]int{}
	for k, v := range m {
		s[string(k)] = v
	}
	return fmtCodes(s)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
