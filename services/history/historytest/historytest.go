// Package historytest fills a real JetStream with the story of deliveries
// through running workers: the docs worker succeeds, the models worker
// dead-letters until it is fixed, and the audit worker records it all. The
// history, events-show and console tests read it back.
package historytest

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/ingest"
	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/audit"
	"github.com/forgebus/forgebus/workers/runtime"
)

// Bus is a broker with the docs, models and audit workers running.
type Bus struct {
	t  testing.TB
	JS jetstream.JetStream
	// Broken makes the models worker fail permanently while set.
	Broken atomic.Bool
	// AuditKeyFile holds the key the audit worker signs with, for the
	// commands that verify the log (FORGEBUS_AUDIT_KEY_FILE).
	AuditKeyFile string
}

// Start creates the four streams on js and runs the workers until the
// test ends. The models worker starts broken.
func Start(t testing.TB, js jetstream.JetStream) *Bus {
	t.Helper()
	natstest.Streams(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, audit.StreamConfig(0, 1)); err != nil {
		t.Fatalf("historytest: audit stream: %v", err)
	}
	b := &Bus{t: t, JS: js}
	b.Broken.Store(true)
	docs := runtime.HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
		return runtime.Report{Detail: schemas.Detail{"output_tail": "built 3 pages"}}, nil
	})
	models := runtime.HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
		if b.Broken.Load() {
			return runtime.Report{}, runtime.Permanent(errors.New("refresh endpoint answered 401: check FORGEBUS_MODELS_SECRET"))
		}
		return runtime.Report{Detail: schemas.Detail{"rule": "weights", "status": "200"}}, nil
	})
	envsync := runtime.HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
		return runtime.Report{Detail: schemas.Detail{"skipped": "no rule matches"}}, nil
	})
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(context.Background())
	for name, h := range map[string]runtime.Handler{"docs": docs, "models": models, "envsync": envsync} {
		s := runtime.DefaultSettings()
		s.AckWait = 2 * time.Second
		s.MaxDeliver = 2
		s.Retry.MaxElapsed = 0
		s.NakDelays = []time.Duration{10 * time.Millisecond}
		s.GracePeriod = 2 * time.Second
		w := runtime.Worker{Name: name, Subjects: []string{schemas.EventsRoot + ".*.push.>"}, Handler: h, Settings: s}
		rt, err := runtime.New(js, w, zerolog.Nop(), nil)
		if err != nil {
			t.Fatalf("historytest: worker %s: %v", name, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = rt.Run(runCtx) }()
	}
	keyFile := filepath.Join(t.TempDir(), "audit.key")
	if _, err := audit.CreateKey(keyFile); err != nil {
		t.Fatalf("historytest: audit key: %v", err)
	}
	auditKey, err := audit.LoadKey(keyFile)
	if err != nil {
		t.Fatalf("historytest: audit key: %v", err)
	}
	aw, err := audit.New(js, audit.Config{FetchWait: 200 * time.Millisecond, Key: auditKey}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatalf("historytest: audit worker: %v", err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = aw.Run(runCtx) }()
	b.AuditKeyFile = keyFile
	t.Cleanup(func() { stop(); wg.Wait() })
	return b
}

// Push publishes a push to repo as ingest's handler would (with its event
// header), with event id id, and returns its FORGE_EVENTS sequence.
func (b *Bus) Push(id, repo, sender string) uint64 { return b.push(id, repo, sender, true) }

// PushFromSpool publishes it as ingest's spool forwarder would: no headers
// besides the message id.
func (b *Bus) PushFromSpool(id, repo, sender string) uint64 { return b.push(id, repo, sender, false) }

func (b *Bus) push(id, repo, sender string, handler bool) uint64 {
	b.t.Helper()
	owner, name := repo, repo
	for i := range repo {
		if repo[i] == '/' {
			owner, name = repo[:i], repo[i+1:]
		}
	}
	data, _ := json.Marshal(schemas.Push{
		Ref: "refs/heads/main", Branch: "main", Before: "0000000", After: "a1b2c3d",
		Commits: []schemas.Commit{{
			ID: "a1b2c3d4e5", Message: "update the model card\n\nlonger body",
			Author:   schemas.CommitUser{Name: sender, Username: sender},
			Modified: []string{"models/card.md"}, Added: []string{"docs/new.md"},
		}},
		Repository: schemas.Repository{Name: name, FullName: repo, Owner: schemas.User{Login: owner}},
		Sender:     schemas.User{Login: sender},
	})
	ev := schemas.Envelope{
		SpecVersion: schemas.SpecVersion, ID: id, Source: "http://gogs.test", Type: schemas.TypePrefix + schemas.EventPush,
		Subject: "refs/heads/main", Time: time.Now().UTC(), DataContentType: "application/json",
		DataSchema: schemas.SchemaURI(schemas.EventPush), ForgeInstance: "gogs", Repo: repo, Sender: sender, Data: data,
	}
	raw, _ := json.Marshal(ev)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: schemas.EventSubject("gogs", schemas.EventPush, owner, name), Data: raw, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if handler {
		msg.Header.Set(ingest.MsgHeaderEvent, schemas.EventPush)
	}
	ack, err := b.JS.PublishMsg(ctx, msg)
	if err != nil {
		b.t.Fatalf("historytest: publish: %v", err)
	}
	return ack.Sequence
}

// Results returns every result of event id, in stream order.
func (b *Bus) Results(id string) []schemas.Result {
	b.t.Helper()
	var out []schemas.Result
	for _, m := range natstest.StreamMsgs(b.t, b.JS, schemas.StreamResults) {
		var r schemas.Result
		if json.Unmarshal(m.Data, &r) == nil && r.EventID == id {
			out = append(out, r)
		}
	}
	return out
}

// WaitOutcome waits until worker has published outcome o for event id.
func (b *Bus) WaitOutcome(id, worker string, o schemas.Outcome) {
	b.t.Helper()
	natstest.Eventually(b.t, 20*time.Second, worker+" "+string(o)+" for "+id, func() bool {
		for _, r := range b.Results(id) {
			if r.Worker == worker && r.Outcome == o {
				return true
			}
		}
		return false
	})
}

// DeadLetter waits for the models dead letter of event id and returns its
// FORGE_DLQ sequence.
func (b *Bus) DeadLetter(id string) uint64 {
	b.t.Helper()
	var seq uint64
	natstest.Eventually(b.t, 20*time.Second, "dead letter of "+id, func() bool {
		l, err := runtime.ListDeadLetters(context.Background(), b.JS, "models")
		for _, e := range l {
			if err == nil && e.Letter.EventID == id {
				seq = e.Seq
				return true
			}
		}
		return false
	})
	return seq
}

// AuditCount returns how many audit records name event id.
func (b *Bus) AuditCount(id string) int {
	b.t.Helper()
	recs, err := audit.Query(context.Background(), b.JS, "", time.Time{})
	if err != nil {
		b.t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.EventID == id {
			n++
		}
	}
	return n
}
