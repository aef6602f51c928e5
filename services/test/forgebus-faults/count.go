package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/test/streamcheck"
)

// counts is what the streams and the effect receiver hold after the run.
type counts struct {
	envReplicas  int                                   // replicas of envsync's bucket, which envsync created
	events       map[string]int                        // FORGE_EVENTS messages per event id
	eventTime    map[string]time.Time                  // envelope time (set by ingest) per event id
	final        map[string]map[string]schemas.Outcome // worker -> event id -> last terminal outcome, duplicates excluded
	terminal     map[string]map[string]int             // worker -> event id -> terminal results, duplicates excluded
	dupOutcome   map[string]int                        // worker -> "duplicate" results (redelivered after success)
	dupIDs       map[string]map[string]bool            // worker -> event ids with a "duplicate" result
	outcomes     map[string]map[schemas.Outcome]int
	deadLetters  map[string]int // worker -> FORGE_DLQ messages
	auditEvents  map[string]int // event id -> audit records of kind event
	auditRecords int
	resultsMsgs  int
	dlqMsgs      int
	kv           kvCounts
}

// kvCounts is what envsync's bucket stream holds: puts and deletes per
// key (the bucket's history; an E_j key is written at most a put and a
// delete, far below the history of 10), and each key's last value.
type kvCounts struct {
	puts, dels map[string]int    // key -> messages
	last       map[string]string // key -> last value; absent when deleted
}

// countStreams reads the streams (and, withKV, envsync's bucket).
func countStreams(ctx context.Context, js jetstream.JetStream, withKV bool) (*counts, error) {
	c := &counts{
		dupIDs: map[string]map[string]bool{},
		events: map[string]int{}, eventTime: map[string]time.Time{}, final: map[string]map[string]schemas.Outcome{},
		terminal: map[string]map[string]int{}, dupOutcome: map[string]int{},
		kv:       kvCounts{puts: map[string]int{}, dels: map[string]int{}, last: map[string]string{}},
		outcomes: map[string]map[schemas.Outcome]int{}, deadLetters: map[string]int{}, auditEvents: map[string]int{},
	}
	err := streamcheck.Read(ctx, js, schemas.StreamEvents, func(m jetstream.Msg) error {
		// Keyed by the envelope's id (the delivery id): Nats-Msg-Id is the
		// signed payload's hash.
		var ev struct {
			ID   string    `json:"id"`
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		c.events[ev.ID]++
		c.eventTime[ev.ID] = ev.Time
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = streamcheck.Read(ctx, js, schemas.StreamResults, func(m jetstream.Msg) error {
		c.resultsMsgs++
		var r schemas.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("decode result: %w", err)
		}
		if c.outcomes[r.Worker] == nil {
			c.outcomes[r.Worker] = map[schemas.Outcome]int{}
			c.terminal[r.Worker] = map[string]int{}
			c.dupIDs[r.Worker] = map[string]bool{}
			c.final[r.Worker] = map[string]schemas.Outcome{}
		}
		c.outcomes[r.Worker][r.Outcome]++
		switch {
		case r.Outcome == schemas.OutcomeDuplicate:
			c.dupOutcome[r.Worker]++
			c.dupIDs[r.Worker][r.EventID] = true
		case r.Outcome.Terminal():
			c.terminal[r.Worker][r.EventID]++
			c.final[r.Worker][r.EventID] = r.Outcome
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = streamcheck.Read(ctx, js, schemas.StreamDLQ, func(m jetstream.Msg) error {
		c.dlqMsgs++
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			return fmt.Errorf("decode dead letter: %w", err)
		}
		c.deadLetters[d.Worker]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = streamcheck.Read(ctx, js, schemas.StreamAudit, func(m jetstream.Msg) error {
		c.auditRecords++
		var r schemas.AuditRecord
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("decode audit record: %w", err)
		}
		if r.Kind == schemas.AuditKindEvent {
			c.auditEvents[r.EventID]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if withKV {
		kvSubj := "$KV." + envBucket + "."
		err = streamcheck.Read(ctx, js, "KV_"+envBucket, func(m jetstream.Msg) error {
			key, ok := strings.CutPrefix(m.Subject(), kvSubj)
			if !ok {
				return nil
			}
			switch m.Headers().Get("KV-Operation") {
			case "":
				c.kv.puts[key]++
				c.kv.last[key] = string(m.Data())
			default: // DEL, PURGE
				c.kv.dels[key]++
				delete(c.kv.last, key)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}
