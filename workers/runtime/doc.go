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
// Every delivery passes, outermost first: settle (decode the envelope,
// in-progress heartbeats every AckWait/3, job timeout, then the result and
// the ack or nak), panic recovery (watermill's Recoverer: a panic is a
// failure with its stack in the result, never a crashed process), the event
// id as correlation id and on every log line (zerolog.Ctx(ctx) in a
// handler), the policy check (outcome denied, with the rule), the
// idempotency check (outcome duplicate), and the handler with in-process
// retry on cenkalti/backoff/v4.
//
// # Why a subscriber of our own
//
// The router is watermill's (v1.5.1): it reads the subscriber's channel and
// runs each message's handler in its own goroutine, then calls Ack or Nack
// on the watermill message. watermill-nats' JetStream subscriber makes no
// durable consumer, and watermill's Ack/Nack cannot say "redeliver in 30 s",
// "I am still working" or "never again". So the subscriber here is ours,
// over nats.go's jetstream pull consumer, with at most Settings.MaxInFlight
// jobs running. For short jobs (JobTimeout at most AckWait/2) it pulls
// ahead with Consumer.Messages (PullMaxMessages = MaxInFlight): fast, and a
// buffered message starts before its ack timer can run out. For long jobs
// it pulls with Fetch only as many messages as it has free slots, so a
// replica never sits on messages it is not working on (they would time out
// in its buffer and move to another replica mid-queue). Each message goes
// to the router with its jetstream.Msg reachable from the message context
// ([JetStreamMsg], [EventSeq], [Attempt]); the runtime settles it itself
// (ack, nak with delay, in-progress) and then frees its slot. When a stop's
// grace period is over, the deliveries still out are nak'ed and their
// slots freed. watermill's own Ack/Nack of the message changes nothing.
//
// # Outcomes and attempts
//
// Attempt is the JetStream delivery count (NumDelivered): 1 for the first
// delivery. Inside one delivery the handler may be called several times
// (Settings.Retry); those tries do not change the attempt. A transient
// failure past the in-process retry publishes a failed result and naks with
// the delay Settings.NakDelays gives for that attempt. A [Permanent] error,
// or a failure of delivery Settings.MaxDeliver, publishes a
// schemas.DeadLetter to FORGE_DLQ and a dead_lettered result, then acks.
// Every outcome is published to FORGE_RESULTS and acknowledged by the
// server before the event is acked. A terminal outcome's Nats-Msg-Id is
// <worker>:<event id>:<stream seq>:<outcome> (a failed one adds the
// attempt), so a crash between the publish and the ack does not store it
// twice.
//
// An event that succeeded (or was superseded) is recorded in the worker's
// KV bucket (key: the event id, [IdempotencyKey]) after the effect; the
// record is sent with the result and the ack waits for both. Any later
// delivery of it, redelivered or replayed, is a duplicate and runs nothing;
// a redelivery of the same message that finds its record publishes the
// recorded result again. The idempotency checks of jobs that start at the
// same moment share one multi-key direct get, sent on a second connection
// the runtime opens with the caller's options and closes when it stops, so
// that it does not queue behind the replica's other traffic (the broker
// answers a direct get in the read loop of the connection that sent it);
// while that connection is down they go on the caller's.
// Results, dead letters and records are published with a reply subject of
// the runtime's own, whose acks it reads itself (acks.go): a publish counts
// only once its stream's ack says stored, and one not acked within 10 s
// fails.
//
// Copies of one event id run one at a time: within a replica through a
// per-event lock, across replicas through a "running" marker in the same
// bucket (key run.<key>) that a job writes only once its message is half
// FORGE_EVENTS's duplicate window old; a copy that finds another
// delivery's marker waits for that delivery's outcome (running.go).
//
// # Dead letters and replay
//
// A dead letter holds the original event byte for byte when it is JSON
// (encoding/json compacts it; ingest's envelopes are compact already), or,
// for bytes that are not JSON, an object {"forgebus_raw_base64": …}
// ([RawEventKey]). [ListDeadLetters] reads FORGE_DLQ; [Replay] republishes a dead letter's
// original envelope to FORGE_EVENTS on its original subject with the
// header [ReplayHeader] naming the worker and Nats-Msg-Id "replay:<dlq
// seq>", then deletes the dead letter. Only the named worker handles it
// (with a fresh attempt count); every other worker acks it silently and
// publishes nothing. A replay of an event that already succeeded is a
// duplicate.
//
// # Stopping
//
// When Run's context is cancelled it stops pulling, lets running jobs
// finish within Settings.GracePeriod, then cancels the rest and naks them
// with no delay, and returns nil. A replica that is killed instead loses
// nothing: its messages are redelivered after AckWait.
package runtime
