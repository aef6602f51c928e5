package runtime

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReaderInactive is how long the server keeps a reader's consumer after
// its last pull when [OrderedReader]'s close could not delete it (the
// process died, the broker was away): nats.go's default is 5 minutes.
const ReaderInactive = 30 * time.Second

// OrderedReader opens an ordered consumer on stream for one read (a scan,
// a listing, a walk, a live feed), and returns it with close, which
// deletes it. Each read makes a consumer, and the server allows 1,000 per
// stream by default: reads in a loop that left theirs for nats.go's 5
// minutes were refused with "maximum consumers limit reached". A consumer
// close could not delete goes after [ReaderInactive] unused.
func OrderedReader(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, func(), error) {
	if cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = ReaderInactive
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() {
		// The consumer now, after any reset of the ordered consumer.
		info := cons.CachedInfo()
		if info == nil || info.Name == "" {
			return
		}
		ctx, cancel := OpContext(context.WithoutCancel(ctx))
		defer cancel()
		_ = js.DeleteConsumer(ctx, stream, info.Name) // best effort: ReaderInactive is the fallback
	}
	return cons, closeFn, nil
}
