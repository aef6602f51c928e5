// Package spool is ingest's local, durable, bounded queue for verified
// events that JetStream could not take (issue 7). Gogs never retries a
// delivery by itself, so when a publish fails or times out the HTTP handler
// calls [Spool.Append], which returns only after the entry is fsync'd, and
// answers 202 "spooled". A background [Spool.Forward] publishes the spooled
// entries in arrival order, with the Nats-Msg-Id a direct publish would
// have had (the signed payload's hash), as soon as JetStream
// is back, and removes each one only after its ack.
//
// # On disk
//
// One directory per ingest replica, guarded by an flock on its LOCK file
// ([ErrLocked] for a second owner). Entries are appended to segment files
// (NNNNNNNNNNNNNNNNNNNN.seg) as records of magic, length, CRC-32C and
// payload, so a cut or a flipped bit at any byte is detected. Concurrent
// Appends share one fsync (group commit). Each segment has an ack file
// (NNN….ack) of fsync'd, checksummed markers holding the offset up to which
// its entries are forwarded; a segment and its ack file are deleted once all
// of its entries are forwarded. Directory entries are fsync'd after files
// are created, moved or removed.
//
// At [Open], every whole record past the committed offset is queued again,
// in order. A corrupt or truncated tail (a power cut mid-write) ends the
// good prefix: the tail is copied to <segment>.corrupt-<time>, the segment
// is truncated, and it is logged; Open never fails because of corruption.
//
// # Guarantee
//
// Nothing acknowledged by Append is lost while its disk survives, and
// nothing is published twice into the stream: a crash between JetStream's
// ack and the ack marker publishes that entry again, with the same
// Nats-Msg-Id, and JetStream's duplicate window drops it. That holds as
// long as the entry is re-published within the stream's duplicate window
// (forgebus provisions 24h): an outage of the broker, or of ingest with a
// non-empty spool, longer than the window can publish one entry twice.
//
// # Limits
//
// [Limits] bound the number and the encoded size of the entries not yet
// forwarded; past them Append returns [ErrFull] (the handler answers 503
// with Retry-After), logs it once per episode and counts it in
// forgebus_spool_full_rejections_total. [Spool.Stats] and [NewMetrics]
// expose depth, bytes and the age of the oldest entry.
//
// The package has no global state: several spools (in different
// directories) can live in one process.
package spool
