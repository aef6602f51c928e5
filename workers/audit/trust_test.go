package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

var otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// recorded runs a worker over n source messages and stops it.
func recorded(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	publishSources(t, js, n)
	_, stop := startWorker(t, js, nil, 5*time.Second)
	natstest.Eventually(t, 20*time.Second, "recorded", func() bool { return auditCount(t, js) >= uint64(n)+1 && consumersIdle(t, js) })
	stop()
}

func lastRecord(t *testing.T, js jetstream.JetStream) schemas.AuditRecord {
	t.Helper()
	s, _ := js.Stream(context.Background(), schemas.StreamAudit)
	m, err := s.GetLastMsgForSubject(context.Background(), schemas.AuditSubject)
	if err != nil {
		t.Fatal(err)
	}
	r, err := schemas.DecodeAuditRecord(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// verifyProblem verifies the stream and returns the first problem, failing
// the test when there is none.
func verifyProblem(t *testing.T, js jetstream.JetStream, opts Options) Problem {
	t.Helper()
	rep, err := VerifyStream(context.Background(), js, opts)
	return firstProblem(t, rep, err)
}

func firstProblem(t *testing.T, rep *Report, err error) Problem {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatalf("verify found no problem: %+v", rep)
	}
	return rep.Problems[0]
}

// A record with a valid SHA chain but a wrong signature: by another key
// under the real key's name, or by another key under its own name.
func TestForgedSignaturesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		key      string
		signWith ed25519.PrivateKey
		want     string
	}{
		{"real key named, signed by another", EncodePublicKey(pubOf(testKey)), otherKey, "the signature does not verify"},
		{"another key, its own signature", EncodePublicKey(pubOf(otherKey)), otherKey, "no key change hands it over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := setup(t)
			recorded(t, js, 6)
			head := lastRecord(t, js)
			f := schemas.AuditRecord{V: schemas.AuditRecordVersion, Seq: head.Seq + 1, Kind: schemas.AuditKindEvent, EventID: "forged",
				Source: schemas.StreamEvents, SourceSeq: head.Covers[schemas.StreamEvents], Covers: head.Covers, Key: tc.key, PrevHash: head.Hash}
			_ = f.Seal()
			f.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(tc.signWith, f.SignedBytes()))
			data, _ := f.Encode()
			if _, err := js.Publish(context.Background(), schemas.AuditSubject, data); err != nil {
				t.Fatal(err)
			}
			p := verifyProblem(t, js, testOpts())
			if p.Kind != ProblemSignature || p.Seq != f.Seq || !strings.Contains(p.Message, tc.want) {
				t.Fatalf("first problem %v, want a signature problem at seq %d naming %q", p, f.Seq, tc.want)
			}
			w, err := New(js, Config{Key: testKey}, zerolog.Nop(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.append(context.Background(), schemas.AuditRecord{Kind: schemas.AuditKindEvent, Source: schemas.StreamEvents, SourceSeq: 1000}); !errors.Is(err, ErrHead) {
				t.Fatalf("append on a forged head = %v, want ErrHead", err)
			}
			if lastRecord(t, js).Seq != f.Seq {
				t.Fatal("the worker chained on top of the forged record")
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	recorded(t, js, 3)
	h, err := RotateKey(ctx, js, testKey, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	// The old key's worker may no longer append.
	old, _ := New(js, Config{Key: testKey}, zerolog.Nop(), nil)
	if _, err := old.append(ctx, schemas.AuditRecord{Kind: schemas.AuditKindEvent, Source: schemas.StreamEvents, SourceSeq: 1000}); !errors.Is(err, ErrHead) {
		t.Fatalf("append with the old key after the change = %v, want ErrHead", err)
	}
	next, _ := New(js, Config{Key: otherKey}, zerolog.Nop(), nil)
	if ok, err := next.append(ctx, schemas.AuditRecord{Kind: schemas.AuditKindEvent, Source: schemas.StreamEvents, SourceSeq: 1000,
		Covers: map[string]uint64{}}); !ok || err != nil {
		t.Fatalf("append with the new key = %v, %v", ok, err)
	}
	for _, keys := range [][]ed25519.PublicKey{{pubOf(testKey)}, {pubOf(otherKey)}} {
		rep, err := VerifyStream(ctx, js, Options{Keys: keys, SinceHead: h})
		if err != nil || !rep.OK() || len(rep.Keys) != 2 {
			t.Fatalf("verify across the key change with %v: %+v, %v", keys, rep, err)
		}
	}
	stranger := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	rep, err := VerifyStream(ctx, js, Options{Keys: []ed25519.PublicKey{pubOf(stranger)}})
	if p := firstProblem(t, rep, err); p.Kind != ProblemSignature {
		t.Fatalf("verify with a stranger's key: %v", p)
	}
}

// A head kept outside the bus: the untouched log holds it; a log deleted
// and rebuilt to the same length does not, nor one that ends before it.
func TestSinceHead(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	recorded(t, js, 6)
	h, err := LastHead(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOpts()
	opts.SinceHead = h
	if rep, err := VerifyStream(ctx, js, opts); err != nil || !rep.OK() {
		t.Fatalf("untouched log with its head: %+v, %v", rep, err)
	}
	beyond := *h
	beyond.Seq += 5
	opts.SinceHead = &beyond
	if p := verifyProblem(t, js, opts); p.Kind != ProblemHead || !strings.Contains(p.Message, "ends at seq 7") {
		t.Fatalf("head past the end: %v", p)
	}

	// Rebuilt: same length, same key (an attacker with the key could), but
	// another history.
	cfg := StreamConfig(0, 1)
	if err := js.DeleteStream(ctx, schemas.StreamAudit); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range Sources {
		_ = js.DeleteConsumer(ctx, s.Stream, s.Durable)
	}
	_, stop := startWorker(t, js, nil, 5*time.Second)
	natstest.Eventually(t, 20*time.Second, "re-recorded", func() bool { return auditCount(t, js) >= 7 && consumersIdle(t, js) })
	stop()
	opts.SinceHead = h
	if p := verifyProblem(t, js, opts); p.Kind != ProblemHead || p.Seq != h.Seq {
		t.Fatalf("rebuilt log: %v", p)
	}
	forged := *h
	forged.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(otherKey, []byte(schemas.AuditSigContext+h.Hash)))
	opts.SinceHead = &forged
	rep, _ := VerifyStream(ctx, js, opts)
	found := false
	for _, p := range rep.Problems {
		found = found || p.Kind == ProblemHead && strings.Contains(p.Message, "not signed by a key given")
	}
	if !found {
		t.Fatalf("a kept head with a bad signature: %v", rep.Problems)
	}
}

// With a max_age, the worker writes checkpoints; retention drops the oldest
// records and the log verifies from a checkpoint. Records dropped early,
// by a max_msgs set and lifted again, are named.
func TestRetentionWithCheckpoints(t *testing.T) {
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
	const maxAge = 4 * time.Second
	if _, err := js.CreateStream(ctx, StreamConfig(maxAge, 1)); err != nil {
		t.Fatal(err)
	}
	publishSources(t, js, 9)
	_, stop := startWorker(t, js, nil, 5*time.Second)
	s, _ := js.Stream(ctx, schemas.StreamAudit)
	natstest.Eventually(t, 20*time.Second, "retention dropped the first records", func() bool {
		info, err := s.Info(ctx)
		return err == nil && info.State.FirstSeq > 12
	})
	rep, err := VerifyStream(ctx, js, testOpts())
	if err != nil || !rep.OK() || !strings.HasPrefix(rep.Anchor, "checkpoint at seq") {
		t.Fatalf("log after retention: %+v, %v", rep, err)
	}
	stop()

	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = 1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.MaxMsgs = -1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	p := verifyProblem(t, js, testOpts())
	if p.Kind != ProblemAnchor {
		t.Fatalf("records dropped early: %v", p)
	}
}

// Verify while the worker records: what is recorded after the walk began
// is not reported missing.
func TestVerifyWhileRecording(t *testing.T) {
	js := setup(t)
	_, stop := startWorker(t, js, nil, 5*time.Second)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishSources(t, js, 1500)
	}()
	runs := 0
	for {
		rep, err := VerifyStream(context.Background(), js, testOpts())
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("verify during recording, run %d: %v", runs, rep.Problems)
		}
		runs++
		select {
		case <-done:
		default:
			continue
		}
		if consumersIdle(t, js) && runs >= 3 {
			break
		}
	}
	t.Logf("%d verifies while recording", runs)
}
