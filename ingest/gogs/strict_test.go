package gogs

import (
	"errors"
	"strings"
	"testing"
)

// TestStrictKeys: forgebus reads a body as a strict reader of the same
// signed bytes would: keys match exactly, case included, and a key given
// twice is refused rather than read last-wins.
func TestStrictKeys(t *testing.T) {
	const push = `"before":"1111","after":"2222","commits":[],` + minimalRepo
	tests := []struct {
		name    string
		payload string
		wantErr error
		wantRef string
	}{
		{"exact keys", `{"ref":"refs/heads/main",` + push + `}`, nil, "refs/heads/main"},
		{"upper-case twin does not replace", `{"ref":"refs/heads/main","REF":"refs/heads/evil",` + push + `}`, nil, "refs/heads/main"},
		{"upper-case twin first does not replace", `{"REF":"refs/heads/evil","ref":"refs/heads/main",` + push + `}`, nil, "refs/heads/main"},
		{"upper-case only is not the field", `{"REF":"refs/heads/main",` + push + `}`, ErrMalformed, ""},
		{"same key twice", `{"ref":"refs/heads/main","ref":"refs/heads/evil",` + push + `}`, ErrMalformed, ""},
		{"nested key twice", `{"ref":"refs/heads/main","before":"1111","after":"2222","commits":[],` +
			`"repository":{"id":7,"owner":{"id":1,"login":"acme","login":"evil"},"name":"widgets","html_url":"https://git.example.com/gogs/acme/widgets"},"sender":{"id":1,"login":"alice"}}`, ErrMalformed, ""},
		{"nested upper-case is not the field", `{"ref":"refs/heads/main","before":"1111","after":"2222","commits":[],` +
			`"repository":{"id":7,"owner":{"id":1,"login":"acme"},"Name":"evil","name":"widgets","html_url":"https://git.example.com/gogs/acme/widgets"},"sender":{"id":1,"login":"alice"}}`, nil, "refs/heads/main"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Normalize(Input{Event: "push", DeliveryID: "d-1", Instance: "gogs", Payload: []byte(tt.payload)})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "evil") {
					t.Errorf("error %q repeats a value of the payload", err)
				}
				return
			}
			if n.Envelope.Subject != tt.wantRef || n.Envelope.Repo != "acme/widgets" {
				t.Errorf("read ref %q repo %q, want %q acme/widgets", n.Envelope.Subject, n.Envelope.Repo, tt.wantRef)
			}
		})
	}
}

// TestMissingMember: only a top-level member name counts, not a nested
// one, a string value or text inside a string.
func TestMissingMember(t *testing.T) {
	want := []string{"ref", "pusher_type"}
	tests := []struct {
		raw, missing string
	}{
		{`{"ref":"x","pusher_type":"user"}`, ""},
		{`{"ref":"pusher_type"}`, "pusher_type"},
		{`{"ref":"x","sender":{"pusher_type":"user"}}`, "pusher_type"},
		{`{"ref":"x","a":[{"pusher_type":1}]}`, "pusher_type"},
		{`{"ref":"a\",\"pusher_type\":\"b"}`, "pusher_type"},
		{`{"a":"\\","ref":1,"pusher_type":2}`, ""},
		{`{"\u0072ef":"x","pusher_type":"user"}`, "ref"},
		{`{"REF":"x","pusher_type":"user"}`, "ref"},
		{` { "ref" : 1 , "pusher_type" : [ ] } `, ""},
	}
	for _, tt := range tests {
		if got := missingMember([]byte(tt.raw), want); got != tt.missing {
			t.Errorf("missingMember(%s) = %q, want %q", tt.raw, got, tt.missing)
		}
	}
}
