package runtime

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

type ctxKey int

const deliveryKey ctxKey = 0

// withDelivery puts d into ctx.
func withDelivery(ctx context.Context, d *delivery) context.Context {
	return context.WithValue(ctx, deliveryKey, d)
}

func deliveryFrom(ctx context.Context) *delivery {
	d, _ := ctx.Value(deliveryKey).(*delivery)
	return d
}

// jobFrom is the job of the delivery in ctx (settle sets it), or nil.
func jobFrom(ctx context.Context) *job {
	if d := deliveryFrom(ctx); d != nil {
		return d.job
	}
	return nil
}

// JetStreamMsg returns the JetStream message behind the job ctx belongs to,
// for a handler that needs more than [EventSeq] and [Attempt]. The runtime
// acks, naks and terminates it: a handler must not.
func JetStreamMsg(ctx context.Context) (jetstream.Msg, bool) {
	if d := deliveryFrom(ctx); d != nil {
		return d.msg, true
	}
	return nil, false
}

// EventSeq is the FORGE_EVENTS stream sequence of the event being handled,
// or 0 outside a job.
func EventSeq(ctx context.Context) uint64 {
	if d := deliveryFrom(ctx); d != nil {
		return d.seq
	}
	return 0
}

// Attempt is the delivery count of the event being handled: 1 on its first
// delivery, n on the n-th (JetStream's NumDelivered). In-process retries
// inside one delivery do not change it. 0 outside a job.
func Attempt(ctx context.Context) int {
	if d := deliveryFrom(ctx); d != nil {
		return d.attempt
	}
	return 0
}
