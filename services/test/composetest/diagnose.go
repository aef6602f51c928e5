package main

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// diagnose tells, after a drain that timed out, what each consumer still
// holds: its delivery state, the first events past its ack floor, and
// every log line of the stack that names those events. A stuck job's
// story is in those lines.
func (t *tester) diagnose(ctx context.Context, streams []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var ids []string
	for _, name := range streams {
		st, err := t.js.Stream(ctx, name)
		if err != nil {
			t.s.log("diagnose: stream %s: %v", name, err)
			continue
		}
		l := st.ListConsumers(ctx)
		for ci := range l.Info() {
			if ci.NumPending == 0 && ci.NumAckPending == 0 {
				continue
			}
			t.s.log("diagnose: %s/%s pending=%d ack_pending=%d redelivered=%d waiting=%d delivered=%d/%d ack_floor=%d/%d max_deliver=%d leader=%s",
				name, ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting,
				ci.Delivered.Consumer, ci.Delivered.Stream, ci.AckFloor.Consumer, ci.AckFloor.Stream, ci.Config.MaxDeliver, leader(ci))
			// The first messages past the ack floor that the consumer takes:
			// the first is unacked; later ones may be acked already.
			found := 0
			for seq := ci.AckFloor.Stream + 1; seq <= ci.Delivered.Stream && found < 3; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil || !matches(ci.Config, m.Subject) {
					continue
				}
				found++
				var ev schemas.Envelope
				_ = json.Unmarshal(m.Data, &ev)
				t.s.log("diagnose:   seq %d %s event %s", seq, m.Subject, ev.ID)
				if ev.ID != "" {
					ids = append(ids, ev.ID)
				}
			}
		}
	}
	t.logsNaming(ctx, ids)
}

// explainExtra tells, for each event a worker has more than one terminal
// result for (not told before), what each result said and every log line
// of the stack that names the event.
func (t *tester) explainExtra(ctx context.Context, c *counts) {
	var ids []string
	for _, w := range workers {
		for id, n := range c.terminal[w] {
			if n < 2 || t.explained[w+" "+id] || len(ids) >= 3 {
				continue
			}
			t.explained[w+" "+id] = true
			ids = append(ids, id)
			t.s.log("explain: %s has %d terminal results for event %s", w, n, id)
			for _, r := range c.said[w][id] {
				t.s.log("explain:   %s", r)
			}
		}
	}
	t.logsNaming(ctx, ids)
}

// logsNaming logs every line of the stack's logs (up to 200) that names
// one of ids.
func (t *tester) logsNaming(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := t.s.composeRun(ctx, time.Minute, "logs", "--no-color", "--timestamps")
	if err != nil {
		t.s.log("diagnose: logs: %v", err)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		for _, id := range ids {
			if strings.Contains(line, id) && n < 200 {
				t.s.log("diagnose: log %s", line)
				n++
				break
			}
		}
	}
	t.s.log("diagnose: %d log lines name %s", n, strings.Join(ids, ", "))
}

func leader(ci *jetstream.ConsumerInfo) string {
	if ci.Cluster == nil {
		return ""
	}
	return ci.Cluster.Leader
}

// matches reports whether subject is one the consumer takes.
func matches(c jetstream.ConsumerConfig, subject string) bool {
	filters := c.FilterSubjects
	if c.FilterSubject != "" {
		filters = append(filters, c.FilterSubject)
	}
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if subjectMatch(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatch is NATS subject matching with '*' and '>'.
func subjectMatch(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// redeliveriesOfDone tells how often, in the logs of the running
// containers, a redelivery found its job done by the same message (its ack
// or nak lost, or its replica gone before it) and published its result
// again: FORGE_RESULTS's duplicate window is what keeps each of them from
// a second result.
func (t *tester) redeliveriesOfDone(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := t.s.composeRun(ctx, time.Minute, "logs", "--no-color")
	if err != nil {
		t.s.log("logs: %v", err)
		return
	}
	if n := strings.Count(out, "redelivery of a done job: its result is published again"); n > 0 {
		t.s.log("redeliveries of done jobs in the running containers' logs: %d (each result published again, stored once)", n)
	}
}
