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
		n, err := Verify(bytes.NewReader(in))
		if err != nil && !errors.Is(err, ErrBroken) {
			t.Fatalf("Verify error %v is not ErrBroken", err)
		}
		if n < 0 {
			t.Fatal("negative count")
		}
	})
}
