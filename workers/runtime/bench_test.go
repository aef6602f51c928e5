package runtime

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// BenchmarkRuntime runs [Bench] with b.N events and reports both sides;
// `go test -run x -bench Runtime -benchtime 5000x`.
func BenchmarkRuntime(b *testing.B) {
	_, _, js := broker(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ResetTimer()
	res, err := Bench(ctx, js, b.N, 64)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Runtime.PerSecond, "runtime_msgs/s")
	b.ReportMetric(float64(res.Runtime.P99.Microseconds()), "runtime_p99_µs")
	b.ReportMetric(res.Ceiling.PerSecond, "ceiling_msgs/s")
	b.ReportMetric(float64(res.Ceiling.P99.Microseconds()), "ceiling_p99_µs")
	b.ReportMetric(res.Ratio, "ratio")
	b.ReportMetric(res.CeilingIdem.PerSecond, "ceiling_idem_msgs/s")
	b.ReportMetric(res.RatioIdem, "ratio_idem")
}

func TestBenchSmall(t *testing.T) {
	_, _, js := broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Bench(ctx, js, 200, 16)
	if err != nil {
		t.Fatal(err)
	}
	if res.Runtime.Messages != 200 || res.Ceiling.Messages != 200 || res.CeilingIdem.Messages != 200 || res.Ratio <= 0 {
		t.Fatalf("Bench = %+v", res)
	}
	t.Logf("runtime %.0f/s p99 %s; ceiling %.0f/s p99 %s; ratio %.2f; with idempotency %.0f/s, ratio %.2f",
		res.Runtime.PerSecond, res.Runtime.P99, res.Ceiling.PerSecond, res.Ceiling.P99, res.Ratio, res.CeilingIdem.PerSecond, res.RatioIdem)
	if n := streamCount(t, js, "FORGE_RESULTS"); n != 0 {
		t.Errorf("bench left %d results", n)
	}
}

// A bench side that stops settling messages is called stuck after the
// stall, with how far it got and the goroutines to see where it hangs.
func TestBenchStuck(t *testing.T) {
	l := newLatencies(3)
	var dump bytes.Buffer
	l.dump = &dump
	l.add(time.Now(), time.Millisecond)
	start := time.Now()
	select {
	case <-l.stuck(context.Background(), 200*time.Millisecond):
	case <-time.After(5 * time.Second):
		t.Fatal("a side with no progress was not called stuck")
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("called stuck after %s, before the 200ms stall", took)
	}
	if err := l.stuckError("runtime"); !strings.Contains(err.Error(), "runtime stuck: 1 of 3 messages settled") {
		t.Fatalf("stuckError = %v", err)
	}
	if !strings.Contains(dump.String(), "goroutine") {
		t.Fatalf("no goroutine dump written: %q", dump.String())
	}

	// Progress keeps it from being stuck; all messages in ends the watch.
	l = newLatencies(2)
	stuck := l.stuck(context.Background(), 300*time.Millisecond)
	for range 2 {
		time.Sleep(200 * time.Millisecond)
		l.add(time.Now(), time.Millisecond)
	}
	select {
	case <-stuck:
		t.Fatal("called stuck while messages kept settling")
	case <-time.After(500 * time.Millisecond):
	}
}
