package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// request is what the load generator posts: one signed push delivery. With
// secret set, each post's payload is made new (a "bench_seq" member first)
// and signed with it: ingest stores one event per signed payload, so the same
// payload again would measure its duplicate path.
type request struct {
	url         string
	body        []byte
	contentType string
	event       string
	signature   string
	secret      []byte
}

// loadResult is what one load run measured.
type loadResult struct {
	sent, ok int
	codes    map[int]int
	elapsed  time.Duration
	lat      []time.Duration
}

func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return r.lat[i]
}

func (r loadResult) String() string {
	return fmt.Sprintf("%8.0f req/s  p50 %7s  p99 %7s  (%d/%d 2xx)",
		r.rate(), r.pct(0.50).Round(time.Microsecond), r.pct(0.99).Round(time.Microsecond), r.ok, r.sent)
}

// post sends n requests from `clients` concurrent clients, each with a fresh
// delivery id, and records every latency.
func post(ctx context.Context, req request, n, clients int) (loadResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	var (
		next     atomic.Int64
		mu       sync.Mutex
		res      = loadResult{codes: map[int]int{}, lat: make([]time.Duration, 0, n)}
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, n/clients+1)
			codes := map[int]int{}
			var err error
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				var code int
				var d time.Duration
				code, d, err = postOne(ctx, client, req)
				if err != nil {
					break
				}
				codes[code]++
				lat = append(lat, d)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			res.lat = append(res.lat, lat...)
			for c, k := range codes {
				res.codes[c] += k
				res.sent += k
				if c/100 == 2 {
					res.ok += k
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res, firstErr
}

func postOne(ctx context.Context, client *http.Client, req request) (int, time.Duration, error) {
	id := uuid.NewString()
	body, sig := req.body, req.signature
	if req.secret != nil && len(body) > 1 && body[0] == '{' {
		body = append([]byte(`{"bench_seq":"`+id+`",`), body[1:]...)
		sig = sign(req.secret, body)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	hr.Header.Set("Content-Type", req.contentType)
	hr.Header.Set("User-Agent", "GogsServer")
	hr.Header.Set("X-Gogs-Event", req.event)
	hr.Header.Set("X-Gogs-Delivery", id)
	hr.Header.Set("X-Gogs-Signature", sig)
	t0 := time.Now()
	resp, err := client.Do(hr)
	if err != nil {
		return 0, 0, fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(t0), nil
}
