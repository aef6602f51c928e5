// Package ingest is the HTTP side of forgebus: [Handler] receives Gogs
// webhook deliveries (mounted at POST /hooks/gogs by the services module),
// caps their size, checks X-Gogs-Signature against every configured secret
// before trusting any field, normalizes them with package gogs, and publishes
// the CloudEvents envelope to JetStream. It answers 202 only after JetStream
// has acknowledged the write, or after the delivery is safely in an optional
// local spool ([WithSpool]) while the broker is away.
//
// Bad input gets a clear JSON answer: 400 malformed or a payload that does
// not fit the event its header names, 401 bad or missing signature, 405 not
// POST, 413 too large, 415 unsupported content type, and 503 with
// Retry-After when the broker cannot take the write or the handler is at
// its bound of requests in flight or of buffered body bytes. No answer and
// no log line ever carries a secret, a MAC or the body.
//
// One signed payload is one event: its [PayloadMsgID] is the Nats-Msg-Id,
// so a redelivery, another hook's copy and a replay under a fresh delivery
// id are duplicates within the stream's duplicate window, answered with the
// stored event's id.
//
// The handler depends on a small [Publisher] (jetstream.JetStream satisfies
// it) and a small [Spooler]; only the services module knows how NATS is
// reached.
package ingest
