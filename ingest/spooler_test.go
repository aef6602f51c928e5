package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// memSpool is a Spooler held in memory, with room for max entries.
type memSpool struct {
	mu      sync.Mutex
	max     int
	err     error // returned by Append when set
	entries []spoolEntry
}

type spoolEntry struct {
	msgID, subject string
	data           []byte
}

func (s *memSpool) Append(msgID, subject string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return s.err
	case len(s.entries) >= s.max:
		return fmt.Errorf("append %s: %w", msgID, ErrSpoolFull)
	}
	s.entries = append(s.entries, spoolEntry{msgID, subject, append([]byte(nil), data...)})
	return nil
}

func (s *memSpool) Depth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// drain publishes the spooled entries in order, as the real drainer does.
func (s *memSpool) drain(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		msg := &nats.Msg{Subject: e.subject, Data: e.data, Header: nats.Header{jetstream.MsgIDHeader: {e.msgID}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.PublishMsg(ctx, msg)
		cancel()
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
	}
	s.entries = nil
}

// TestSpool: with a spool, a delivery JetStream cannot take is spooled and
// answered 202; a full or failing spool gives 503; while the spool holds
// entries, new deliveries queue behind them.
func TestSpool(t *testing.T) {
	b := newBroker(t)
	sp := &memSpool{max: 2}
	h := newHandler(t, Config{Secrets: [][]byte{[]byte(fixtureSecret)}, PublishTimeout: 500 * time.Millisecond}, b.js, WithSpool(sp))

	// Broker up, spool empty: straight to the stream.
	if resp := serve(t, h, loadFixture(t, "push-first-push").request()); resp.Code != http.StatusAccepted || resp.Spooled || resp.StreamSeq != 1 {
		t.Fatalf("broker up: %d %s, want 202 stored at seq 1", resp.Code, resp.Raw)
	}

	b.srv.Shutdown()
	natstest.Eventually(t, 5*time.Second, "client sees the broker gone", func() bool { return !b.nc.IsConnected() })

	f := loadFixture(t, "push-multi-commit")
	resp := serve(t, h, f.request())
	if resp.Code != http.StatusAccepted || !resp.Spooled || resp.ID != f.delivery() {
		t.Fatalf("broker down: %d %s, want 202 spooled with id %s", resp.Code, resp.Raw, f.delivery())
	}
	if sp.Depth() != 1 {
		t.Fatalf("spool depth %d, want 1", sp.Depth())
	}
	e := sp.entries[0]
	if want := PayloadMsgID(f.payload(t)); e.msgID != want || e.subject != resp.Subject {
		t.Errorf("spooled %q on %q, want %q on %q", e.msgID, e.subject, want, resp.Subject)
	}
	if err := schemas.Validate(e.data); err != nil {
		t.Errorf("spooled data: %v", err)
	}

	if resp := serve(t, h, loadFixture(t, "push-force").request()); resp.Code != http.StatusAccepted || !resp.Spooled {
		t.Fatalf("second while down: %d %s, want 202 spooled", resp.Code, resp.Raw)
	}
	resp = serve(t, h, loadFixture(t, "push-merge-commit").request())
	if resp.Code != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !resp.hasErrorKV {
		t.Fatalf("spool full: %d %s, want 503 with Retry-After", resp.Code, resp.Raw)
	}
	if sp.Depth() != 2 {
		t.Fatalf("spool depth %d after a 503, want 2", sp.Depth())
	}

	b.srv.Restart()
	natstest.Eventually(t, 10*time.Second, "client reconnects", b.nc.IsConnected)

	// Back up, but the spool is not drained: the new delivery queues behind
	// it (order per repo), even though JetStream would take it now.
	sp.max = 3
	resp = serve(t, h, loadFixture(t, "push-new-branch").request())
	if resp.Code != http.StatusAccepted || !resp.Spooled {
		t.Fatalf("spool not drained: %d %s, want 202 spooled", resp.Code, resp.Raw)
	}
	if got := b.count(t); got != 1 {
		t.Fatalf("stream has %d messages while the spool drains, want 1", got)
	}

	sp.drain(t, b.js)
	resp = serve(t, h, loadFixture(t, "push-non-default-branch").request())
	if resp.Code != http.StatusAccepted || resp.Spooled || resp.StreamSeq != 5 {
		t.Fatalf("spool drained: %d %s, want 202 stored at seq 5", resp.Code, resp.Raw)
	}
	want := []string{"push-first-push", "push-multi-commit", "push-force", "push-new-branch", "push-non-default-branch"}
	for i, name := range want {
		if got := b.msg(t, uint64(i+1)).Header.Get(jetstream.MsgIDHeader); got != PayloadMsgID(loadFixture(t, name).payload(t)) {
			t.Errorf("seq %d is %q, want %s", i+1, got, name)
		}
	}
}

// TestSpoolError: a spool that fails for another reason than being full
// also gives 503, and nothing is stored.
func TestSpoolError(t *testing.T) {
	b := newBroker(t)
	sp := &memSpool{max: 10, err: errors.New("disk on fire")}
	h := newHandler(t, signedConfig(fixtureSecret), b.js, WithSpool(sp))
	b.srv.Shutdown()
	natstest.Eventually(t, 5*time.Second, "client sees the broker gone", func() bool { return !b.nc.IsConnected() })
	resp := serve(t, h, loadFixture(t, "fork").request())
	if resp.Code != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("%d %s Retry-After %q, want 503 with Retry-After 5", resp.Code, resp.Raw, resp.Header.Get("Retry-After"))
	}
	if sp.Depth() != 0 {
		t.Errorf("spool depth %d, want 0", sp.Depth())
	}
}
