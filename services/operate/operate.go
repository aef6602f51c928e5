// Package operate holds the operations that change or check the bus on an
// operator's request: replaying dead letters and verifying the audit chain.
// The forgebus CLI and the console both call them, so both do the same.
package operate

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/workers/audit"
	"github.com/forgebus/forgebus/workers/runtime"
)

// Replayed is what replaying one dead letter did.
type Replayed struct {
	Seq    uint64               `json:"seq"`
	Result runtime.ReplayResult `json:"result"`
	// Err is why it was not replayed; nil when it was.
	Err error `json:"-"`
}

// Replay sends each dead letter (by FORGE_DLQ sequence) back to its worker,
// in order, and reports each one; a failure does not stop the others.
func Replay(ctx context.Context, js jetstream.JetStream, seqs []uint64) []Replayed {
	out := make([]Replayed, 0, len(seqs))
	for _, seq := range seqs {
		res, err := runtime.Replay(ctx, js, seq)
		out = append(out, Replayed{Seq: seq, Result: res, Err: err})
	}
	return out
}

// AllDeadLetters returns the FORGE_DLQ sequences of every dead letter, of
// one worker when worker is not empty: what "replay --all" replays.
func AllDeadLetters(ctx context.Context, js jetstream.JetStream, worker string) ([]uint64, error) {
	list, err := runtime.ListDeadLetters(ctx, js, worker)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, 0, len(list))
	for _, e := range list {
		seqs = append(seqs, e.Seq)
	}
	return seqs, nil
}

// VerifyAudit checks the audit log in FORGE_AUDIT against opts and returns
// the report; an error means the bus could not be read. It is the one place
// the console and the CLI call the audit package's verification through.
func VerifyAudit(ctx context.Context, js jetstream.JetStream, opts audit.Options) (*audit.Report, error) {
	return audit.VerifyStream(ctx, js, opts)
}
