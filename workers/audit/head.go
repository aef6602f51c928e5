package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
)

// LastHead returns the signed head of FORGE_AUDIT: its last record's seq,
// hash, time, key and signature. It checks that record's own hash and
// signature, not the chain: that is [VerifyStream]'s work.
func LastHead(ctx context.Context, js jetstream.JetStream) (*Head, error) {
	s, err := js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", schemas.StreamAudit, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, schemas.AuditSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("get audit head: %s is empty", schemas.StreamAudit)
	}
	if err != nil {
		return nil, fmt.Errorf("get audit head: %w", err)
	}
	r, err := schemas.DecodeAuditRecord(m.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: seq %d: %v", ErrHead, m.Sequence, err)
	}
	if h, err := r.ComputeHash(); err != nil || h != r.Hash || r.Seq != m.Sequence {
		return nil, fmt.Errorf("%w: seq %d: hash or seq does not match", ErrHead, m.Sequence)
	}
	if err := checkSigned(r); err != nil {
		return nil, fmt.Errorf("%w: seq %d: %v", ErrHead, m.Sequence, err)
	}
	return headOf(r), nil
}

// RotateKey appends a key change record, signed by the current key old and
// by next, after which only next may sign. Workers still holding old then
// refuse to append ([ErrHead]) until they are restarted with next.
func RotateKey(ctx context.Context, js jetstream.JetStream, old, next ed25519.PrivateKey) (*Head, error) {
	if len(next) != ed25519.PrivateKeySize {
		return nil, errors.New("rotate audit key: no new key")
	}
	w, err := New(js, Config{Key: old}, zerolog.Nop(), nil)
	if err != nil {
		return nil, err
	}
	w.next = next
	nextPub := EncodePublicKey(next.Public().(ed25519.PublicKey))
	if nextPub == w.pub {
		return nil, errors.New("rotate audit key: the new key is the current key")
	}
	if _, err := w.appendWith(ctx, "", func(h *head) (schemas.AuditRecord, bool) {
		return schemas.AuditRecord{Kind: schemas.AuditKindKeyChange, NextKey: nextPub, Covers: h.covers}, true
	}); err != nil {
		return nil, fmt.Errorf("rotate audit key: %w", err)
	}
	return LastHead(ctx, js)
}
