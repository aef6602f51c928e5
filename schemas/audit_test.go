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
