package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/workers/runtime"
)

// readTimeout bounds a whole read when ctx has no deadline.
const readTimeout = 30 * time.Second

// ErrNotFound: no event with that id is in FORGE_EVENTS.
var ErrNotFound = errors.New("event not found")

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, readTimeout)
}

// from says where a scan starts: every message, from a sequence, or from a
// time.
type from struct {
	seq  uint64
	time time.Time
}

// scan calls fn for each message of stream that matches filter and was
// stored when the scan started, oldest first.
func scan(ctx context.Context, js jetstream.JetStream, stream, filter string, f from, fn func(jetstream.Msg) error) error {
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if filter != "" {
		cc.FilterSubjects = []string{filter}
	}
	switch {
	case f.seq > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.seq
	case !f.time.IsZero():
		t := f.time
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cons, done, err := runtime.OrderedReader(ctx, js, stream, cc)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer done()
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	left := int(info.NumPending)
	for left > 0 {
		batch, err := cons.Fetch(min(left, 512), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if err := fn(m); err != nil {
				return err
			}
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				left = 0
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if got == 0 {
			break
		}
		if left > 0 {
			left -= got
		}
	}
	return nil
}

func meta(m jetstream.Msg) (seq uint64, stored time.Time) {
	if md, err := m.Metadata(); err == nil {
		return md.Sequence.Stream, md.Timestamp.UTC()
	}
	return 0, time.Time{}
}
