package runtime

import (
	"context"
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
