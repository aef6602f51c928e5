package streamcheck

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Read calls f with every message of stream, in order, up to its
// last sequence at the time of the call.
func Read(ctx context.Context, js jetstream.JetStream, stream string, f func(jetstream.Msg) error) error {
	var s jetstream.Stream
	var c jetstream.Consumer
	var last uint64
	empty := false
	// The cluster's JetStream API can answer "no responders" for a moment
	// (seen once in `make bench`, right after the load): ask again.
	err := RetryTransient(ctx, func() error {
		var err error
		if s, err = js.Stream(ctx, stream); err != nil {
			return fmt.Errorf("stream %s: %w", stream, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s info: %w", stream, err)
		}
		last, empty = info.State.LastSeq, info.State.Msgs == 0
		if empty {
			return nil
		}
		// A plain ephemeral consumer, no acks, one replica, in memory.
		c, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{
			AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			InactiveThreshold: time.Minute, Replicas: 1, MemoryStorage: true,
		})
		if err != nil {
			return fmt.Errorf("read %s: create consumer: %w", stream, err)
		}
		return nil
	})
	if err != nil || empty {
		return err
	}
	defer func() { _ = s.DeleteConsumer(context.WithoutCancel(ctx), c.CachedInfo().Name) }()
	noResponders := 0
	for {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: fetch: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := f(m); err != nil {
				return err
			}
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", stream, err)
			}
			if md.Sequence.Stream >= last {
				return nil
			}
		}
		err = batch.Error()
		if n == 0 && errors.Is(err, nats.ErrNoResponders) && noResponders < transientTries {
			// The consumer lives on one server of the cluster, and its
			// interest can reach the server this connection is on a
			// moment after it was created. `make bench` failed once in 25
			// runs on 2026-11-25 with "no responders" from this read, from
			// the consumer's creation or a pull (the error did not say
			// which; it does now): pull again.
			noResponders++
			if err := transientPause(ctx); err != nil {
				return fmt.Errorf("read %s: fetch: %w", stream, err)
			}
			continue
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: fetch: %w", stream, err)
		}
		if n == 0 {
			return fmt.Errorf("read %s: stopped before sequence %d: %w", stream, last, ErrTimeout)
		}
	}
}

// A transient error is tried transientTries times, a transientPause apart.
const transientTries = 10

// transientPause waits 500 ms, or returns ctx's error.
func transientPause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
		return nil
	}
}

// RetryTransient calls op until it succeeds, fails with an error that is
// not "no responders" or a timeout, or has failed transientTries times.
func RetryTransient(ctx context.Context, op func() error) error {
	var err error
	for range transientTries {
		if err = op(); err == nil || !(errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout)) {
			return err
		}
		if transientPause(ctx) != nil {
			return err
		}
	}
	return err
}
