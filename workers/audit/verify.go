package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// MaxRecordSize bounds one line of an exported file.
const MaxRecordSize = 1 << 20

// chain checks records one after the other.
type chain struct {
	n    int
	prev *schemas.AuditRecord
}

// add checks one stored record: canonical bytes, its hash, its link to the
// previous one (the first record may start anywhere, but a record with Seq 1
// must have an empty prev_hash), and that sequences are contiguous.
func (c *chain) add(raw []byte, streamSeq uint64) error {
	i := c.n
	r, err := schemas.DecodeAuditRecord(raw)
	if err != nil {
		return &BrokenError{Index: i, Seq: streamSeq, Reason: err.Error()}
	}
	fail := func(format string, a ...any) error {
		return &BrokenError{Index: i, Seq: r.Seq, Reason: fmt.Sprintf(format, a...)}
	}
	want, err := r.ComputeHash()
	if err != nil {
		return fail("%v", err)
	}
	if r.Hash != want {
		return fail("hash does not match the record's content")
	}
	if streamSeq != 0 && r.Seq != streamSeq {
		return fail("record says seq %d but is stored at %d", r.Seq, streamSeq)
	}
	switch {
	case c.prev == nil && r.Seq == 1 && r.PrevHash != "":
		return fail("first record has a prev_hash")
	case c.prev != nil && r.Seq != c.prev.Seq+1:
		return fail("seq %d follows seq %d: records missing or reordered", r.Seq, c.prev.Seq)
	case c.prev != nil && r.PrevHash != c.prev.Hash:
		return fail("prev_hash does not match the previous record's hash")
	}
	c.prev = &r
	c.n++
	return nil
}

// Verify reads an exported file (JSON lines, as [Export] writes them) and
// checks every record's hash and every prev link. It returns how many
// records verified; on a break, the error is a *[BrokenError] naming the
// first bad record.
func Verify(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxRecordSize)
	var c chain
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			return c.n, &BrokenError{Index: c.n, Reason: "empty line"}
		}
		if err := c.add(line, 0); err != nil {
			return c.n, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return c.n, &BrokenError{Index: c.n, Reason: "line too long"}
		}
		return c.n, fmt.Errorf("read audit file: %w", err)
	}
	return c.n, nil
}

// VerifyStream walks FORGE_AUDIT from the first record and checks it like
// [Verify], and also that each record's seq is its stream sequence.
func VerifyStream(ctx context.Context, js jetstream.JetStream) (int, error) {
	var c chain
	err := walk(ctx, js, func(raw []byte, seq uint64) error { return c.add(raw, seq) })
	return c.n, err
}
