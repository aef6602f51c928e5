// Package runtime runs forgebus workers: a durable JetStream pull consumer
// per worker, shared by its replicas, with policy, idempotency, retry,
// dead letters and a published result around every [Handler].
package runtime
