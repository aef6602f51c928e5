package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// fixtureDir holds the real Gogs deliveries, the repository's own copy.
var fixtureDir = filepath.Join("..", "testdata", "gogs")

const fixtureSecret = "fixture-secret-1"

// fixture is one captured Gogs delivery (see the fixtures' README).
type fixture struct {
	Name       string            `json:"-"`
	Method     string            `json:"method"`
	Headers    map[string]string `json:"headers"`
	BodyBase64 string            `json:"body_base64"`
	Body       []byte            `json:"-"`
}

func (f *fixture) event() string    { return f.Headers[HeaderEvent] }
func (f *fixture) delivery() string { return f.Headers[HeaderDelivery] }
func (f *fixture) unsigned() bool   { return strings.HasPrefix(f.Name, "unsigned-") }

func loadFixtures(tb testing.TB) []*fixture {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no Gogs fixtures in %s: %v", fixtureDir, err)
	}
	out := make([]*fixture, 0, len(paths))
	for _, p := range paths {
		out = append(out, loadFixture(tb, strings.TrimSuffix(filepath.Base(p), ".json")))
	}
	return out
}

func loadFixture(tb testing.TB, name string) *fixture {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name+".json"))
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	f := &fixture{Name: name}
	if err := json.Unmarshal(b, f); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if f.Body, err = base64.StdEncoding.DecodeString(f.BodyBase64); err != nil {
		tb.Fatalf("%s: body_base64: %v", name, err)
	}
	return f
}

// payload is the signed payload of f: the body, or its form's payload field.
func (f *fixture) payload(tb testing.TB) []byte {
	tb.Helper()
	if !strings.HasPrefix(f.Headers["Content-Type"], "application/x-www-form-urlencoded") {
		return f.Body
	}
	form, err := url.ParseQuery(string(f.Body))
	if err != nil {
		tb.Fatalf("%s: %v", f.Name, err)
	}
	return []byte(form.Get("payload"))
}

// request replays f with its recorded method, headers and body.
func (f *fixture) request() *http.Request {
	r := httptest.NewRequest(f.Method, "/hooks/gogs", bytes.NewReader(f.Body))
	for k, v := range f.Headers {
		r.Header.Set(k, v)
	}
	r.Host = f.Headers["Host"]
	r.ContentLength = int64(len(f.Body))
	if cl, err := strconv.ParseInt(f.Headers["Content-Length"], 10, 64); err == nil {
		r.ContentLength = cl
	}
	return r
}

// signedRequest is a JSON delivery of body, signed with secret ("" for none).
func signedRequest(event, delivery, secret string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/gogs", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderEvent, event)
	r.Header.Set(HeaderDelivery, delivery)
	r.Header.Set(HeaderSignature, "")
	if secret != "" {
		r.Header.Set(HeaderSignature, sign(secret, body))
	}
	return r
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sign(secret string, payload []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

// broker is a real JetStream with the FORGE_EVENTS stream.
type broker struct {
	srv    *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
}

func newBroker(t testing.TB) *broker {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.Connect(t)
	return &broker{srv: srv, nc: nc, js: js, stream: createStream(t, js)}
}

func createStream(t testing.TB, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       schemas.StreamEvents,
		Subjects:   schemas.EventsSubjects,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return s
}

// count is the number of messages in the stream.
func (b *broker) count(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := b.stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// msg is the stored message with sequence seq.
func (b *broker) msg(t testing.TB, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := b.stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("get msg %d: %v", seq, err)
	}
	return m
}

func newHandler(t testing.TB, cfg Config, pub Publisher, opts ...Option) *Handler {
	t.Helper()
	h, err := NewHandler(cfg, pub, zerolog.Nop(), opts...)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	return h
}

func signedConfig(secrets ...string) Config {
	cfg := Config{}
	for _, s := range secrets {
		cfg.Secrets = append(cfg.Secrets, []byte(s))
	}
	return cfg
}

// response is a decoded answer of the handler.
type response struct {
	Code       int
	Header     http.Header
	Raw        []byte
	Error      string `json:"error"`
	ID         string `json:"id"`
	Subject    string `json:"subject"`
	StreamSeq  uint64 `json:"stream_seq"`
	Duplicate  bool   `json:"duplicate"`
	Spooled    bool   `json:"spooled"`
	hasErrorKV bool
}

func serve(t testing.TB, h http.Handler, r *http.Request) response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return decodeResponse(t, rec.Code, rec.Header(), rec.Body.Bytes())
}

func decodeResponse(t testing.TB, code int, hdr http.Header, body []byte) response {
	t.Helper()
	resp := response{Code: code, Header: hdr, Raw: body}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d: Content-Type %q, want application/json", code, ct)
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("status %d: body %q is not JSON: %v", code, body, err)
	}
	var kv map[string]json.RawMessage
	_ = json.Unmarshal(body, &kv)
	_, resp.hasErrorKV = kv["error"]
	return resp
}
