package schemas

import (
	"errors"
	"testing"
	"time"
)

func TestAuditRecordCanonicalHash(t *testing.T) {
	r := AuditRecord{
		Seq: 2, RecordedAt: time.Date(2026, 11, 24, 12, 0, 0, 5, time.UTC), Time: time.Date(2026, 11, 24, 11, 0, 0, 0, time.UTC),
		Kind: AuditKindResult, EventID: "e1", Repo: "acme/app", Worker: "envsync", Outcome: OutcomeSucceeded,
		Detail: map[string]string{"z": "1", "a": "<&>"}, Source: StreamResults, SourceSeq: 7,
		Covers: map[string]uint64{StreamResults: 7, StreamEvents: 3}, PrevHash: "ab",
	}
	c1, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":2,"recorded_at":"2026-11-24T12:00:00.000000005Z","time":"2026-11-24T11:00:00Z","kind":"result","event_id":"e1","repo":"acme/app","outcome":"succeeded","worker":"envsync","detail":{"a":"\u003c\u0026\u003e","z":"1"},"source":"FORGE_RESULTS","source_seq":7,"covers":{"FORGE_EVENTS":3,"FORGE_RESULTS":7},"prev_hash":"ab","hash":""}`
	if string(c1) != want {
		t.Fatalf("canonical form\n got %s\nwant %s", c1, want)
	}
	if err := r.Seal(); err != nil {
		t.Fatal(err)
	}
	if len(r.Hash) != 64 {
		t.Fatalf("hash %q", r.Hash)
	}
	b, _ := r.Encode()
	back, err := DecodeAuditRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := back.ComputeHash(); h != r.Hash {
		t.Fatal("hash changes across encode and decode")
	}
	r2 := r
	r2.PrevHash = "ac"
	if h, _ := r2.ComputeHash(); h == r.Hash {
		t.Fatal("prev_hash is not covered by the hash")
	}
}

func TestDecodeAuditRecordIsStrict(t *testing.T) {
	r := AuditRecord{Seq: 1, Kind: AuditKindEvent, EventID: "e", Source: StreamEvents, SourceSeq: 1}
	_ = r.Seal()
	good, _ := r.Encode()
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{"as encoded", string(good), nil},
		{"unknown field", `{"seq":1,"extra":1}`, ErrInvalid},
		{"trailing data", string(good) + `{}`, ErrInvalid},
		{"white space", " " + string(good), ErrInvalid},
		{"not json", `{`, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeAuditRecord([]byte(tt.in)); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestAuditRecordV1CanonicalUnchangedAndSigNotHashed(t *testing.T) {
	// A v1 record's canonical form is what it was before signatures existed.
	v1 := AuditRecord{Seq: 1, Kind: AuditKindEvent, EventID: "e", Source: StreamEvents, SourceSeq: 1}
	c, _ := v1.Canonical()
	want := `{"seq":1,"recorded_at":"0001-01-01T00:00:00Z","time":"0001-01-01T00:00:00Z","kind":"event","event_id":"e","source":"FORGE_EVENTS","source_seq":1,"covers":null,"prev_hash":"","hash":""}`
	if string(c) != want {
		t.Fatalf("v1 canonical form changed\n got %s\nwant %s", c, want)
	}
	v2 := v1
	v2.V, v2.Key = AuditRecordVersion, "k"
	_ = v2.Seal()
	signed := v2
	signed.Sig, signed.NextKeySig = "s", "n"
	if h, _ := signed.ComputeHash(); h != v2.Hash {
		t.Fatal("the signatures are part of what is hashed; they must sign the hash instead")
	}
	withKey := v2
	withKey.Key = "other"
	if h, _ := withKey.ComputeHash(); h == v2.Hash {
		t.Fatal("the signing key is not covered by the hash")
	}
}
