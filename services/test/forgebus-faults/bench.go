package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/test/streamcheck"
)

// bench is the cluster benchmark (issue 6 point 5): signed webhooks at a
// fixed rate through the two ingest processes, the end-to-end latency from
// ingest's acceptance (the envelope's time) to the models handler's start
// (the result's started), and the bare JetStream publish ceiling of the
// same cluster, measured in the same run.
func (e *env) bench(ctx context.Context) error {
	o := e.opts
	if o.benchRate <= 0 || o.benchFor <= 0 {
		return fmt.Errorf("-bench-rate and -bench-for must be positive")
	}
	n := int(float64(o.benchRate) * o.benchFor.Seconds())
	hooks, err := makeHooks(n, mix{}, targets{models: e.repo}, []byte(webhookSecret))
	if err != nil {
		return err
	}
	p := &poster{urls: e.ingestURLs, client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}, attempts: 1}
	fmt.Printf("bench: %d webhooks at %d/s to 2 ingest processes (three-node cluster, R3 streams)\n", n, o.benchRate)
	lr := p.run(ctx, hooks, o.benchFor, 256, nil)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := streamcheck.Drained(ctx, e.js, []string{schemas.StreamEvents}, o.drain, 500*time.Millisecond); err != nil {
		return err
	}
	accepted := map[string]time.Time{}
	err = streamcheck.Read(ctx, e.js, schemas.StreamEvents, func(m jetstream.Msg) error {
		var env struct {
			ID   string    `json:"id"`
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(m.Data(), &env); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		accepted[env.ID] = env.Time
		return nil
	})
	if err != nil {
		return err
	}
	var lat []time.Duration
	err = streamcheck.Read(ctx, e.js, schemas.StreamResults, func(m jetstream.Msg) error {
		var r schemas.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("decode result: %w", err)
		}
		if t, ok := accepted[r.EventID]; ok && r.Worker == "models" && r.Outcome != schemas.OutcomeDuplicate {
			lat = append(lat, r.Started.Sub(t))
			delete(accepted, r.EventID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ceiling, err := e.publishCeiling(ctx, 20000, 512)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))].Round(100 * time.Microsecond)
	}
	rate := float64(len(lr.accepted)) / lr.elapsed.Seconds()
	fmt.Println()
	fmt.Printf("three-node cluster, streams R3, 2 ingest + 2 models replicas, offered %d webhooks/s for %s\n", o.benchRate, o.benchFor)
	fmt.Printf("  accepted            %d of %d (answers: %s) in %s = %.0f webhooks/s\n", len(lr.accepted), lr.posted, fmtCodes(lr.codes), lr.elapsed.Round(time.Millisecond), rate)
	fmt.Printf("  accepted -> handler start (models), %d events: p50 %s  p99 %s  max %s\n", len(lat), pct(0.50), pct(0.99), pct(1))
	fmt.Printf("  bare JetStream publish ceiling (R3, async, 512 in flight): %.0f msgs/s\n", ceiling)
	fmt.Printf("  ceiling / offered rate: %.1fx headroom on the broker\n", ceiling/float64(o.benchRate))
	if len(lr.accepted) < lr.posted {
		return fmt.Errorf("%d of %d webhooks not accepted: %w", lr.posted-len(lr.accepted), lr.posted, errCheck)
	}
	return nil
}

// publishCeiling publishes n small messages to a fresh R3 stream on the
// cluster, at most window unacknowledged, and returns messages per second.
func (e *env) publishCeiling(ctx context.Context, n, window int) (float64, error) {
	const name = "FAULTS_BENCH_CEILING"
	s, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{"faultsbench.>"}, Replicas: 3, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return 0, fmt.Errorf("ceiling stream: %w", err)
	}
	defer func() { _ = e.js.DeleteStream(context.WithoutCancel(ctx), s.CachedInfo().Config.Name) }()
	js, err := jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		return 0, err
	}
	body := make([]byte, 1024)
	start := time.Now()
	for i := range n {
		if _, err := js.PublishAsync("faultsbench.x", body, jetstream.WithMsgID("c"+strconv.Itoa(i))); err != nil {
			return 0, fmt.Errorf("ceiling publish: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		return 0, fmt.Errorf("ceiling publish: %w", errTimeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
