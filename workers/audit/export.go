package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
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

// walk calls fn for every message of FORGE_AUDIT up to the last sequence at
// the start of the walk, in order.
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
	cons, err := js.OrderedConsumer(ctx, schemas.StreamAudit, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("ordered consumer on %s: %w", schemas.StreamAudit, err)
	}
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
