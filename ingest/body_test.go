package ingest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
)

// stalled is a request whose body the test feeds: it is in the handler,
// reading, until the test closes the pipe.
type stalled struct {
	pw   *io.PipeWriter
	done chan *httptest.ResponseRecorder
}

func startStalled(h http.Handler, claimed int64, first []byte) *stalled {
	pr, pw := io.Pipe()
	r := httptest.NewRequest(http.MethodPost, "/hooks/gogs", pr)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderEvent, "push")
	r.ContentLength = claimed
	s := &stalled{pw: pw, done: make(chan *httptest.ResponseRecorder, 1)}
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		s.done <- rec
	}()
	if len(first) > 0 {
		_, _ = pw.Write(first) // returns once the handler has read it
	}
	return s
}

// finish ends the body and returns the answer.
func (s *stalled) finish(t *testing.T) *httptest.ResponseRecorder {
	t.Helper()
	s.pw.Close()
	select {
	case rec := <-s.done:
		return rec
	case <-time.After(10 * time.Second):
		t.Fatal("stalled request not answered after its body ended")
		return nil
	}
}

// TestInFlightBound: past MaxInFlight requests being handled, the next one
// is answered 503 with Retry-After at once, without its body being read;
// once one finishes, a delivery is stored again.
func TestInFlightBound(t *testing.T) {
	b := newBroker(t)
	h := newHandler(t, Config{Secrets: [][]byte{[]byte(fixtureSecret)}, MaxInFlight: 2}, b.js)
	s1, s2 := startStalled(h, 5_000_000, []byte("{")), startStalled(h, 5_000_000, []byte("{"))

	start := time.Now()
	resp := serve(t, h, loadFixture(t, "push-multi-commit").request())
	if resp.Code != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(resp.Error, "in flight") {
		t.Fatalf("third request with 2 in flight: %d %q %s, want 503 with Retry-After", resp.Code, resp.Header.Get("Retry-After"), resp.Raw)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the 503 took %s", d)
	}
	if rec := s1.finish(t); rec.Code != http.StatusUnauthorized {
		t.Errorf("stalled unsigned request, body ended: %d, want 401", rec.Code)
	}
	if resp := serve(t, h, loadFixture(t, "push-multi-commit").request()); resp.Code != http.StatusAccepted {
		t.Errorf("after one finished: %d %s, want 202", resp.Code, resp.Raw)
	}
	s2.finish(t)
	if got := b.count(t); got != 1 {
		t.Errorf("stream holds %d events, want 1", got)
	}
}

// TestBufferedBytesBound: bodies held at once are bounded: while one large
// body is being received, another that would pass MaxBufferedBytes is 503
// with Retry-After; a stalled request that claims 5 MB but sent one byte
// takes almost nothing of the bound.
func TestBufferedBytesBound(t *testing.T) {
	b := newBroker(t)
	const maxBody = 200_000
	h := newHandler(t, Config{Secrets: [][]byte{[]byte(fixtureSecret)}, MaxBodyBytes: maxBody, MaxBufferedBytes: 300_000}, b.js)

	// Many stalled requests claiming the largest body: none reserves from
	// Content-Length.
	var idle []*stalled
	for range 50 {
		idle = append(idle, startStalled(h, maxBody, []byte("{")))
	}
	big := startStalled(h, maxBody, bytes.Repeat([]byte(" "), 150_000))
	natstest.Eventually(t, 5*time.Second, "the large body is buffered", func() bool { return h.buffers.used.Load() >= 150_000 })

	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(bytes.Repeat([]byte(" "), 150_000))
		pw.Close()
	}()
	r := httptest.NewRequest(http.MethodPost, "/hooks/gogs", pr)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderEvent, "push")
	resp := serve(t, h, r)
	pr.Close() // the writer stops: the handler read no further
	if resp.Code != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(resp.Error, "buffered") {
		t.Fatalf("second large body: %d %s, want 503 with Retry-After", resp.Code, resp.Raw)
	}
	// A normal delivery fits beside the large one and the stalled ones.
	if resp := serve(t, h, loadFixture(t, "push-multi-commit").request()); resp.Code != http.StatusAccepted {
		t.Errorf("normal delivery: %d %s, want 202", resp.Code, resp.Raw)
	}
	big.finish(t)
	for _, s := range idle {
		s.finish(t)
	}
	if got := h.buffers.used.Load(); got != 0 {
		t.Errorf("%d bytes still reserved after every request ended", got)
	}
}
