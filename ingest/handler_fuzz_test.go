package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/forgebus/forgebus/ingest/gogs"
	"github.com/forgebus/forgebus/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// recordingPublisher acks everything and remembers the last message. A real
// broker per fuzz exec is too slow; what is checked here is which requests
// the handler lets through, not the broker.
type recordingPublisher struct {
	mu   sync.Mutex
	seq  uint64
	last *nats.Msg
}

func (p *recordingPublisher) PublishMsg(_ context.Context, msg *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	p.last = msg
	return &jetstream.PubAck{Stream: schemas.StreamEvents, Sequence: p.seq}, nil
}

func (p *recordingPublisher) take() *nats.Msg {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.last
	p.last = nil
	return m
}

// FuzzHandler: no input panics, every answer is JSON with a known status,
// and nothing is published that was not signed with a configured secret
// (or, on the handler that allows it, left unsigned).
func FuzzHandler(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add(fx.Headers["Content-Type"], fx.event(), fx.Headers[HeaderSignature], fx.Body)
	}
	// Each captured signed body under every other known event's name.
	for _, fx := range loadFixtures(f) {
		for ev := range eventMembers {
			if ev != fx.event() && !fx.unsigned() {
				f.Add(fx.Headers["Content-Type"], ev, fx.Headers[HeaderSignature], fx.Body)
			}
		}
	}
	js := []byte(`{"ref":"refs/heads/a","before":"1","after":"2","commits":[],"repository":{"name":"r","owner":{"login":"o"},"html_url":"https://h/o/r"},"sender":{"login":"a"}}`)
	f.Add("application/json", "push", sign(fixtureSecret, js), js)
	f.Add("application/json", "../x", sign(fixtureSecret, js), js)
	f.Add("application/json", "push", "", js)
	f.Add("application/x-www-form-urlencoded", "push", sign(fixtureSecret, js), append([]byte("payload="), js...))
	f.Add("text/plain", "push", sign(fixtureSecret, js), js)

	secrets := []string{fixtureSecret, "second-secret"}
	cfg := signedConfig(secrets...)
	signedPub, openPub := &recordingPublisher{}, &recordingPublisher{}
	signedH, err := NewHandler(cfg, signedPub, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	cfg.AllowUnsigned = true
	openH, err := NewHandler(cfg, openPub, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	known := map[int]bool{
		http.StatusAccepted: true, http.StatusBadRequest: true, http.StatusUnauthorized: true,
		http.StatusRequestEntityTooLarge: true, http.StatusUnsupportedMediaType: true,
	}

	f.Fuzz(func(t *testing.T, contentType, event, sig string, body []byte) {
		valid := false
		if payload, err := gogs.ExtractPayload(contentType, body); err == nil {
			for _, s := range secrets {
				valid = valid || sig == sign(s, payload)
			}
		}
		for _, tc := range []struct {
			name    string
			h       *Handler
			pub     *recordingPublisher
			allowed bool
		}{
			{"signed", signedH, signedPub, valid},
			{"unsigned allowed", openH, openPub, valid || sig == ""},
		} {
			r := httptest.NewRequest(http.MethodPost, "/hooks/gogs", bytes.NewReader(body))
			r.Header.Set("Content-Type", contentType)
			r.Header.Set(HeaderEvent, event)
			r.Header.Set(HeaderDelivery, "fuzz-delivery")
			r.Header.Set(HeaderSignature, sig)
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, r)
			resp := decodeResponse(t, rec.Code, rec.Header(), rec.Body.Bytes())
			msg := tc.pub.take()
			switch {
			case !known[resp.Code]:
				t.Fatalf("%s: status %d %s", tc.name, resp.Code, resp.Raw)
			case msg != nil && !tc.allowed:
				t.Fatalf("%s: published a delivery that was not signed with a configured secret (sig %q)", tc.name, sig)
			case (msg != nil) != (resp.Code == http.StatusAccepted):
				t.Fatalf("%s: status %d but published=%v", tc.name, resp.Code, msg != nil)
			case msg == nil && !resp.hasErrorKV:
				t.Fatalf("%s: error answer %s has no error field", tc.name, resp.Raw)
			case msg != nil && !fitsEvent(mustPayload(t, contentType, body), event):
				t.Fatalf("%s: published a payload that is not a %s payload", tc.name, event)
			case msg != nil && (msg.Header.Get(jetstream.MsgIDHeader) != PayloadMsgID(mustPayload(t, contentType, body)) || msg.Subject != resp.Subject || resp.ID != "fuzz-delivery"):
				t.Fatalf("%s: published %q on %q, answered %s", tc.name, msg.Header.Get(jetstream.MsgIDHeader), msg.Subject, resp.Raw)
			}
		}
	})
}

// mustPayload is the signed payload of a body the handler accepted.
func mustPayload(t *testing.T, contentType string, body []byte) []byte {
	t.Helper()
	p, err := gogs.ExtractPayload(contentType, body)
	if err != nil {
		t.Fatalf("accepted a body whose payload does not extract: %v", err)
	}
	return p
}

// eventMembers is what each known event's payload has in every real Gogs
// capture and no other event's payload has all of.
var eventMembers = map[string][]string{
	"push":          {"ref", "before", "after", "commits"},
	"create":        {"ref", "ref_type", "default_branch"},
	"delete":        {"ref", "ref_type", "pusher_type"},
	"fork":          {"forkee"},
	"issues":        {"action", "number", "issue"},
	"issue_comment": {"action", "issue", "comment"},
	"pull_request":  {"action", "number", "pull_request"},
	"release":       {"action", "release"},
}

// fitsEvent reads payload with the standard library and reports whether it
// has the members of event (any payload fits an unknown event).
func fitsEvent(payload []byte, event string) bool {
	want, known := eventMembers[event]
	if !known {
		return true
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return false
	}
	for _, m := range want {
		if _, ok := top[m]; !ok {
			return false
		}
	}
	return true
}
