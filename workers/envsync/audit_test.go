package envsync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/audit"
	"github.com/forgebus/forgebus/workers/runtime"
)

// The results and dead letters of envsync, recorded by the audit worker,
// name keys and hashes and never a value.
func TestNoValueReachesTheAuditLog(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for name, subj := range map[string][]string{
		schemas.StreamEvents: schemas.EventsSubjects, schemas.StreamResults: schemas.ResultsSubjects, schemas.StreamDLQ: schemas.DLQSubjects,
	} {
		if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subj}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.js.CreateStream(ctx, audit.StreamConfig(0, 1)); err != nil {
		t.Fatal(err)
	}
	w := h.worker(baseCfg(), "good-token")
	h.gogs.set(sha(1), envPath, "A="+secret+"\nB=s3cr3t-VALUE-y7\n")
	h.gogs.set(sha(2), envPath, "A=p4ss-w0rd-QQ\nB=\"s3cr3t-VALUE-z5\n") // does not parse
	publish := func(ev *schemas.Envelope) {
		rep, err := h.handle(w, ev)
		res := schemas.Result{Worker: Name, EventID: ev.ID, EventType: ev.Type, Repo: ev.Repo,
			Outcome: schemas.OutcomeSucceeded, Detail: rep.Detail, Finished: time.Now()}
		if rep.Outcome != "" {
			res.Outcome = rep.Outcome
		}
		if err != nil {
			res.Outcome, res.Error = schemas.OutcomeFailed, err.Error()
			if runtime.IsPermanent(err) {
				res.Outcome = schemas.OutcomeDeadLettered
				evb, _ := json.Marshal(ev)
				dl, _ := json.Marshal(schemas.DeadLetter{Worker: Name, EventID: ev.ID, Error: err.Error(), Permanent: true, Event: evb})
				if _, err := h.js.Publish(ctx, schemas.DLQSubject(Name, "acme", "app"), dl); err != nil {
					t.Fatal(err)
				}
			}
		}
		b, _ := json.Marshal(res)
		if _, err := h.js.Publish(ctx, schemas.ResultSubject(Name, "acme", "app"), b); err != nil {
			t.Fatal(err)
		}
	}
	publish(push("ev-1", t0, sha(1)))
	publish(push("ev-2", t0.Add(time.Second), sha(2)))

	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	aw, err := audit.New(h.js, audit.Config{FetchWait: 100 * time.Millisecond, Key: key}, zerolog.New(h.logs), nil)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- aw.Run(actx) }()
	var buf bytes.Buffer
	natstest.Eventually(t, 10*time.Second, "the genesis and 3 audit records", func() bool {
		buf.Reset()
		n, err := audit.Export(ctx, h.js, audit.Filter{}, &buf)
		return err == nil && n == 4
	})
	cancel()
	<-done
	out := buf.String()
	for _, v := range testValues {
		if strings.Contains(out, v) {
			t.Fatalf("value %q in the audit log", v)
		}
	}
	if !strings.Contains(out, `"keys_put":"A,B"`) || !strings.Contains(out, valueHash("A", secret)) {
		t.Fatalf("the audit log lacks the key names and hashes:\n%s", out)
	}
}
