package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// capture is one recorded Gogs request (testdata/gogs/README.md).
type capture struct {
	name    string
	event   string
	body    map[string]any
	headers map[string]string
}

// loadCaptures reads the signed JSON push deliveries of testdata/gogs:
// the event every worker handles.
func loadCaptures(root string) ([]capture, error) {
	files, err := filepath.Glob(filepath.Join(root, "testdata", "gogs", "push-*.json"))
	if err != nil {
		return nil, fmt.Errorf("list captures: %w", err)
	}
	sort.Strings(files)
	var out []capture
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read capture: %w", err)
		}
		var c struct {
			Path       string            `json:"path"`
			Headers    map[string]string `json:"headers"`
			BodyBase64 string            `json:"body_base64"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode capture %s: %w", filepath.Base(f), err)
		}
		if c.Path != "/run1/json-signed" {
			continue
		}
		body, err := base64.StdEncoding.DecodeString(c.BodyBase64)
		if err != nil {
			return nil, fmt.Errorf("decode capture %s body: %w", filepath.Base(f), err)
		}
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			return nil, fmt.Errorf("decode capture %s payload: %w", filepath.Base(f), err)
		}
		if _, ok := m["after"].(string); !ok {
			continue
		}
		out = append(out, capture{name: filepath.Base(f), event: c.Headers["X-Gogs-Event"], body: m, headers: c.Headers})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no signed JSON push captures in testdata/gogs")
	}
	return out, nil
}

// delivery is one request, built once and sent once.
type delivery struct {
	id    string
	event string
	body  []byte
	sig   string
}

// makeDeliveries turns the captures, round robin, into n deliveries with
// new delivery ids and new "after" commits (ingest treats a signed payload
// it already stored as a duplicate whatever its delivery id), each signed
// with secret as Gogs signs: hex HMAC-SHA256 of the body.
func makeDeliveries(caps []capture, n int, secret []byte) ([]delivery, error) {
	out := make([]delivery, 0, n)
	for i := range n {
		c := caps[i%len(caps)]
		commit := make([]byte, 20)
		if _, err := rand.Read(commit); err != nil {
			return nil, err
		}
		m := make(map[string]any, len(c.body))
		for k, v := range c.body {
			m[k] = v
		}
		m["after"] = hex.EncodeToString(commit)
		body, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", c.name, err)
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		out = append(out, delivery{id: uuid.NewString(), event: c.event, body: body, sig: hex.EncodeToString(mac.Sum(nil))})
	}
	return out, nil
}

// sendResult is what the poster saw.
type sendResult struct {
	sent     int
	accepted map[string]bool // delivery ids answered 2xx
	codes    map[string]int  // answers, "conn_error" for none
	elapsed  time.Duration
}

func (r sendResult) non2xx() int { return r.sent - len(r.accepted) }

func (r sendResult) codeList() string {
	var parts []string
	for c, n := range r.codes {
		parts = append(parts, fmt.Sprintf("%s:%d", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// poster sends deliveries to the load balancer, each once (Gogs never
// retries), with Gogs's 15 s timeout.
type poster struct {
	url    string
	client *http.Client
	// errsShown counts the connection errors printed (the first few).
	errsShown atomic.Int32
}

func newPoster(url string) *poster {
	return &poster{url: url, client: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}}
}

func (p *poster) post(ctx context.Context, d delivery) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/hooks/gogs", bytes.NewReader(d.body))
	if err != nil {
		return "request_error"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GogsServer")
	req.Header.Set("X-Gogs-Event", d.event)
	req.Header.Set("X-Gogs-Delivery", d.id)
	req.Header.Set("X-Gogs-Signature", d.sig)
	resp, err := p.client.Do(req)
	if err != nil {
		if p.errsShown.Add(1) <= 3 {
			fmt.Printf("          conn_error of delivery %s: %v\n", d.id, err)
		}
		return "conn_error"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

// run sends every delivery, spread evenly over d, at most conc in flight;
// at[i] runs in its own goroutine just before delivery i is sent, and run
// waits for it too.
func (p *poster) run(ctx context.Context, ds []delivery, d time.Duration, conc int, at map[int]func()) sendResult {
	res := sendResult{accepted: map[string]bool{}, codes: map[string]int{}}
	var mu sync.Mutex
	start := time.Now()
	interval := d / time.Duration(len(ds))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i, dl := range ds {
		if ctx.Err() != nil {
			break
		}
		if f, ok := at[i]; ok {
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		res.sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			code := p.post(ctx, dl)
			mu.Lock()
			defer mu.Unlock()
			res.codes[code]++
			if len(code) == 3 && code[0] == '2' {
				res.accepted[dl.id] = true
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}
