// Package audit is the audit worker and the library behind the "forgebus
// audit" commands.
//
// The worker reads every message of FORGE_EVENTS, FORGE_RESULTS and
// FORGE_DLQ (durable consumers "audit-events", "audit-results", "audit-dlq",
// one message in flight each) and appends one [schemas.AuditRecord] per
// message to FORGE_AUDIT, a stream that denies delete and purge. Records
// form a hash chain: each holds the hash of the one before it, and its own
// hash over its canonical form (see [schemas.AuditRecord.Canonical]), and
// each is signed with the worker's ed25519 key ([Config.Key]). The chain
// starts with a genesis record; with a max_age on FORGE_AUDIT the worker
// writes checkpoints that a log cut by retention starts from. The worker
// never chains on top of a head that is not validly signed for its key.
//
// # One chain, every message once
//
// An append is published with Nats-Expected-Last-Sequence set to the head
// the worker knows, so two replicas can never fork the chain: the loser of a
// race re-reads the head (GetLastMsg) and tries again. Every record carries
// "covers", the highest sequence recorded so far per source stream; since
// each source consumer has one message in flight at a time, messages of a
// source are recorded in order, and a message at or below the head's mark
// has been recorded already: it is acked and skipped. This is what makes a
// crash between append and ack harmless, whenever the redelivery comes. The
// publish also carries Nats-Msg-Id "<stream>:<seq>", so JetStream drops a
// duplicate inside its duplicate window too.
//
// # What a record holds
//
// Only whitelisted fields are copied: time, kind, event id, repo, sender,
// event type, outcome, worker, rule, attempt, the source stream and
// sequence. Never a payload, an error text (a build's output may hold
// anything), or a Detail wholesale: only the Detail entries named in
// [Config.DetailKeys] (by default the envsync facts: commit, target, key
// names and hashes, never values). A source message that does not decode
// still gets a record, with a Note, so the chain covers everything.
//
// # Verify, export, query
//
// [VerifyFile] checks an exported file, [VerifyStream] the stream; both
// recompute every hash, link and signature and check the anchor, and
// return a [Report] naming every problem. VerifyStream also checks
// FORGE_AUDIT's configuration and that every source message has its
// record. VerifyFile needs an unfiltered export (or a contiguous run of
// records from an anchor): a filter leaves gaps that are reported as breaks.
package audit
