package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// BenchmarkHandler measures the handler on the largest push fixture against
// a real JetStream (file storage), next to a bare handler that only reads
// the body, checks the HMAC and publishes the raw body: the ceiling ingest
// is compared with. Requests run in parallel, as an HTTP server runs them.
// Compare the two ns/op (or req/s). The client signs each request, for
// both, since every payload is new.
func BenchmarkHandler(b *testing.B) {
	srv := natstest.Run(b)
	_, js := srv.Connect(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       schemas.StreamEvents,
		Subjects:   schemas.EventsSubjects,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
		MaxBytes:   512 << 20,
		Discard:    jetstream.DiscardOld,
	}); err != nil {
		b.Fatal(err)
	}
	fx := loadFixture(b, "push-multi-commit")
	h, err := NewHandler(signedConfig(fixtureSecret), js, zerolog.Nop(), WithMetrics(NewMetrics(nil)))
	if err != nil {
		b.Fatal(err)
	}
	bare := bareHandler{js: js, secret: []byte(fixtureSecret)}

	var n atomic.Uint64
	run := func(b *testing.B, h http.Handler) {
		b.SetBytes(int64(len(fx.Body)))
		b.ReportAllocs()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				// Each delivery a new payload, as real pushes are: the same
				// payload again would be a duplicate, a different path.
				seq := strconv.FormatUint(n.Add(1), 10)
				body := make([]byte, 0, len(fx.Body)+32)
				body = append(append(append(body, `{"bench_seq":`...), seq...), ',')
				body = append(body, fx.Body[1:]...)
				r := signedRequest(fx.event(), "bench-"+seq, fixtureSecret, body)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code != http.StatusAccepted {
					b.Fatalf("status %d %s", rec.Code, rec.Body)
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	}
	b.Run("ingest", func(b *testing.B) { run(b, h) })
	b.Run("bare-hmac-publish", func(b *testing.B) { run(b, bare) })
}

// bareHandler is the least a signed webhook-to-JetStream handler can do.
type bareHandler struct {
	js     jetstream.JetStream
	secret []byte
}

func (h bareHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	m := hmac.New(sha256.New, h.secret)
	m.Write(buf.Bytes())
	want, err := hex.DecodeString(r.Header.Get(HeaderSignature))
	if err != nil || !hmac.Equal(m.Sum(nil), want) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	msg := &nats.Msg{Subject: "forge.bench.push.o.r", Data: buf.Bytes(), Header: nats.Header{jetstream.MsgIDHeader: {r.Header.Get(HeaderDelivery)}}}
	if _, err := h.js.PublishMsg(r.Context(), msg); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
