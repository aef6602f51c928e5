package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// DeadLetterEntry is one message of FORGE_DLQ.
type DeadLetterEntry struct {
	// Seq is its FORGE_DLQ sequence: what [Replay] takes.
	Seq uint64 `json:"seq"`
	// Subject is its FORGE_DLQ subject.
	Subject string `json:"subject"`
	// Stored is when it was written.
	Stored time.Time `json:"stored"`
	// Letter is the dead letter; zero with Err set when it does not decode.
	Letter schemas.DeadLetter `json:"dead_letter"`
	// Err says why Letter could not be decoded, if it could not.
	Err string `json:"error,omitempty"`
}

// ReplayResult is what [Replay] did with one dead letter.
type ReplayResult struct {
	DLQSeq  uint64 `json:"dlq_seq"`
	Worker  string `json:"worker"`
	EventID string `json:"event_id"`
	// EventSeq is the FORGE_EVENTS sequence of the republished event.
	EventSeq uint64 `json:"event_seq"`
	// Duplicate is true when FORGE_EVENTS had the replay already (an
	// earlier replay of the same dead letter that did not get to delete
	// it); the dead letter is removed all the same.
	Duplicate bool `json:"duplicate"`
}

// dlqTimeout bounds the DLQ operations when ctx has no deadline.
const dlqTimeout = 30 * time.Second

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// ListDeadLetters returns the dead letters in FORGE_DLQ, oldest first; of
// one worker when worker is not empty.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, worker string) ([]DeadLetterEntry, error) {
	ctx, cancel := withDefaultTimeout(ctx, dlqTimeout)
	defer cancel()
	filter := schemas.DLQRoot + ".>"
	if worker != "" {
		filter = schemas.DLQRoot + "." + schemas.EscapeToken(worker) + ".>"
	}
	cons, done, err := OrderedReader(ctx, js, schemas.StreamDLQ, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.StreamDLQ, err)
	}
	defer done()
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.StreamDLQ, err)
	}
	left := int(info.NumPending)
	out := make([]DeadLetterEntry, 0, left)
	for left > 0 {
		batch, err := cons.Fetch(min(left, 256), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return out, fmt.Errorf("read %s: %w", schemas.StreamDLQ, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			out = append(out, deadLetterEntry(m))
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				left = 0
			}
		}
		if err := batch.Error(); err != nil {
			return out, fmt.Errorf("read %s: %w", schemas.StreamDLQ, err)
		}
		if got == 0 {
			break
		}
		if left > 0 {
			left -= got
		}
	}
	return out, nil
}

func deadLetterEntry(m jetstream.Msg) DeadLetterEntry {
	e := DeadLetterEntry{Subject: m.Subject()}
	if meta, err := m.Metadata(); err == nil {
		e.Seq = meta.Sequence.Stream
		e.Stored = meta.Timestamp.UTC()
	}
	if err := json.Unmarshal(m.Data(), &e.Letter); err != nil {
		e.Err = fmt.Sprintf("%v: %v", ErrNotDeadLetter, err)
	}
	return e
}

// Replay sends the dead letter at FORGE_DLQ sequence seq back to its worker
// and removes it from the DLQ once FORGE_EVENTS has acknowledged the event.
//
// The original envelope is republished on its original subject with the
// header [ReplayHeader] naming the worker, so only that worker handles it
// (the others ack it silently), and with Nats-Msg-Id "replay:<seq>", so
// FORGE_EVENTS' dedupe does not drop it as the original delivery and a
// second replay of the same letter is stored once. The replay is a new
// message: its attempts count from 1. An event the worker finished in the
// meantime is a duplicate.
func Replay(ctx context.Context, js jetstream.JetStream, seq uint64) (ReplayResult, error) {
	ctx, cancel := withDefaultTimeout(ctx, dlqTimeout)
	defer cancel()
	res := ReplayResult{DLQSeq: seq}
	st, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		return res, fmt.Errorf("replay %d: %w", seq, err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return res, fmt.Errorf("replay %d: %w: no such message in %s", seq, ErrNotDeadLetter, schemas.StreamDLQ)
	}
	if err != nil {
		return res, fmt.Errorf("replay %d: %w", seq, err)
	}
	addr, err := schemas.ParseDLQSubject(raw.Subject)
	if err != nil {
		return res, fmt.Errorf("replay %d: %w: %w", seq, ErrNotDeadLetter, err)
	}
	var dl schemas.DeadLetter
	if err := json.Unmarshal(raw.Data, &dl); err != nil {
		return res, fmt.Errorf("replay %d: %w: %w", seq, ErrNotDeadLetter, err)
	}
	res.Worker, res.EventID = addr.Worker, dl.EventID
	if dl.Worker != addr.Worker || !workerName.MatchString(dl.Worker) {
		return res, fmt.Errorf("replay %d: %w: worker %q does not match its subject", seq, ErrNotDeadLetter, dl.Worker)
	}
	// Only ever publish into FORGE_EVENTS, on an event subject.
	if _, err := schemas.ParseEventSubject(dl.EventSubject); err != nil {
		return res, fmt.Errorf("replay %d: %w: %w", seq, ErrNotDeadLetter, err)
	}
	event, err := originalEvent(dl.Event)
	if err != nil {
		return res, fmt.Errorf("replay %d: %w: %w", seq, ErrNotDeadLetter, err)
	}
	m := &nats.Msg{Subject: dl.EventSubject, Data: event, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, "replay:"+strconv.FormatUint(seq, 10))
	m.Header.Set(ReplayHeader, dl.Worker)
	ack, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(schemas.StreamEvents))
	if err != nil {
		return res, fmt.Errorf("replay %d: publish %s: %w", seq, dl.EventSubject, err)
	}
	res.EventSeq, res.Duplicate = ack.Sequence, ack.Duplicate
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return res, fmt.Errorf("replay %d: republished as event %d, but not removed from %s: %w", seq, ack.Sequence, schemas.StreamDLQ, err)
	}
	return res, nil
}

// originalEvent reverses rawEvent.
func originalEvent(ev json.RawMessage) ([]byte, error) {
	if len(ev) == 0 {
		return nil, errors.New("dead letter has no event")
	}
	var raw map[string][]byte
	if bytes.HasPrefix(ev, []byte(`{"`+RawEventKey+`":`)) && json.Unmarshal(ev, &raw) == nil && len(raw) == 1 {
		return raw[RawEventKey], nil
	}
	return ev, nil
}
