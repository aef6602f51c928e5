package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// VerifyStream checks FORGE_AUDIT as [VerifyFile] checks a file, and also
// that each record sits at its own stream sequence, that the stream's
// configuration cannot drop records unnoticed, and that every message of
// the source streams up to the head (or up to what the audit worker has
// acknowledged) has its record. The error is for a log that cannot be
// read; what is wrong with the log is in the report.
func VerifyStream(ctx context.Context, js jetstream.JetStream, opts Options) (*Report, error) {
	s, err := js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", schemas.StreamAudit, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info %s: %w", schemas.StreamAudit, err)
	}
	// What the audit worker acknowledged before the walk begins is recorded
	// in what the walk reads; read later, it would race new records.
	acked, err := ackFloors(ctx, js)
	if err != nil {
		return nil, err
	}
	c := newChecker(opts)
	c.rep.Checked = append(c.rep.Checked, "configuration", "coverage")
	b := &batch{c: c}
	err = walk(ctx, js, func(raw []byte, seq uint64) error {
		b.add(raw, seq)
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.end()
	last, lastAnchorAt := c.prev, c.lastAnchorAt
	rep := c.finish()
	checkConfig(rep, info.Config)
	checkRetention(rep, info.Config.MaxAge, c.firstRec, lastAnchorAt, c.opts.Now())
	var covers map[string]uint64
	if last != nil {
		covers = last.Covers
	}
	if err := checkCoverage(ctx, js, rep, c, covers, acked); err != nil {
		return nil, err
	}
	return rep, nil
}

// checkConfig names every setting of FORGE_AUDIT that lets records go
// without a checkpoint, or lets anyone but retention remove them.
func checkConfig(rep *Report, cfg jetstream.StreamConfig) {
	bad := func(format string, a ...any) { rep.problem(0, ProblemConfig, schemas.StreamAudit+" "+format, a...) }
	if !cfg.DenyDelete {
		bad("allows deleting records (deny_delete is off)")
	}
	if !cfg.DenyPurge {
		bad("allows purging records (deny_purge is off)")
	}
	if cfg.MaxMsgs > 0 {
		bad("has max_msgs %d: the server drops the oldest records with no checkpoint", cfg.MaxMsgs)
	}
	if cfg.MaxBytes > 0 {
		bad("has max_bytes %d: the server drops the oldest records with no checkpoint", cfg.MaxBytes)
	}
	if cfg.MaxMsgsPerSubject > 0 {
		bad("has max_msgs_per_subject %d: the server drops the oldest records with no checkpoint", cfg.MaxMsgsPerSubject)
	}
	if cfg.AllowRollup {
		bad("allows rollup headers: one publish can erase the log")
	}
	if cfg.AllowMsgTTL {
		bad("allows per-message TTLs: a record can be published to expire")
	}
}

// checkRetention: a max_age is the one limit allowed, because the worker
// writes a checkpoint every quarter of it. So the newest checkpoint must be
// younger than half of it, and when the log no longer starts at seq 1 the
// oldest record left must be old enough for retention to have dropped the
// ones before it.
func checkRetention(rep *Report, maxAge time.Duration, first *schemas.AuditRecord, lastAnchorAt, now time.Time) {
	if first == nil {
		return
	}
	if first.Seq > 1 && maxAge == 0 {
		rep.problem(first.Seq, ProblemConfig, "records 1 to %d are gone, but %s has no max_age that could have dropped them", first.Seq-1, schemas.StreamAudit)
	}
	if maxAge == 0 {
		return
	}
	if age := now.Sub(lastAnchorAt); age > maxAge/2 {
		rep.problem(0, ProblemConfig, "%s has max_age %s but the newest checkpoint is %s old: records can go without one (is the audit worker running, and was it restarted after max_age was set?)",
			schemas.StreamAudit, maxAge, age.Round(time.Second))
	}
	if first.Seq > 1 {
		if age := now.Sub(first.RecordedAt); age < maxAge/2 {
			rep.problem(first.Seq, ProblemAnchor, "records before seq %d went early: the oldest record left is %s old, max_age is %s", first.Seq, age.Round(time.Second), maxAge)
		}
	}
}

// checkCoverage names, per source stream, the first message without a
// record, among those the head says are recorded or the audit worker has
// acknowledged, after what the anchor vouches for.
func checkCoverage(ctx context.Context, js jetstream.JetStream, rep *Report, c *checker, covers, acked map[string]uint64) error {
	for _, src := range Sources {
		s, err := js.Stream(ctx, src.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open stream %s: %w", src.Stream, err)
		}
		info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
		if err != nil {
			return fmt.Errorf("stream info %s: %w", src.Stream, err)
		}
		hi := max(covers[src.Stream], acked[src.Stream])
		if hi > info.State.LastSeq {
			hi = info.State.LastSeq
		}
		lo := info.State.FirstSeq
		if b := c.anchorCov[src.Stream]; b+1 > lo {
			lo = b + 1
		}
		if lo == 0 || hi < lo {
			continue
		}
		deleted := make(map[uint64]bool, len(info.State.Deleted))
		for _, d := range info.State.Deleted {
			deleted[d] = true
		}
		have := c.recorded[src.Stream]
		sort.Slice(have, func(i, j int) bool { return have[i] < have[j] })
		first, ok := missing(lo, hi, have, deleted)
		if !ok {
			continue
		}
		n := 0
		for s := first; s <= hi; {
			n++
			next, ok := missing(s+1, hi, have, deleted)
			if !ok {
				break
			}
			s = next
		}
		rep.problem(0, ProblemCoverage, "%s seq %d%s has no audit record (%d messages up to seq %d have none)",
			src.Stream, first, describe(ctx, s, first), n, hi)
	}
	return nil
}

// ackFloors returns, per source stream, the highest sequence up to which
// the audit worker's consumer has acknowledged everything.
func ackFloors(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, src := range Sources {
		cons, err := js.Consumer(ctx, src.Stream, src.Durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("consumer %s on %s: %w", src.Durable, src.Stream, err)
		}
		if ci := cons.CachedInfo(); ci != nil {
			out[src.Stream] = ci.AckFloor.Stream
		}
	}
	return out, nil
}

// describe names the event of a source message, for a coverage problem.
func describe(ctx context.Context, s jetstream.Stream, seq uint64) string {
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return ""
	}
	var ids struct {
		ID      string `json:"id"`
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(m.Data, &ids) != nil {
		return ""
	}
	id := ids.ID
	if id == "" {
		id = ids.EventID
	}
	if id == "" {
		return ""
	}
	if len(id) > 100 {
		id = id[:100]
	}
	return fmt.Sprintf(" (event %q)", id)
}
