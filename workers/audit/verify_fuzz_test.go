package audit

import (
	"bytes"
	"errors"
	"testing"

	"github.com/forgebus/forgebus/schemas"
)

func FuzzVerify(f *testing.F) {
	r := schemas.AuditRecord{Seq: 1, Kind: schemas.AuditKindEvent, EventID: "e", Source: schemas.StreamEvents, SourceSeq: 1,
		Covers: map[string]uint64{schemas.StreamEvents: 1}}
	_ = r.Seal()
	b, _ := r.Encode()
	f.Add(append(b, '\n'))
	f.Add([]byte("{}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rep := VerifyFile(bytes.NewReader(in), Options{})
		if err := rep.Err(); err == nil || !errors.Is(err, ErrBroken) {
			t.Fatalf("VerifyFile with no trusted key = %v, want ErrBroken", err)
		}
		if rep.Count < 0 || rep.Count > rep.Read {
			t.Fatalf("count %d of %d read", rep.Count, rep.Read)
		}
	})
}
