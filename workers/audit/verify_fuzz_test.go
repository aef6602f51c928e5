package audit

import (
	"bytes"
	"errors"
	"testing"

	"github.com/forgebus/forgebus/schemas"
)

func FuzzVerify(f *testing.F) {
	pub := EncodePublicKey(pubOf(testKey))
	g := schemas.AuditRecord{V: schemas.AuditRecordVersion, Seq: 1, Kind: schemas.AuditKindGenesis, Covers: map[string]uint64{}, Key: pub}
	_ = g.Seal()
	sign(&g, testKey)
	r := schemas.AuditRecord{V: schemas.AuditRecordVersion, Seq: 2, Kind: schemas.AuditKindEvent, EventID: "e", Source: schemas.StreamEvents, SourceSeq: 1,
		Covers: map[string]uint64{schemas.StreamEvents: 1}, Key: pub, PrevHash: g.Hash}
	_ = r.Seal()
	sign(&r, testKey)
	gb, _ := g.Encode()
	rb, _ := r.Encode()
	f.Add(append(append(append(gb, '\n'), rb...), '\n'))
	f.Add([]byte("{}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rep := VerifyFile(bytes.NewReader(in), testOpts())
		if err := rep.Err(); err != nil && !errors.Is(err, ErrBroken) {
			t.Fatalf("VerifyFile error %v is not ErrBroken", err)
		}
		if rep.Count < 0 || rep.Count > rep.Read {
			t.Fatalf("count %d of %d read", rep.Count, rep.Read)
		}
		if rep.OK() && rep.Read > 0 && rep.Anchor == "" {
			t.Fatal("a log with no anchor verified")
		}
	})
}
