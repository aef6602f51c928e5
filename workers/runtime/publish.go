package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// msgIDAt is the Nats-Msg-Id of an outcome of delivery attempt. A failure
// is one per attempt; a terminal outcome is one per message, whatever the
// attempt: published again after a crash between publish and ack, or by a
// redelivery that ran the handler again because the crash came before the
// idempotency record was stored, it is stored once (within FORGE_RESULTS's
// duplicate window). The stream sequence tells a replay (a new message)
// from a redelivery.
func (r *Runtime) msgIDAt(j *job, attempt int, kind string) string {
	id := r.w.Name + ":" + j.ev.ID + ":" + strconv.FormatUint(j.d.seq, 10) + ":"
	if kind == string(schemas.OutcomeFailed) {
		id += strconv.Itoa(attempt) + ":"
	}
	return id + kind
}

// publishResult starts publishing j's outcome, as the outcome of delivery
// attempt, on FORGE_RESULTS; the future says when the stream has it.
func (r *Runtime) publishResult(j *job, attempt int, outcome schemas.Outcome, herr error) (jetstream.PubAckFuture, error) {
	now := time.Now().UTC()
	res := schemas.Result{
		Worker:     r.w.Name,
		EventID:    j.ev.ID,
		EventType:  j.ev.Type,
		Repo:       j.ev.Repo,
		Subject:    j.ev.Subject,
		Outcome:    outcome,
		Attempt:    attempt,
		DurationMS: float64(now.Sub(j.started).Microseconds()) / 1000,
		Error:      errorText(herr),
		Rule:       j.rule,
		Detail:     j.report.Detail,
		Started:    j.started.UTC(),
		Finished:   now,
	}
	data, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	owner, repo := j.address()
	return r.publishAsync(schemas.ResultSubject(r.w.Name, owner, repo), data, r.msgIDAt(j, attempt, string(outcome)), schemas.StreamResults)
}

// publishDeadLetter publishes j's event with herr on FORGE_DLQ and waits
// for the stream's ack.
func (r *Runtime) publishDeadLetter(ctx context.Context, j *job, herr error) error {
	dl := schemas.DeadLetter{
		Worker:       r.w.Name,
		EventID:      j.ev.ID,
		EventType:    j.ev.Type,
		Repo:         j.ev.Repo,
		EventSubject: j.subject,
		Error:        errorText(herr),
		Permanent:    IsPermanent(herr),
		Attempts:     j.d.attempt,
		FirstTried:   j.started.UTC(),
		DeadAt:       time.Now().UTC(),
		Event:        rawEvent(j.d.msg.Data()),
	}
	if meta, err := j.d.msg.Metadata(); err == nil && !meta.Timestamp.IsZero() {
		// The event's first delivery was after it was stored.
		dl.FirstTried = meta.Timestamp.UTC()
	}
	data, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	owner, repo := j.address()
	// No attempt in the id: one dead letter per message.
	id := r.w.Name + ":" + j.ev.ID + ":" + strconv.FormatUint(j.d.seq, 10) + ":dlq"
	f, err := r.publishAsync(schemas.DLQSubject(r.w.Name, owner, repo), data, id, schemas.StreamDLQ)
	if err != nil {
		return err
	}
	return waitPublish(ctx, f)
}

// RawEventKey is the one key of the object that stands for an event that
// is not JSON in DeadLetter.Event: {"forgebus_raw_base64": "<the bytes>"}.
const RawEventKey = "forgebus_raw_base64"

// rawEvent is the event for DeadLetter.Event: the bytes themselves when
// they are JSON, else an object holding them in base64 under
// [RawEventKey], so a dead letter can always be encoded and [Replay] sends
// back the original bytes.
func rawEvent(data []byte) json.RawMessage {
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	s, _ := json.Marshal(map[string][]byte{RawEventKey: data})
	return s
}

// publishAsync publishes data on subject, which stream must store, with
// the Nats-Msg-Id id, through nats.go's async publish.
func (r *Runtime) publishAsync(subject string, data []byte, id, stream string) (jetstream.PubAckFuture, error) {
	f, err := r.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data},
		jetstream.WithMsgID(id), jetstream.WithExpectStream(stream))
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", subject, err)
	}
	return f, nil
}

// waitPublish waits for an async publish's ack, or for ctx.
func waitPublish(ctx context.Context, f jetstream.PubAckFuture) error {
	// An answer that came is taken even when ctx is over by now (the
	// record beside the publish may have outlasted it).
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
	default:
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", f.Msg().Subject, ctx.Err())
	}
}
