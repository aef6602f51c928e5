package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/test/streamcheck"
)

var errTimeout = streamcheck.ErrTimeout

// workers are the runtime workers whose results are counted; the audit
// worker is counted by its records.
var workers = []string{"docs", "models", "envsync"}

// counts is what the streams hold.
type counts struct {
	events   map[string]int            // FORGE_EVENTS messages per event id
	terminal map[string]map[string]int // worker -> event id -> terminal results
	dupes    map[string]int            // worker -> "duplicate" results (redelivered after success)
	dlq      int
	audit    map[string]int // event id -> audit records of kind event
	// said: worker -> event id -> what each terminal result said, to
	// explain an event with more than one.
	said map[string]map[string][]string
}

func countStreams(ctx context.Context, js jetstream.JetStream) (*counts, error) {
	c := &counts{events: map[string]int{}, terminal: map[string]map[string]int{}, dupes: map[string]int{}, audit: map[string]int{}, said: map[string]map[string][]string{}}
	for _, w := range workers {
		c.terminal[w] = map[string]int{}
		c.said[w] = map[string][]string{}
	}
	err := streamcheck.Read(ctx, js, schemas.StreamEvents, func(m jetstream.Msg) error {
		// The envelope's id is the delivery id; the Nats-Msg-Id is the
		// signed payload's hash.
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		c.events[ev.ID]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = streamcheck.Read(ctx, js, schemas.StreamResults, func(m jetstream.Msg) error {
		var r schemas.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("decode result: %w", err)
		}
		if c.terminal[r.Worker] == nil {
			return nil
		}
		switch {
		case r.Outcome == schemas.OutcomeDuplicate:
			c.dupes[r.Worker]++
		case r.Outcome.Terminal():
			c.terminal[r.Worker][r.EventID]++
			c.said[r.Worker][r.EventID] = append(c.said[r.Worker][r.EventID],
				fmt.Sprintf("result seq %d: %s attempt %d finished %s detail %v error %q",
					meta(m), r.Outcome, r.Attempt, r.Finished.Format("15:04:05.000"), r.Detail, r.Error))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := streamcheck.Read(ctx, js, schemas.StreamDLQ, func(jetstream.Msg) error { c.dlq++; return nil }); err != nil {
		return nil, err
	}
	err = streamcheck.Read(ctx, js, schemas.StreamAudit, func(m jetstream.Msg) error {
		var r schemas.AuditRecord
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("decode audit record: %w", err)
		}
		if r.Kind == schemas.AuditKindEvent {
			c.audit[r.EventID]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// meta is m's stream sequence, 0 when it has none.
func meta(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

// verdict checks the counts against every delivery sent so far: each one
// answered 2xx is stored once (lost otherwise), nothing is stored twice,
// each runtime worker has exactly one terminal result per stored event
// (its effect once), and the audit worker recorded each stored event once.
type verdict struct {
	lost, storedTwice, stored, storedNon2xx int
	missingResult, extraResult              map[string]int // worker -> events
	auditMissing, auditTwice                int
}

func (v verdict) problems() []string {
	var p []string
	if v.lost > 0 {
		p = append(p, fmt.Sprintf("%d deliveries answered 2xx are not stored", v.lost))
	}
	if v.storedTwice > 0 {
		p = append(p, fmt.Sprintf("%d deliveries stored more than once", v.storedTwice))
	}
	for _, w := range workers {
		if n := v.missingResult[w]; n > 0 {
			p = append(p, fmt.Sprintf("%s: %d stored events without a terminal result", w, n))
		}
		if n := v.extraResult[w]; n > 0 {
			p = append(p, fmt.Sprintf("%s: %d events with more than one terminal result (effect twice)", w, n))
		}
	}
	if v.auditMissing > 0 {
		p = append(p, fmt.Sprintf("audit: %d stored events not recorded", v.auditMissing))
	}
	if v.auditTwice > 0 {
		p = append(p, fmt.Sprintf("audit: %d events recorded more than once", v.auditTwice))
	}
	return p
}

// judge compares c with the deliveries sent (id -> answered 2xx).
func judge(c *counts, sent map[string]bool) verdict {
	v := verdict{missingResult: map[string]int{}, extraResult: map[string]int{}}
	for id, ok := range sent {
		n := c.events[id]
		switch {
		case n == 0 && ok:
			v.lost++
		case n > 1:
			v.storedTwice++
		}
		if n == 0 {
			continue
		}
		v.stored++
		if !ok {
			v.storedNon2xx++
		}
		for _, w := range workers {
			switch t := c.terminal[w][id]; {
			case t == 0:
				v.missingResult[w]++
			case t > 1:
				v.extraResult[w]++
			}
		}
		switch a := c.audit[id]; {
		case a == 0:
			v.auditMissing++
		case a > 1:
			v.auditTwice++
		}
	}
	return v
}
