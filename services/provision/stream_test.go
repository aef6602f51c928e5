package provision

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
)

func TestStreamsIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Run(t).Connect(t)
	s := config.Default().Streams

	for i := range 2 {
		if err := Streams(ctx, js, s); err != nil {
			t.Fatalf("Streams() run %d = %v", i+1, err)
		}
	}
	tests := []struct {
		name       string
		subjects   []string
		maxAge     time.Duration
		duplicates time.Duration
		deny       bool
	}{
		{schemas.StreamEvents, schemas.EventsSubjects, 30 * 24 * time.Hour, 24 * time.Hour, false},
		{schemas.StreamResults, schemas.ResultsSubjects, 30 * 24 * time.Hour, 24 * time.Hour, false},
		{schemas.StreamDLQ, schemas.DLQSubjects, 0, 24 * time.Hour, false},
		{schemas.StreamAudit, schemas.AuditSubjects, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := js.Stream(ctx, tc.name)
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			c := st.CachedInfo().Config
			if len(c.Subjects) != len(tc.subjects) || c.Subjects[0] != tc.subjects[0] {
				t.Errorf("subjects = %v, want %v", c.Subjects, tc.subjects)
			}
			if c.Storage != jetstream.FileStorage || c.Replicas != 1 || c.MaxAge != tc.maxAge {
				t.Errorf("storage %v replicas %d max age %s", c.Storage, c.Replicas, c.MaxAge)
			}
			if tc.duplicates != 0 && c.Duplicates != tc.duplicates {
				t.Errorf("duplicates = %s, want %s", c.Duplicates, tc.duplicates)
			}
			if c.DenyDelete != tc.deny || c.DenyPurge != tc.deny {
				t.Errorf("deny delete %v purge %v, want %v", c.DenyDelete, c.DenyPurge, tc.deny)
			}
		})
	}

	// An event published twice with the same delivery id is stored once.
	for range 2 {
		if _, err := js.Publish(ctx, "forge.gogs.push.o.r", []byte("{}"), jetstream.WithMsgID("d-1")); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := js.Stream(ctx, schemas.StreamEvents)
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Errorf("events after a duplicate publish: %d msgs, %v", info.State.Msgs, err)
	}

	// A changed max age is applied, and the stored events survive it.
	s.Events.MaxAge = 48 * time.Hour
	s.Audit.MaxAge = 365 * 24 * time.Hour
	if err := Streams(ctx, js, s); err != nil {
		t.Fatalf("Streams() update = %v", err)
	}
	info, err = st.Info(ctx)
	if err != nil || info.Config.MaxAge != 48*time.Hour || info.State.Msgs != 1 {
		t.Errorf("after update: max age %s, msgs %d, %v", info.Config.MaxAge, info.State.Msgs, err)
	}
	audit, _ := js.Stream(ctx, schemas.StreamAudit)
	if ai, err := audit.Info(ctx); err != nil || ai.Config.MaxAge != 365*24*time.Hour || !ai.Config.DenyDelete {
		t.Errorf("audit after update: %+v, %v", ai.Config, err)
	}
}

func TestAuditDeniesDeleteAndPurge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Run(t).Connect(t)
	if err := Streams(ctx, js, config.Default().Streams); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, schemas.AuditSubject, []byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Error("DeleteMsg on FORGE_AUDIT succeeded")
	}
	if err := st.SecureDeleteMsg(ctx, ack.Sequence); err == nil {
		t.Error("SecureDeleteMsg on FORGE_AUDIT succeeded")
	}
	if err := st.Purge(ctx); err == nil {
		t.Error("Purge on FORGE_AUDIT succeeded")
	}
	if _, err := st.GetMsg(ctx, ack.Sequence); err != nil {
		t.Errorf("audit message gone: %v", err)
	}
	// The other streams stay deletable: the deny is the audit log's alone.
	ack, err = js.Publish(ctx, "forgebus.dlq.docs.o.r", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	dlq, _ := js.Stream(ctx, schemas.StreamDLQ)
	if err := dlq.DeleteMsg(ctx, ack.Sequence); err != nil {
		t.Errorf("DeleteMsg on FORGE_DLQ = %v", err)
	}
}
