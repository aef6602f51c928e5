package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/audit"
)

// The attacks of the audit log's trust model, each by someone on the bus
// without the signing key: every one must make "forgebus audit verify"
// exit non-zero and name the problem.

type auditBed struct {
	t       *testing.T
	js      jetstream.JetStream
	keyFile string
	events  int
	stop    func()
}

// newAuditBed starts a real JetStream with the four streams, an audit
// worker, and n recorded push events; the CLI is pointed at it.
func newAuditBed(t *testing.T, n int) *auditBed {
	t.Helper()
	ns := natstest.Run(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	for name, subj := range map[string][]string{
		schemas.StreamEvents: schemas.EventsSubjects, schemas.StreamResults: schemas.ResultsSubjects, schemas.StreamDLQ: schemas.DLQSubjects,
	} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subj}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateStream(ctx, audit.StreamConfig(0, 1)); err != nil {
		t.Fatal(err)
	}
	b := &auditBed{t: t, js: js, keyFile: newAuditKeyFile(t)}
	t.Setenv("FORGEBUS_NATS_URL", ns.URL())
	t.Setenv("FORGEBUS_AUDIT_KEY_FILE", b.keyFile)
	b.stop = startAuditWorker(t, js, b.keyFile)
	for i := 0; i < n; i++ {
		b.publishEvent()
	}
	b.waitRecorded()
	return b
}

func (b *auditBed) publishEvent() {
	b.t.Helper()
	id := fmt.Sprintf("ev-%d", b.events)
	data, _ := json.Marshal(schemas.Envelope{ID: id, Type: "forge.push", Repo: "acme/app", Sender: "bob",
		Time: time.Date(2026, 11, 24, 12, 0, b.events, 0, time.UTC)})
	b.events++
	if _, err := b.js.Publish(context.Background(), schemas.EventSubject("git", "push", "acme", "app"), data); err != nil {
		b.t.Fatal(err)
	}
}

// waitRecorded waits until the audit worker has acked every event.
func (b *auditBed) waitRecorded() {
	b.t.Helper()
	natstest.Eventually(b.t, 20*time.Second, "audit worker idle", func() bool {
		c, err := b.js.Consumer(context.Background(), schemas.StreamEvents, "audit-events")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

func (b *auditBed) auditStream() jetstream.Stream {
	b.t.Helper()
	s, err := b.js.Stream(context.Background(), schemas.StreamAudit)
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

func (b *auditBed) lastRecord() schemas.AuditRecord {
	b.t.Helper()
	m, err := b.auditStream().GetLastMsgForSubject(context.Background(), schemas.AuditSubject)
	if err != nil {
		b.t.Fatal(err)
	}
	var r schemas.AuditRecord
	if err := json.Unmarshal(m.Data, &r); err != nil {
		b.t.Fatal(err)
	}
	return r
}

func runAudit(args ...string) (int, string, string) {
	ranCommand = false
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustFail runs the command and fails the test unless it exits with
// exitRuntime naming want.
func mustFail(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errOut := runAudit(args...)
	if code != exitRuntime || !strings.Contains(errOut, want) {
		t.Fatalf("forgebus %s = exit %d, stdout %q, stderr %q; want exit %d naming %q",
			strings.Join(args, " "), code, out, errOut, exitRuntime, want)
	}
}

func TestAuditAttackMaxMsgsLowered(t *testing.T) {
	b := newAuditBed(t, 30)
	b.stop()
	cfg := b.auditStream().CachedInfo().Config
	cfg.MaxMsgs = 10
	if _, err := b.js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "max_msgs 10", "audit", "verify")
}

func TestAuditAttackStreamDeletedAndWorkerRestarted(t *testing.T) {
	b := newAuditBed(t, 5)
	b.stop()
	ctx := context.Background()
	cfg := b.auditStream().CachedInfo().Config
	if err := b.js.DeleteStream(ctx, schemas.StreamAudit); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	startAuditWorker(t, b.js, b.keyFile)
	b.publishEvent()
	b.waitRecorded()
	mustFail(t, `FORGE_EVENTS seq 1 (event "ev-0") has no audit record`, "audit", "verify")
}

// A record sealed with the plain SHA-256 on top of the head, published by a
// client of the bus: verify names it, and the worker does not chain on it.
func TestAuditAttackForgedRecord(t *testing.T) {
	b := newAuditBed(t, 5)
	b.stop()
	head := b.lastRecord()
	forged := schemas.AuditRecord{Seq: head.Seq + 1, RecordedAt: time.Now().UTC(), Time: time.Now().UTC(),
		Kind: schemas.AuditKindEvent, EventID: "forged", Repo: "acme/app", Sender: "mallory", EventType: "push",
		Source: schemas.StreamEvents, SourceSeq: head.Covers[schemas.StreamEvents], Covers: head.Covers, PrevHash: head.Hash}
	if err := forged.Seal(); err != nil {
		t.Fatal(err)
	}
	data, _ := forged.Encode()
	if _, err := b.js.Publish(context.Background(), schemas.AuditSubject, data, jetstream.WithExpectLastSequence(head.Seq)); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runAudit("audit", "query", "--repo", "acme/app"); code != exitOK || strings.Contains(out, "mallory") || !strings.Contains(errOut, "warning") {
		t.Fatalf("audit query with a forged record: %d, stdout %q, stderr %q; want it left out, with a warning", code, out, errOut)
	}
	mustFail(t, "not signed", "audit", "verify")

	// The worker, given a new event, must not chain on top of the forgery.
	startAuditWorker(t, b.js, b.keyFile)
	b.publishEvent()
	natstest.Eventually(t, 20*time.Second, "the new event handed back at least once", func() bool {
		c, err := b.js.Consumer(context.Background(), schemas.StreamEvents, "audit-events")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && (info.NumRedelivered > 0 || info.NumAckPending == 0 && info.NumPending == 0)
	})
	if last := b.lastRecord(); last.Seq != forged.Seq {
		t.Fatalf("the worker appended seq %d on top of the forged record at seq %d", last.Seq, forged.Seq)
	}
}

// exportFile writes an unfiltered export and returns its lines.
func (b *auditBed) export() [][]byte {
	b.t.Helper()
	code, out, errOut := runAudit("audit", "export")
	if code != exitOK {
		b.t.Fatalf("export: %d %s", code, errOut)
	}
	return bytes.SplitAfter([]byte(out), []byte("\n"))
}

// reseal rewrites lines from i on as a valid SHA-256 chain, as anyone
// without the key can: renumbered, relinked and rehashed.
func reseal(t *testing.T, lines [][]byte, from int) [][]byte {
	t.Helper()
	out := make([][]byte, 0, len(lines))
	var prev schemas.AuditRecord
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var r schemas.AuditRecord
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		if i >= from {
			r.Seq, r.PrevHash = prev.Seq+1, prev.Hash
			if err := r.Seal(); err != nil {
				t.Fatal(err)
			}
			b, _ := r.Encode()
			l = append(b, '\n')
		}
		out = append(out, l)
		prev = r
	}
	return out
}

func writeLines(t *testing.T, lines [][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditAttackExportEditedAndRehashed(t *testing.T) {
	b := newAuditBed(t, 8)
	lines := b.export()
	if code, out, errOut := runAudit("audit", "verify", "--file", writeLines(t, lines)); code != exitOK {
		t.Fatalf("untouched export: %d %q %q", code, out, errOut)
	}
	// One byte: the sender of the fourth record, bob -> cob.
	i := bytes.Index(lines[3], []byte(`"sender":"bob"`)) + len(`"sender":"`)
	lines[3][i] = 'c'
	mustFail(t, "signature", "audit", "verify", "--file", writeLines(t, reseal(t, lines, 3)))
}

func TestAuditAttackTwoRecordsSwapped(t *testing.T) {
	b := newAuditBed(t, 8)
	lines := b.export()
	lines[3], lines[4] = lines[4], lines[3]
	mustFail(t, "signature", "audit", "verify", "--file", writeLines(t, reseal(t, lines, 3)))
}

// An event acknowledged on the audit worker's consumer by someone else is
// never recorded: verify names it.
func TestAuditAttackRecordMissingForStoredEvent(t *testing.T) {
	b := newAuditBed(t, 3)
	b.stop()
	b.publishEvent() // ev-3, stream seq 4
	c, err := b.js.Consumer(context.Background(), schemas.StreamEvents, "audit-events")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	startAuditWorker(t, b.js, b.keyFile)
	b.publishEvent()
	b.waitRecorded()
	mustFail(t, `FORGE_EVENTS seq 4 (event "ev-3") has no audit record`, "audit", "verify")
}
