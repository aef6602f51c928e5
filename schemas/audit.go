package schemas

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// The kinds of [AuditRecord].
const (
	AuditKindEvent      = "event"
	AuditKindResult     = "result"
	AuditKindDeadLetter = "dead_letter"
	// AuditKindGenesis is the first record of a chain (Seq 1, no PrevHash).
	AuditKindGenesis = "genesis"
	// AuditKindCheckpoint vouches, before retention may drop older records,
	// for the chain up to CheckpointSeq/CheckpointHash and for Covers.
	AuditKindCheckpoint = "checkpoint"
	// AuditKindKeyChange hands the chain from Key to NextKey.
	AuditKindKeyChange = "key_change"
)

// AuditRecordVersion is the version of a signed record (field "v"). A
// record without "v" is a version 1 record: hash-chained, not signed.
const AuditRecordVersion = 2

// AuditSigContext prefixes the bytes an audit signature covers, so that an
// audit key's signature means nothing anywhere else.
const AuditSigContext = "forgebus-audit-v2\n"

// AuditRecord is one entry of the hash-chained audit log on [StreamAudit]
// (subject [AuditSubject]): one per message of [StreamEvents],
// [StreamResults] and [StreamDLQ]. It holds who, what and when, never a
// payload, an error text, a secret or a synced value.
//
// The chain: Hash is the lower-case hex SHA-256 of the record's canonical
// form ([AuditRecord.Canonical]); PrevHash is the Hash of the record before
// it ("" for the first record, Seq 1). Seq is the record's own sequence in
// [StreamAudit]. A record is stored as exactly [AuditRecord.Encode]'s bytes,
// so a verifier can also demand byte equality.
type AuditRecord struct {
	// Seq is the record's sequence in StreamAudit (1, 2, ...).
	Seq uint64 `json:"seq"`
	// V is [AuditRecordVersion] for a signed record, 0 (absent) for v1.
	V int `json:"v,omitempty"`
	// RecordedAt is when the audit worker appended the record (UTC).
	RecordedAt time.Time `json:"recorded_at"`
	// Time is the source's own time (UTC): an event's time, a result's
	// finish, a dead letter's death.
	Time time.Time `json:"time"`
	// Kind is AuditKindEvent, AuditKindResult or AuditKindDeadLetter.
	Kind    string `json:"kind"`
	EventID string `json:"event_id"`
	Repo    string `json:"repo,omitempty"`
	// Sender is the Gogs login that caused the event, when known.
	Sender string `json:"sender,omitempty"`
	// EventType is the Gogs event name ("push").
	EventType string  `json:"event_type,omitempty"`
	Outcome   Outcome `json:"outcome,omitempty"`
	Worker    string  `json:"worker,omitempty"`
	Rule      string  `json:"rule,omitempty"`
	Attempt   int     `json:"attempt,omitempty"`
	// Detail holds the allow-listed facts of a result (key names, hashes,
	// a commit); never a value.
	Detail map[string]string `json:"detail,omitempty"`
	// Note says what was wrong with a source message that did not decode.
	Note string `json:"note,omitempty"`
	// Source and SourceSeq name the message this record is about.
	Source    string `json:"source"`
	SourceSeq uint64 `json:"source_seq"`
	// Covers is, per source stream, the highest source sequence recorded up
	// to and including this record.
	Covers map[string]uint64 `json:"covers"`
	// CheckpointSeq and CheckpointHash name the last record a checkpoint
	// vouches for (the one before it).
	CheckpointSeq  uint64 `json:"checkpoint_seq,omitempty"`
	CheckpointHash string `json:"checkpoint_hash,omitempty"`
	// NextKey is the public key that signs the records after a key change.
	NextKey string `json:"next_key,omitempty"`
	// Key is the public key (standard base64 of the 32 ed25519 bytes) that
	// signed the record.
	Key      string `json:"key,omitempty"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
	// Sig is the standard base64 ed25519 signature by Key over
	// [AuditSigContext] followed by Hash.
	Sig string `json:"sig,omitempty"`
	// NextKeySig is NextKey's signature over the same bytes: the new key
	// accepts the hand-over.
	NextKeySig string `json:"next_key_sig,omitempty"`
}

// Canonical is the form the hash is computed over: Go's encoding/json of the
// record with Hash, Sig and NextKeySig set to "" — fields in the order declared above, no
// white space, map keys sorted, times in RFC 3339 with nanoseconds as
// needed, and <, >, & written as \u003c, \u003e, \u0026.
func (r AuditRecord) Canonical() ([]byte, error) {
	r.Hash, r.Sig, r.NextKeySig = "", "", ""
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode audit record: %w", err)
	}
	return b, nil
}

// ComputeHash is the lower-case hex SHA-256 of [AuditRecord.Canonical].
func (r AuditRecord) ComputeHash() (string, error) {
	b, err := r.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// SignedBytes are the bytes Sig and NextKeySig cover: [AuditSigContext]
// followed by Hash.
func (r AuditRecord) SignedBytes() []byte {
	return []byte(AuditSigContext + r.Hash)
}

// Seal sets Hash from the record's other fields. It does not sign: a
// sealed record without a signature is a version 1 record, which proves
// nothing about who wrote it.
func (r *AuditRecord) Seal() error {
	h, err := r.ComputeHash()
	if err != nil {
		return err
	}
	r.Hash = h
	return nil
}

// Encode is the record's stored form: encoding/json of the sealed record.
func (r AuditRecord) Encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode audit record: %w", err)
	}
	return b, nil
}

// DecodeAuditRecord decodes a stored record strictly: unknown fields, trailing
// data, or bytes that are not exactly what [AuditRecord.Encode] gives for
// the decoded record are an error wrapping [ErrInvalid]. It does not check
// the hash.
func DecodeAuditRecord(b []byte) (AuditRecord, error) {
	var r AuditRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return AuditRecord{}, fmt.Errorf("%w: audit record: %v", ErrInvalid, err)
	}
	if dec.More() {
		return AuditRecord{}, fmt.Errorf("%w: audit record: trailing data", ErrInvalid)
	}
	again, err := r.Encode()
	if err != nil {
		return AuditRecord{}, err
	}
	if !bytes.Equal(again, b) {
		return AuditRecord{}, fmt.Errorf("%w: audit record is not in canonical form", ErrInvalid)
	}
	return r, nil
}
