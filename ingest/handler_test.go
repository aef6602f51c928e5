package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestFixtures replays every real Gogs delivery through the handler into a
// real JetStream and reads the stream back.
func TestFixtures(t *testing.T) {
	b := newBroker(t)
	signed := newHandler(t, signedConfig(fixtureSecret), b.js)
	open := newHandler(t, Config{AllowUnsigned: true}, b.js)

	fixtures := loadFixtures(t)
	stored := map[string]*fixture{} // Nats-Msg-Id (signed payload) -> first fixture that stored it
	seqOf := map[string]uint64{}
	for _, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			h := signed
			if f.unsigned() {
				before := b.count(t)
				resp := serve(t, signed, f.request())
				if resp.Code != http.StatusUnauthorized || !resp.hasErrorKV {
					t.Fatalf("unsigned fixture on the signed handler: %d %s, want 401 with an error", resp.Code, resp.Raw)
				}
				if got := b.count(t); got != before {
					t.Fatalf("stream went from %d to %d messages on a 401", before, got)
				}
				h = open
			}
			resp := serve(t, h, f.request())
			if resp.Code != http.StatusAccepted {
				t.Fatalf("status %d %s, want 202", resp.Code, resp.Raw)
			}
			key := PayloadMsgID(f.payload(t))
			first, seen := stored[key]
			wantID := f.delivery()
			if seen {
				wantID = first.delivery()
			}
			if resp.ID != wantID || resp.StreamSeq == 0 || resp.Spooled {
				t.Fatalf("202 body %s: want id %s, a stream_seq, not spooled", resp.Raw, wantID)
			}
			if resp.Duplicate != seen {
				t.Fatalf("duplicate = %v, want %v (payload already stored by %v)", resp.Duplicate, seen, first)
			}
			if seen {
				if resp.StreamSeq != seqOf[key] {
					t.Errorf("duplicate stream_seq %d, want the first one's %d", resp.StreamSeq, seqOf[key])
				}
				return
			}
			stored[key] = f
			seqOf[key] = resp.StreamSeq
			checkStored(t, b, f, resp)
		})
	}
	if len(stored) >= len(fixtures) {
		t.Errorf("%d fixtures, %d unique payloads: want the redelivery and the other hooks to repeat some", len(fixtures), len(stored))
	}
	if got := b.count(t); got != uint64(len(stored)) {
		t.Errorf("stream holds %d messages, want one per unique signed payload: %d", got, len(stored))
	}
}

// checkStored reads the message resp names and compares it with what the
// fixture's raw payload says.
func checkStored(t *testing.T, b *broker, f *fixture, resp response) {
	t.Helper()
	m := b.msg(t, resp.StreamSeq)
	payload := f.payload(t)
	var raw struct {
		Repository struct {
			Name  string `json:"name"`
			Owner struct {
				Login string `json:"login"`
			} `json:"owner"`
		} `json:"repository"`
		Sender struct {
			Login string `json:"login"`
		} `json:"sender"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatalf("fixture payload: %v", err)
	}
	wantSubject := schemas.EventSubject(DefaultInstance, f.event(), raw.Repository.Owner.Login, raw.Repository.Name)
	if m.Subject != wantSubject || resp.Subject != wantSubject {
		t.Errorf("subject stored %q, answered %q, want %q", m.Subject, resp.Subject, wantSubject)
	}
	if got, want := m.Header.Get(jetstream.MsgIDHeader), "sha256:"+sha256Hex(payload); got != want {
		t.Errorf("Nats-Msg-Id = %q, want the signed payload's %q", got, want)
	}
	if got := m.Header.Get(MsgHeaderEvent); got != f.event() {
		t.Errorf("%s = %q, want %q", MsgHeaderEvent, got, f.event())
	}
	if err := schemas.Validate(m.Data); err != nil {
		t.Errorf("schemas.Validate: %v", err)
	}
	var env schemas.Envelope
	if err := json.Unmarshal(m.Data, &env); err != nil {
		t.Fatalf("stored envelope: %v", err)
	}
	checks := []struct{ name, got, want string }{
		{"id", env.ID, f.delivery()},
		{"type", env.Type, schemas.TypePrefix + f.event()},
		{"repo", env.Repo, raw.Repository.Owner.Login + "/" + raw.Repository.Name},
		{"sender", env.Sender, raw.Sender.Login},
		{"forgeinstance", env.ForgeInstance, DefaultInstance},
		{"bodysha256", env.BodySHA256, sha256Hex(f.Body)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("envelope %s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if age := time.Since(env.Time); age < 0 || age > time.Minute {
		t.Errorf("envelope time %v is not the time of acceptance", env.Time)
	}
}

func TestSecretRotation(t *testing.T) {
	b := newBroker(t)
	const newSecret = "fixture-secret-2"
	tests := []struct {
		name    string
		secrets []string
		fixture string
		want    int
	}{
		{"new and old secret accept json", []string{newSecret, fixtureSecret}, "push-multi-commit", http.StatusAccepted},
		{"new and old secret accept form", []string{newSecret, fixtureSecret}, "form-issues-opened", http.StatusAccepted},
		{"old and new secret accept", []string{fixtureSecret, newSecret}, "create-branch", http.StatusAccepted},
		{"new secret alone rejects json", []string{newSecret}, "fork", http.StatusUnauthorized},
		{"new secret alone rejects form", []string{newSecret}, "form-push-multi-commit", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandler(t, signedConfig(tt.secrets...), b.js)
			before := b.count(t)
			resp := serve(t, h, loadFixture(t, tt.fixture).request())
			if resp.Code != tt.want {
				t.Fatalf("status %d %s, want %d", resp.Code, resp.Raw, tt.want)
			}
			wantCount := before
			if tt.want == http.StatusAccepted {
				wantCount++
			} else if !resp.hasErrorKV {
				t.Errorf("error answer %s has no error field", resp.Raw)
			}
			if got := b.count(t); got != wantCount {
				t.Errorf("stream has %d messages, want %d", got, wantCount)
			}
		})
	}
}

func TestNewHandlerConfig(t *testing.T) {
	b := newBroker(t)
	tests := []struct {
		name    string
		cfg     Config
		pub     Publisher
		wantErr error
	}{
		{"no secret, unsigned not allowed", Config{}, b.js, ErrNoSecret},
		{"no secret, unsigned allowed", Config{AllowUnsigned: true}, b.js, nil},
		{"secret", signedConfig("s"), b.js, nil},
		{"empty secret", signedConfig("s", ""), b.js, ErrInvalidConfig},
		{"negative body cap", Config{Secrets: [][]byte{[]byte("s")}, MaxBodyBytes: -1}, b.js, ErrInvalidConfig},
		{"publish timeout past Gogs' patience", Config{Secrets: [][]byte{[]byte("s")}, PublishTimeout: 15 * time.Second}, b.js, ErrInvalidConfig},
		{"negative publish timeout", Config{Secrets: [][]byte{[]byte("s")}, PublishTimeout: -time.Second}, b.js, ErrInvalidConfig},
		{"negative retry after", Config{Secrets: [][]byte{[]byte("s")}, RetryAfter: -time.Second}, b.js, ErrInvalidConfig},
		{"negative in-flight bound", Config{Secrets: [][]byte{[]byte("s")}, MaxInFlight: -1}, b.js, ErrInvalidConfig},
		{"body buffers below one body", Config{Secrets: [][]byte{[]byte("s")}, MaxBodyBytes: 1 << 20, MaxBufferedBytes: 1 << 20}, b.js, ErrInvalidConfig},
		{"large body cap raises the default buffers", Config{Secrets: [][]byte{[]byte("s")}, MaxBodyBytes: 100 << 20}, b.js, nil},
		{"no publisher", signedConfig("s"), nil, ErrNoPublisher},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHandler(tt.cfg, tt.pub, zerolog.Nop())
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("NewHandler = %v, want %v", err, tt.wantErr)
			}
			if (h == nil) != (err != nil) {
				t.Fatalf("NewHandler returned handler %v with error %v", h, err)
			}
			if err != nil && strings.Contains(err.Error(), "fixture-secret") {
				t.Errorf("error %q reveals a secret", err)
			}
		})
	}
}

// TestConfigSecretsCopied: changing the caller's secret slices after
// NewHandler does not change which deliveries are accepted.
func TestConfigSecretsCopied(t *testing.T) {
	b := newBroker(t)
	secret := []byte(fixtureSecret)
	h := newHandler(t, Config{Secrets: [][]byte{secret}}, b.js)
	copy(secret, "XXXXXXXXXXXXXXXX")
	if resp := serve(t, h, loadFixture(t, "fork").request()); resp.Code != http.StatusAccepted {
		t.Fatalf("status %d %s, want 202", resp.Code, resp.Raw)
	}
}

// TestRejects: every kind of bad input gets its status and a JSON error,
// and nothing reaches the stream.
func TestRejects(t *testing.T) {
	b := newBroker(t)
	signed := newHandler(t, signedConfig(fixtureSecret), b.js)
	open := newHandler(t, Config{AllowUnsigned: true}, b.js)
	good := loadFixture(t, "push-multi-commit")
	sig := good.Headers[HeaderSignature]
	truncated := good.Body[:len(good.Body)/2]
	big := bytes.Repeat([]byte("a"), 6<<20)
	form := loadFixture(t, "form-issues-opened")

	with := func(mod func(r *http.Request)) *http.Request {
		r := good.request()
		mod(r)
		return r
	}
	chunked := func(body []byte) *http.Request {
		r := signedRequest("push", "big-chunked", fixtureSecret, body)
		r.ContentLength = -1 // no Content-Length: only the body reader can tell
		return r
	}
	tests := []struct {
		name    string
		h       http.Handler
		req     *http.Request
		want    int
		wantMsg string
	}{
		{"bad signature", signed, with(func(r *http.Request) { r.Header.Set(HeaderSignature, sign("wrong", good.Body)) }), http.StatusUnauthorized, "bad signature"},
		{"signature of another body", signed, with(func(r *http.Request) { r.Header.Set(HeaderSignature, sign(fixtureSecret, []byte("{}"))) }), http.StatusUnauthorized, "bad signature"},
		{"upper-case signature", signed, with(func(r *http.Request) { r.Header.Set(HeaderSignature, strings.ToUpper(sig)) }), http.StatusUnauthorized, "bad signature"},
		{"sha256= prefix", signed, with(func(r *http.Request) { r.Header.Set(HeaderSignature, "sha256="+sig) }), http.StatusUnauthorized, "bad signature"},
		{"empty signature", signed, with(func(r *http.Request) { r.Header.Set(HeaderSignature, "") }), http.StatusUnauthorized, "missing signature"},
		{"no signature header", signed, with(func(r *http.Request) { r.Header.Del(HeaderSignature) }), http.StatusUnauthorized, "missing signature"},
		{"wrong signature with unsigned allowed", open, with(func(r *http.Request) { r.Header.Set(HeaderSignature, sign("wrong", good.Body)) }), http.StatusUnauthorized, "no secret"},
		{"form signed over the raw body", signed, func() *http.Request {
			r := form.request()
			r.Header.Set(HeaderSignature, sign(fixtureSecret, form.Body))
			return r
		}(), http.StatusUnauthorized, "bad signature"},
		{"truncated JSON signed correctly", signed, signedRequest("push", "trunc-1", fixtureSecret, truncated), http.StatusBadRequest, "not valid JSON"},
		{"JSON array signed correctly", signed, signedRequest("push", "array-1", fixtureSecret, []byte(`[1,2]`)), http.StatusBadRequest, "malformed"},
		{"no repository signed correctly", signed, signedRequest("push", "norepo-1", fixtureSecret, []byte(`{"ref":"refs/heads/x","before":"1","after":"2","commits":[],"sender":{"login":"a"}}`)), http.StatusBadRequest, "repository"},
		{"create body labelled delete", signed, func() *http.Request {
			f := loadFixture(t, "create-branch")
			r := f.request()
			r.Header.Set(HeaderEvent, "delete")
			return r
		}(), http.StatusBadRequest, "not a delete payload"},
		{"key twice signed correctly", signed, signedRequest("push", "dup-1", fixtureSecret, []byte(`{"ref":"refs/heads/x","ref":"refs/heads/y","before":"1","after":"2","commits":[],"sender":{"login":"a"}}`)), http.StatusBadRequest, "member name twice"},
		{"delivery id with a space", signed, with(func(r *http.Request) { r.Header.Set(HeaderDelivery, "a b") }), http.StatusBadRequest, "delivery id"},
		{"6 MiB body", signed, signedRequest("push", "big-1", fixtureSecret, big), http.StatusRequestEntityTooLarge, "larger than"},
		{"6 MiB body without Content-Length", signed, chunked(big), http.StatusRequestEntityTooLarge, "larger than"},
		{"text/plain", signed, with(func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }), http.StatusUnsupportedMediaType, "content type"},
		{"multipart", signed, with(func(r *http.Request) { r.Header.Set("Content-Type", "multipart/form-data; boundary=x") }), http.StatusUnsupportedMediaType, "content type"},
		{"no content type", signed, with(func(r *http.Request) { r.Header.Del("Content-Type") }), http.StatusUnsupportedMediaType, "content type"},
		{"form without payload", signed, func() *http.Request {
			body := []byte("other=1")
			r := signedRequest("push", "form-1", fixtureSecret, body)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}(), http.StatusBadRequest, "payload field"},
		{"missing event header", signed, with(func(r *http.Request) { r.Header.Del(HeaderEvent) }), http.StatusBadRequest, "missing X-Gogs-Event"},
		{"event header ../x", signed, with(func(r *http.Request) { r.Header.Set(HeaderEvent, "../x") }), http.StatusBadRequest, "bad X-Gogs-Event"},
		{"event header a.b", signed, with(func(r *http.Request) { r.Header.Set(HeaderEvent, "a.b") }), http.StatusBadRequest, "bad X-Gogs-Event"},
		{"event header *", signed, with(func(r *http.Request) { r.Header.Set(HeaderEvent, "*") }), http.StatusBadRequest, "bad X-Gogs-Event"},
		{"event header upper case", signed, with(func(r *http.Request) { r.Header.Set(HeaderEvent, "PUSH") }), http.StatusBadRequest, "bad X-Gogs-Event"},
		{"GET", signed, with(func(r *http.Request) { r.Method = http.MethodGet }), http.StatusMethodNotAllowed, "POST"},
		{"PUT", signed, with(func(r *http.Request) { r.Method = http.MethodPut }), http.StatusMethodNotAllowed, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.count(t)
			resp := serve(t, tt.h, tt.req)
			if resp.Code != tt.want {
				t.Fatalf("status %d %s, want %d", resp.Code, resp.Raw, tt.want)
			}
			if !resp.hasErrorKV || resp.Error == "" {
				t.Fatalf("body %s has no error message", resp.Raw)
			}
			if !strings.Contains(resp.Error, tt.wantMsg) {
				t.Errorf("error %q does not say %q", resp.Error, tt.wantMsg)
			}
			for _, leak := range []string{fixtureSecret, sig, "ünïcödé", "refs/heads"} {
				if strings.Contains(string(resp.Raw), leak) {
					t.Errorf("answer %s reveals %q", resp.Raw, leak)
				}
			}
			if tt.want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("405 without Allow: POST")
			}
			if got := b.count(t); got != before {
				t.Errorf("stream went from %d to %d messages", before, got)
			}
		})
	}
}

// TestUnsignedRefusedWithSecrets: once a secret is configured, a delivery
// without a signature is 401 even with AllowUnsigned, so that the setting
// cannot silently downgrade a signed hook; a signed one is still verified.
func TestUnsignedRefusedWithSecrets(t *testing.T) {
	b := newBroker(t)
	h := newHandler(t, Config{Secrets: [][]byte{[]byte(fixtureSecret)}, AllowUnsigned: true}, b.js)
	resp := serve(t, h, loadFixture(t, "unsigned-issues-opened").request())
	if resp.Code != http.StatusUnauthorized || !strings.Contains(resp.Error, "missing signature") {
		t.Fatalf("unsigned with a secret configured: %d %s, want 401 missing signature", resp.Code, resp.Raw)
	}
	if resp := serve(t, h, loadFixture(t, "issues-opened").request()); resp.Code != http.StatusAccepted {
		t.Fatalf("signed: status %d %s, want 202", resp.Code, resp.Raw)
	}
	r := loadFixture(t, "issues-closed").request()
	r.Header.Set(HeaderSignature, sign("wrong", nil))
	if resp := serve(t, h, r); resp.Code != http.StatusUnauthorized {
		t.Fatalf("wrong signature: status %d %s, want 401", resp.Code, resp.Raw)
	}
	if got := b.count(t); got != 1 {
		t.Errorf("stream has %d messages, want 1", got)
	}
}

// TestUnknownEvent: a well-formed event name forgebus has no type for is
// stored as-is, on its own subject.
func TestUnknownEvent(t *testing.T) {
	b := newBroker(t)
	h := newHandler(t, signedConfig(fixtureSecret), b.js)
	body := []byte(`{"repository":{"name":"r","owner":{"login":"o"},"html_url":"https://git.example.com/o/r"},"sender":{"login":"a"}}`)
	resp := serve(t, h, signedRequest("wiki", "wiki-1", fixtureSecret, body))
	if resp.Code != http.StatusAccepted {
		t.Fatalf("status %d %s, want 202", resp.Code, resp.Raw)
	}
	if want := schemas.EventSubject(DefaultInstance, "wiki", "o", "r"); resp.Subject != want {
		t.Errorf("subject %q, want %q", resp.Subject, want)
	}
	if err := schemas.Validate(b.msg(t, resp.StreamSeq).Data); err != nil {
		t.Errorf("schemas.Validate: %v", err)
	}
}

// TestBrokerDown: with JetStream gone the answer is a quick 503 with
// Retry-After and nothing is stored; once it is back, deliveries are.
func TestBrokerDown(t *testing.T) {
	b := newBroker(t)
	h := newHandler(t, Config{Secrets: [][]byte{[]byte(fixtureSecret)}, PublishTimeout: 500 * time.Millisecond, RetryAfter: 2500 * time.Millisecond}, b.js)
	ts := httptest.NewServer(h)
	defer ts.Close()

	post := func(f *fixture) response {
		t.Helper()
		r := f.request()
		req, err := http.NewRequest(r.Method, ts.URL+"/hooks/gogs", bytes.NewReader(f.Body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = r.Header.Clone()
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatalf("post: %v", err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		return decodeResponse(t, resp.StatusCode, resp.Header, buf.Bytes())
	}

	b.srv.Shutdown()
	natstest.Eventually(t, 5*time.Second, "client sees the broker gone", func() bool { return !b.nc.IsConnected() })
	start := time.Now()
	resp := post(loadFixture(t, "issues-opened"))
	elapsed := time.Since(start)
	if resp.Code != http.StatusServiceUnavailable || !resp.hasErrorKV {
		t.Fatalf("broker down: status %d %s, want 503 with an error", resp.Code, resp.Raw)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "3" {
		t.Errorf("Retry-After %q, want 3 (2.5 s rounded up)", ra)
	}
	if elapsed > 1500*time.Millisecond {
		t.Errorf("503 took %s, want < publish timeout + 1 s", elapsed)
	}

	b.srv.Restart()
	next := loadFixture(t, "issues-closed")
	var last response
	natstest.Eventually(t, 10*time.Second, "delivery stored after the broker came back", func() bool {
		last = post(next)
		return last.Code == http.StatusAccepted
	})
	if got := b.count(t); got != 1 {
		t.Errorf("stream has %d messages, want 1: the 503'd delivery must not be stored", got)
	}
	if m := b.msg(t, last.StreamSeq); m.Header.Get(jetstream.MsgIDHeader) != PayloadMsgID(next.payload(t)) || last.ID != next.delivery() {
		t.Errorf("stored %q as %s, want %q as %s", m.Header.Get(jetstream.MsgIDHeader), last.ID, PayloadMsgID(next.payload(t)), next.delivery())
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{{0, "5"}, {time.Millisecond, "1"}, {time.Second, "1"}, {1001 * time.Millisecond, "2"}, {30 * time.Second, "30"}}
	b := newBroker(t)
	for _, tt := range tests {
		h := newHandler(t, Config{AllowUnsigned: true, RetryAfter: tt.d}, b.js)
		if h.retryAfter != tt.want {
			t.Errorf("RetryAfter %s: header %q, want %q", tt.d, h.retryAfter, tt.want)
		}
	}
}

// TestPublishTimeout: when JetStream takes the message but never acks (here
// a silent responder stands where the stream should be), the answer is a
// 503 after PublishTimeout, not after Gogs' 15 s.
func TestPublishTimeout(t *testing.T) {
	srv := natstest.Run(t) // no stream: the request reaches only the silent subscriber
	nc, js := srv.Connect(t)
	sub, err := nc.SubscribeSync(schemas.EventsRoot + ".>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	h := newHandler(t, Config{Secrets: [][]byte{[]byte(fixtureSecret)}, PublishTimeout: timeout}, js)
	start := time.Now()
	resp := serve(t, h, loadFixture(t, "release-published").request())
	elapsed := time.Since(start)
	if resp.Code != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("status %d %s, want 503 with Retry-After 5", resp.Code, resp.Raw)
	}
	if elapsed < timeout || elapsed > timeout+time.Second {
		t.Errorf("503 after %s, want within [%s, %s]", elapsed, timeout, timeout+time.Second)
	}
	if m, err := sub.NextMsg(time.Second); err != nil || m.Header.Get(jetstream.ExpectedStreamHeader) != schemas.StreamEvents {
		t.Errorf("published message: %v, want one that expects stream %s", err, schemas.StreamEvents)
	}
}

// TestTooLargeForBroker: a signed event larger than the broker's max payload
// (1 MiB on a default server) but under the body cap is refused with 413 and
// never reaches the stream or the spool, where it could never be forwarded.
func TestTooLargeForBroker(t *testing.T) {
	b := newBroker(t)
	sp := &memSpool{max: 10}
	h := newHandler(t, signedConfig(fixtureSecret), b.js, WithSpool(sp))
	f := loadFixture(t, "push-multi-commit")
	var payload map[string]any
	if err := json.Unmarshal(f.Body, &payload); err != nil {
		t.Fatal(err)
	}
	payload["compare_url"] = "https://git.example.com/" + strings.Repeat("x", 2<<20)
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	resp := serve(t, h, signedRequest("push", "too-large-1", fixtureSecret, body))
	if resp.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d %s, want 413", resp.Code, resp.Raw)
	}
	if !strings.Contains(resp.Error, "broker takes at most") {
		t.Errorf("error %q does not say the broker's limit", resp.Error)
	}
	if n := b.count(t); n != 0 {
		t.Errorf("stream holds %d messages, want 0", n)
	}
	if d := sp.Depth(); d != 0 {
		t.Errorf("spool holds %d entries, want 0", d)
	}
}
