package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
)

// A small round measures all three sides on every message and leaves no
// results behind.
func TestWorkerRound(t *testing.T) {
	srv := natstest.Run(t)
	_, js := srv.Connect(t)
	natstest.Streams(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := runWorkerRound(ctx, js, 200, 16)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]benchFigures{"runtime": res.Runtime, "fair": res.Fair, "bare": res.Bare} {
		if f.Messages != 200 || f.PerSecond <= 0 || f.P99 < f.P50 {
			t.Errorf("%s = %+v, want 200 messages at a positive rate", name, f)
		}
	}
	t.Logf("runtime %.0f/s, fair %.0f/s, bare %.0f/s: ratio %.2f, to bare %.2f",
		res.Runtime.PerSecond, res.Fair.PerSecond, res.Bare.PerSecond, res.Ratio(), res.RatioBare())
	st, err := js.Stream(ctx, "FORGE_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("the round left %d results", info.State.Msgs)
	}
}

// A side that stops settling messages is called stuck after the stall,
// with how far it got and the goroutines, rather than hang the run.
func TestBenchStuck(t *testing.T) {
	l := newLatencies(3)
	var dump bytes.Buffer
	l.dump = &dump
	l.add(time.Now())
	start := time.Now()
	select {
	case <-l.stuck(context.Background(), 200*time.Millisecond):
	case <-time.After(5 * time.Second):
		t.Fatal("a side with no progress was not called stuck")
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("called stuck after %s, before the 200ms stall", took)
	}
	if err := l.stuckError("runtime", 200*time.Millisecond); !strings.Contains(err.Error(), "runtime stuck: 1 of 3 messages settled") {
		t.Fatalf("stuckError = %v", err)
	}
	if !strings.Contains(dump.String(), "goroutine") {
		t.Fatalf("no goroutine dump written: %q", dump.String())
	}

	// Each message added resets the stall; all n in ends the watch.
	l = newLatencies(2)
	stuck := l.stuck(context.Background(), 300*time.Millisecond)
	for range 2 {
		l.add(time.Now())
	}
	select {
	case <-l.done:
	case <-time.After(5 * time.Second):
		t.Fatal("done not closed after all messages")
	}
	select {
	case <-stuck:
		t.Fatal("called stuck after all messages were in")
	case <-time.After(600 * time.Millisecond):
	}
}
