package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/workers/runtime"
)

// streamTimeout bounds provisioning one stream when ctx has no deadline;
// attemptTimeout bounds one create-or-update call within it.
const (
	streamTimeout  = 30 * time.Second
	attemptTimeout = 3 * time.Second
)

// EventsStream is FORGE_EVENTS: one message per accepted signed payload,
// with the payload's hash as Nats-Msg-Id deduplicated over
// s.DuplicateWindow (a redelivery and another hook's copy alike).
func EventsStream(s config.Streams) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        schemas.StreamEvents,
		Description: "forgebus: one CloudEvent per accepted Gogs webhook delivery",
		Subjects:    schemas.EventsSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
		MaxAge:      s.Events.MaxAge,
		MaxBytes:    maxBytes(s.Events),
		Duplicates:  s.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	}
}

// ResultsStream is FORGE_RESULTS: one message per worker outcome. A
// result's Nats-Msg-Id is deduplicated over s.DuplicateWindow, as an
// event's is: a redelivery publishes its message's outcome again under the
// same id (a nak or ack lost with a node brings it back after ack_wait,
// which may be longer than the server's default window of 2 minutes).
func ResultsStream(s config.Streams) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        schemas.StreamResults,
		Description: "forgebus: worker outcomes",
		Subjects:    schemas.ResultsSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
		MaxAge:      s.Results.MaxAge,
		MaxBytes:    maxBytes(s.Results),
		Duplicates:  window(s.DuplicateWindow, s.Results.MaxAge),
		Discard:     jetstream.DiscardOld,
	}
}

// DLQStream is FORGE_DLQ: the events a worker gave up on, with the error.
// Unlimited by default: a dead letter waits for an operator. One dead
// letter per message: its Nats-Msg-Id is deduplicated over
// s.DuplicateWindow, as a result's is.
func DLQStream(s config.Streams) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        schemas.StreamDLQ,
		Description: "forgebus: dead letters",
		Subjects:    schemas.DLQSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
		MaxAge:      s.DLQ.MaxAge,
		MaxBytes:    maxBytes(s.DLQ),
		Duplicates:  window(s.DuplicateWindow, s.DLQ.MaxAge),
		Discard:     jetstream.DiscardOld,
	}
}

// AuditStream is FORGE_AUDIT: the hash-chained audit log. It denies delete
// and purge, and is unlimited by default.
func AuditStream(s config.Streams) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        schemas.StreamAudit,
		Description: "forgebus: hash-chained audit log (deny delete, deny purge)",
		Subjects:    schemas.AuditSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
		MaxAge:      s.Audit.MaxAge,
		MaxBytes:    maxBytes(s.Audit),
		Discard:     jetstream.DiscardOld,
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// StreamConfigs returns every stream forgebus uses, in provisioning order.
func StreamConfigs(s config.Streams) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{EventsStream(s), ResultsStream(s), DLQStream(s), AuditStream(s)}
}

// Streams creates each stream of [StreamConfigs], or updates it to the
// configuration when it exists. Running it again changes nothing. It never
// lowers the replicas of a stream that has more ([runtime.KeepReplicas]):
// one process started without FORGEBUS_STREAM_REPLICAS on a cluster must
// not shrink every stream to one copy. Lowering them is an operator's
// deliberate act (nats stream edit).
func Streams(ctx context.Context, js jetstream.JetStream, s config.Streams) error {
	for _, sc := range StreamConfigs(s) {
		if err := ensure(ctx, js, sc); err != nil {
			return err
		}
	}
	return nil
}

// ensure creates or updates one stream. On a cluster, several processes
// starting at once can leave a create waiting for an answer that never comes
// (nats-server#3677) although the stream is made: each attempt is bounded by
// attemptTimeout and a timed-out attempt is tried again while ctx (by
// default bounded by streamTimeout) lasts.
func ensure(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, streamTimeout)
		defer cancel()
	}
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		sc.Replicas = runtime.KeepReplicas(actx, js, sc.Name, sc.Replicas)
		_, err := js.CreateOrUpdateStream(actx, sc)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)):
			continue
		}
		return fmt.Errorf("provision stream %s: %w", sc.Name, err)
	}
}

func maxBytes(l config.StreamLimits) int64 {
	if l.MaxBytes <= 0 {
		return -1
	}
	return int64(l.MaxBytes)
}

// window is a duplicate window of d, shortened to maxAge when the stream
// keeps its messages for less (the server refuses a longer window).
func window(d, maxAge time.Duration) time.Duration {
	if maxAge > 0 && d > maxAge {
		return maxAge
	}
	return d
}
