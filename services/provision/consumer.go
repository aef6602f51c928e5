package provision

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// WorkerConsumer is the durable pull consumer of worker w on FORGE_EVENTS.
// The runtime owns its shape ([runtime.ConsumerConfig]): it depends on the
// worker's settings, and every replica creates or updates it at start.
func WorkerConsumer(w runtime.Worker) jetstream.ConsumerConfig { return runtime.ConsumerConfig(w) }

// WorkerBucket is the idempotency KV bucket of worker w
// ([runtime.IdempotencyBucket]).
func WorkerBucket(w runtime.Worker) jetstream.KeyValueConfig { return runtime.IdempotencyBucket(w) }

// Worker creates worker w's consumer and idempotency bucket, or updates
// them to w's settings. A worker replica does the same when it starts;
// calling it ahead (in a deploy step, or before ingest takes traffic)
// makes the consumer exist, so its lag shows, before the first replica
// runs. Running it again changes nothing.
func Worker(ctx context.Context, js jetstream.JetStream, w runtime.Worker) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, streamTimeout)
		defer cancel()
	}
	if err := w.Validate(); err != nil {
		return fmt.Errorf("provision worker %s: %w", w.Name, err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, WorkerConsumer(w)); err != nil {
		return fmt.Errorf("provision consumer %s on %s: %w", w.Name, schemas.StreamEvents, err)
	}
	bucket := WorkerBucket(w)
	bucket.Replicas = runtime.KeepReplicas(ctx, js, "KV_"+bucket.Bucket, bucket.Replicas)
	if _, err := js.CreateOrUpdateKeyValue(ctx, bucket); err != nil {
		return fmt.Errorf("provision bucket %s: %w", runtime.IdempotencyBucketPrefix+w.Name, err)
	}
	return nil
}
