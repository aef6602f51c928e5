package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// BenchmarkVerifyStream100k verifies a 100,000-record log (a genesis and
// one signed record per event of FORGE_EVENTS) on a real embedded
// JetStream: signatures, links, configuration and coverage.
func BenchmarkVerifyStream100k(b *testing.B) {
	const records = 100_000
	ns := natstest.Run(b)
	_, js := ns.Connect(b)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: schemas.StreamEvents, Subjects: schemas.EventsSubjects}); err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, StreamConfig(0, 1)); err != nil {
		b.Fatal(err)
	}
	pub := EncodePublicKey(pubOf(testKey))
	prev := schemas.AuditRecord{}
	covers := map[string]uint64{}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for seq := uint64(1); seq <= records; seq++ {
		r := schemas.AuditRecord{V: schemas.AuditRecordVersion, Seq: seq, RecordedAt: t0.Add(time.Duration(seq) * time.Millisecond),
			Kind: schemas.AuditKindGenesis, Covers: map[string]uint64{}, Key: pub, PrevHash: prev.Hash}
		if seq > 1 {
			id := fmt.Sprintf("ev-%d", seq-1)
			ev, _ := json.Marshal(schemas.Envelope{ID: id, Type: "forge.push", Repo: "acme/app", Sender: "bob", Time: r.RecordedAt})
			if _, err := js.PublishAsync(schemas.EventSubject("git", "push", "acme", "app"), ev); err != nil {
				b.Fatal(err)
			}
			covers[schemas.StreamEvents] = seq - 1
			r.Kind, r.EventID, r.Repo, r.Sender, r.EventType, r.Time = schemas.AuditKindEvent, id, "acme/app", "bob", "push", r.RecordedAt
			r.Source, r.SourceSeq, r.Covers = schemas.StreamEvents, seq-1, map[string]uint64{schemas.StreamEvents: seq - 1}
		}
		if err := r.Seal(); err != nil {
			b.Fatal(err)
		}
		sign(&r, testKey)
		data, _ := r.Encode()
		if _, err := js.PublishAsync(schemas.AuditSubject, data); err != nil {
			b.Fatal(err)
		}
		prev = r
		if seq%5000 == 0 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(60 * time.Second):
				b.Fatal("publishes not acked")
			}
		}
	}
	<-js.PublishAsyncComplete()
	b.Run("verify", func(b *testing.B) {
		var before, after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		for i := 0; i < b.N; i++ {
			rep, err := VerifyStream(ctx, js, testOpts())
			if err != nil || !rep.OK() || rep.Count != records {
				b.Fatalf("VerifyStream: %v; %d records, problems %v", err, rep.Count, rep.Problems)
			}
		}
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(b.N)
		// CPU time (verify and the embedded server together) says what wall
		// time on a shared machine cannot.
		b.ReportMetric(cpu.Seconds(), "cpu-s/op")
		b.ReportMetric(float64(records), "records/op")
	})
}

// BenchmarkCheckRecord is the per-record part of verify (decode, hash,
// signature) on one core, without the broker.
func BenchmarkCheckRecord(b *testing.B) {
	r := schemas.AuditRecord{V: schemas.AuditRecordVersion, Seq: 7, Kind: schemas.AuditKindEvent, EventID: "ev-6", Repo: "acme/app",
		Sender: "bob", EventType: "push", Source: schemas.StreamEvents, SourceSeq: 6,
		Covers: map[string]uint64{schemas.StreamEvents: 6}, Key: EncodePublicKey(pubOf(testKey)), PrevHash: "ab"}
	_ = r.Seal()
	sign(&r, testKey)
	raw, _ := r.Encode()
	for i := 0; i < b.N; i++ {
		if k := check(raw, 7); !k.hashOK || k.sigErr != nil {
			b.Fatal("record does not check")
		}
	}
}
