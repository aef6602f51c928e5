// Package runtime runs forgebus workers: a durable JetStream pull consumer
// per worker, shared by its replicas, with policy, idempotency, retry,
// dead letters and a published result around every [Handler].
//
// # Shape
//
// A [Worker] is a name, the FORGE_EVENTS subjects it takes, a [Handler], its
// [Settings] and its [Policy]. [New] checks it; [Runtime.Run] creates or
// updates its consumer ([ConsumerConfig], durable, named after the worker)
// and its idempotency bucket ([IdempotencyBucket]), and runs one replica
// until its context is cancelled. Any number of replicas, in any number of
// processes, bind to the same consumer and share its messages.
//
// # One delivery's path
//
// Follow one message from the consumer to its ack; each step names the
// function that does it.
//
//  1. subscriber (subscriber.go) pulls it, at most Settings.MaxInFlight at
//     a time, and hands it to watermill's router as a message whose context
//     holds its [delivery] (the jetstream.Msg, stream sequence, attempt).
//     Short jobs (JobTimeout at most AckWait/2) are pulled ahead with
//     Consumer.Messages; long ones with Fetch, only as many as there are
//     free slots, so no message waits in a buffer while its ack timer runs.
//  2. The router runs the middlewares, outermost first (Runtime.run):
//     settle, watermill's Recoverer, correlate, policy, idempotent, and
//     then the handler with its retry (handle).
//  3. settle (process.go) decodes the envelope (one that does not decode
//     is dead-lettered), starts the heartbeat and the job timeout. A replay
//     for another worker ([ReplayHeader]) is acked silently here.
//  4. policy refuses what [Policy] does not allow: outcome denied.
//  5. idempotent claims the event's key in the worker's KV bucket
//     (idempotency.go, claim): kv.Create writes it "running" for this
//     delivery. If the key is already there it is read: "done" makes this
//     a duplicate (or, when this same message wrote it, its result is
//     published again); "running" makes this copy wait for that delivery,
//     looking again every AckWait/3, until the key is done, deleted, or
//     older than its lease (AckWait): then it is taken over with an
//     Update on the revision read. Of two copies claiming at once, the
//     compare-and-set lets one win.
//  6. handle calls the [Handler], retrying a transient error in process on
//     cenkalti/backoff/v4 (Settings.Retry). A [Permanent] error stops it.
//  7. While 3 to 6 run, the heartbeat (every AckWait/3) sends in-progress
//     on the message and rewrites the running key (Update on its revision),
//     so neither the server nor another copy takes the job from a live
//     replica.
//  8. settle then calls finish, which publishes the outcome with nats.go's
//     PublishMsgAsync and waits for the stream's ack, and then:
//     succeeded or superseded: the key is updated to "done" (outcome, the
//     delivery's sequence and attempt) alongside the result, then acked;
//     a transient failure: a failed result, the key deleted, a nak with the
//     delay Settings.NakDelays gives for the attempt; a permanent failure
//     or the last allowed delivery (Settings.MaxDeliver): a
//     schemas.DeadLetter to FORGE_DLQ, a dead_lettered result, the key
//     deleted (a replay after a fix runs), then acked; denied or
//     duplicate: the result, then acked.
//
// A result's Nats-Msg-Id is <worker>:<event id>:<stream seq>:<outcome> (a
// failed one adds the attempt), so a crash between its publish and the ack
// stores it once.
//
// # Attempts
//
// Attempt is the JetStream delivery count (NumDelivered): 1 for the first
// delivery. The in-process retries of one delivery do not change it. A
// delivery past Settings.MaxDeliver (its replicas died while running it) is
// dead-lettered with [ErrTooManyDeliveries] without running the handler.
//
// # Dead letters and replay
//
// A dead letter holds the original event byte for byte when it is JSON, or
// an object {"forgebus_raw_base64": …} ([RawEventKey]) for bytes that are
// not. [ListDeadLetters] reads FORGE_DLQ; [Replay] republishes a dead
// letter's envelope to FORGE_EVENTS on its original subject with
// [ReplayHeader] naming the worker and Nats-Msg-Id "replay:<dlq seq>", then
// deletes the dead letter. Only the named worker handles it (with a fresh
// attempt count); the others ack it silently. A replay of an event that is
// done is a duplicate.
//
// # Stopping
//
// When Run's context is cancelled it stops pulling, lets running jobs
// finish within Settings.GracePeriod, then cancels the rest, deletes their
// keys and naks them with no delay, so another replica restarts them at
// once, and returns nil. A replica that is killed instead loses nothing:
// its messages are redelivered after AckWait, and its keys are taken over
// once their lease is over.
package runtime
