package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// Filter selects records by the source's time and by repository. The zero
// Filter selects everything.
type Filter struct {
	// Since and Until bound the record's Time (inclusive); zero is open.
	Since, Until time.Time
	// Repo is "owner/name"; empty is every repository.
	Repo string
}

// Match reports whether r passes f.
func (f Filter) Match(r schemas.AuditRecord) bool {
	if f.Repo != "" && r.Repo != f.Repo {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && r.Time.After(f.Until) {
		return false
	}
	return true
}

// Export writes the records of FORGE_AUDIT that pass f to w as JSON lines,
// each exactly as stored, and returns how many it wrote. An unfiltered
// export verifies with [Verify].
func Export(ctx context.Context, js jetstream.JetStream, f Filter, w io.Writer) (int, error) {
	n := 0
	err := walk(ctx, js, func(raw []byte, seq uint64) error {
		r, err := schemas.DecodeAuditRecord(raw)
		if err == nil && !f.Match(r) {
			return nil
		}
		// A record that does not decode is exported as is, so Verify can
		// point at it.
		if _, err := w.Write(append(raw[:len(raw):len(raw)], '\n')); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
		n++
		return nil
	})
	return n, err
}

// Query returns the records of repo whose time is at or after since (zero:
// all), oldest first. Records that do not decode are skipped.
func Query(ctx context.Context, js jetstream.JetStream, repo string, since time.Time) ([]schemas.AuditRecord, error) {
	f := Filter{Repo: repo, Since: since}
	var out []schemas.AuditRecord
	err := walk(ctx, js, func(raw []byte, seq uint64) error {
		r, err := schemas.DecodeAuditRecord(raw)
		if err == nil && f.Match(r) {
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// QueryVerified is [Query] for records that verify: each one's hash, link
// and signature by the chain's key. Records that do not are left out, and
// the report says why; a forged record is never listed as a fact.
func QueryVerified(ctx context.Context, js jetstream.JetStream, repo string, since time.Time, opts Options) ([]schemas.AuditRecord, *Report, error) {
	f := Filter{Repo: repo, Since: since}
	var out []schemas.AuditRecord
	c := newChecker(opts)
	c.onClean = func(r schemas.AuditRecord) {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	b := &batch{c: c}
	if err := walk(ctx, js, func(raw []byte, seq uint64) error {
		b.add(raw, seq)
		return nil
	}); err != nil {
		return nil, nil, err
	}
	b.end()
	rep := c.finish()
	for _, p := range rep.Problems {
		if p.Kind == ProblemSignature && p.Seq == 0 {
			// The chain is signed by a key nobody gave: nothing in it is a fact.
			out = nil
		}
	}
	return out, rep, nil
}

// walk calls fn for every message of FORGE_AUDIT up to the last sequence at
// the start of the walk, in order. A read that fails midway (a node
// restarting, the consumer's server gone: "no responders") resumes after
// the last record read, with a new consumer, up to walkRetries times; an
// error of fn ends the walk at once.
func walk(ctx context.Context, js jetstream.JetStream, fn func(raw []byte, seq uint64) error) error {
	s, err := js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", schemas.StreamAudit, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info %s: %w", schemas.StreamAudit, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last == 0 {
		return nil
	}
	var next uint64 // 0: from the start
	for failures := 0; ; failures++ {
		err := walkFrom(ctx, js, next, last, func(raw []byte, seq uint64) error {
			if err := fn(raw, seq); err != nil {
				return &stopError{err}
			}
			next = seq + 1
			return nil
		})
		var stop *stopError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &stop):
			return stop.err
		case failures == walkRetries || ctx.Err() != nil:
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(walkPause):
		}
	}
}

const (
	walkRetries = 10
	walkPause   = 500 * time.Millisecond
)

// stopError carries an error of walk's fn, which ends the walk.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }

// walkFrom reads FORGE_AUDIT from sequence from (0: the first) to last.
func walkFrom(ctx context.Context, js jetstream.JetStream, from, last uint64, fn func(raw []byte, seq uint64) error) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	}
	cons, done, err := runtime.OrderedReader(ctx, js, schemas.StreamAudit, cfg)
	if err != nil {
		return fmt.Errorf("ordered consumer on %s: %w", schemas.StreamAudit, err)
	}
	defer done()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("fetch %s: %w", schemas.StreamAudit, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", schemas.StreamAudit, err)
			}
			seq := md.Sequence.Stream
			if err := fn(msg.Data(), seq); err != nil {
				return err
			}
			if seq >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch %s: %w", schemas.StreamAudit, err)
		}
		if got == 0 {
			return fmt.Errorf("read %s: no message after waiting, %d expected", schemas.StreamAudit, last)
		}
	}
}
