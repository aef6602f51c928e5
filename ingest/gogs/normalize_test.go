package gogs

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/forgebus/forgebus/schemas"
)

const minimalRepo = `"repository":{"id":7,"owner":{"id":1,"login":"acme"},"name":"widgets","html_url":"https://git.example.com/gogs/acme/widgets"},"sender":{"id":1,"login":"alice"}`

func TestNormalize(t *testing.T) {
	received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	base := Input{
		Event:      "push",
		DeliveryID: "27ab6c71-0969-4202-bace-ca66379f9866",
		Instance:   "git.example",
		Payload:    []byte(`{"ref":"refs/tags/v1.0","before":"0000","after":"abcd","commits":null,` + minimalRepo + `}`),
		Received:   received,
	}
	with := func(mod func(*Input)) Input {
		in := base
		mod(&in)
		return in
	}
	tests := []struct {
		name        string
		in          Input
		wantErr     error
		wantSubject string // NATS subject
		check       func(t *testing.T, n Normalized)
	}{
		{
			name:        "push to a tag ref, derived fields",
			in:          base,
			wantSubject: "forge.git%2Eexample.push.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				var p schemas.Push
				if err := n.Envelope.DecodeData(&p); err != nil {
					t.Fatal(err)
				}
				if p.Tag != "v1.0" || p.Branch != "" || !p.Created || p.Deleted || p.TestDelivery || p.Commits == nil {
					t.Errorf("derived = tag %q branch %q created %v deleted %v test %v commits %v", p.Tag, p.Branch, p.Created, p.Deleted, p.TestDelivery, p.Commits)
				}
				if n.Envelope.Source != "https://git.example.com/gogs" {
					t.Errorf("source = %q, want the base URL under a sub-path", n.Envelope.Source)
				}
				if n.Envelope.Subject != "refs/tags/v1.0" {
					t.Errorf("subject = %q", n.Envelope.Subject)
				}
			},
		},
		{
			name: "branch deleted",
			in: with(func(in *Input) {
				in.Payload = []byte(`{"ref":"refs/heads/x","before":"abcd","after":"0000000000000000000000000000000000000000","commits":null,` + minimalRepo + `}`)
			}),
			wantSubject: "forge.git%2Eexample.push.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				var p schemas.Push
				if err := n.Envelope.DecodeData(&p); err != nil {
					t.Fatal(err)
				}
				if !p.Deleted || p.Created || p.Branch != "x" {
					t.Errorf("deleted %v created %v branch %q", p.Deleted, p.Created, p.Branch)
				}
			},
		},
		{
			name: "configured source wins, body hashed",
			in: with(func(in *Input) {
				in.Source = "https://gogs.internal"
				in.Body = []byte("payload=...")
			}),
			wantSubject: "forge.git%2Eexample.push.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				if n.Envelope.Source != "https://gogs.internal" {
					t.Errorf("source = %q", n.Envelope.Source)
				}
				if n.Envelope.BodySHA256 != sha256Hex([]byte("payload=...")) {
					t.Errorf("bodysha256 is not the hash of Body")
				}
			},
		},
		{
			name:        "no delivery id: a new UUIDv7",
			in:          with(func(in *Input) { in.DeliveryID = "" }),
			wantSubject: "forge.git%2Eexample.push.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				u, err := uuid.Parse(n.Envelope.ID)
				if err != nil || u.Version() != 7 {
					t.Errorf("id %q is not a UUIDv7: %v", n.Envelope.ID, err)
				}
			},
		},
		{
			name:        "any printable delivery id is kept",
			in:          with(func(in *Input) { in.DeliveryID = "redeliver-42_!~" }),
			wantSubject: "forge.git%2Eexample.push.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				if n.Envelope.ID != "redeliver-42_!~" {
					t.Errorf("id = %q", n.Envelope.ID)
				}
			},
		},
		{
			name: "unknown event keeps the payload",
			in: with(func(in *Input) {
				in.Event = "wiki_page"
				in.Payload = []byte(` {"page":"Home", "n": 1.5,` + minimalRepo + `}`)
			}),
			wantSubject: "forge.git%2Eexample.wiki_page.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				var u schemas.Unknown
				if err := n.Envelope.DecodeData(&u); err != nil {
					t.Fatal(err)
				}
				if n.Envelope.DataSchema != schemas.SchemaURI("unknown") || n.Envelope.Subject != "" {
					t.Errorf("dataschema %q subject %q", n.Envelope.DataSchema, n.Envelope.Subject)
				}
				if u.Repository == nil || u.Repository.Name != "widgets" || u.Sender == nil || u.Sender.Login != "alice" {
					t.Errorf("unknown repository/sender = %+v %+v", u.Repository, u.Sender)
				}
				if !bytes.Contains(u.Raw, []byte(`"page":"Home","n":1.5`)) {
					t.Errorf("raw = %s", u.Raw)
				}
			},
		},
		{
			name: "owner and repo names are escaped in the subject",
			in: with(func(in *Input) {
				in.Source = "x"
				in.Payload = []byte(`{"ref":"refs/heads/a.b","before":"1","after":"2","commits":[],"repository":{"owner":{"login":"a.b"},"name":"c*d >"},"sender":{"login":"s"}}`)
			}),
			wantSubject: "forge.git%2Eexample.push.a%2Eb.c%2Ad%20%3E",
		},
		{
			name: "issue comment on a pull request",
			in: with(func(in *Input) {
				in.Event = "issue_comment"
				in.Payload = []byte(`{"action":"created","issue":{"number":9,"pull_request":{"merged":false,"merged_at":null}},"comment":{"id":1},` + minimalRepo + `}`)
			}),
			wantSubject: "forge.git%2Eexample.issue_comment.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				if n.Envelope.Subject != "pulls/9" {
					t.Errorf("subject = %q, want pulls/9", n.Envelope.Subject)
				}
			},
		},
		{
			name: "a chain of parents is cut",
			in: with(func(in *Input) {
				in.Event = "fork"
				in.Payload = []byte(`{"forkee":{"parent":` + strings.Repeat(`{"parent":`, 1000) + `null` + strings.Repeat(`}`, 1000) + `},` + minimalRepo + `}`)
			}),
			wantSubject: "forge.git%2Eexample.fork.acme.widgets",
			check: func(t *testing.T, n Normalized) {
				var f schemas.Fork
				if err := n.Envelope.DecodeData(&f); err != nil {
					t.Fatal(err)
				}
				depth := 0
				for r := f.Forkee.Parent; r != nil; r = r.Parent {
					depth++
				}
				if depth != maxParents {
					t.Errorf("forkee has %d parents, want %d", depth, maxParents)
				}
			},
		},
		{name: "missing event", in: with(func(in *Input) { in.Event = "" }), wantErr: ErrMissingEvent},
		{name: "event with a dot", in: with(func(in *Input) { in.Event = "push.x" }), wantErr: ErrBadEventName},
		{name: "event upper case", in: with(func(in *Input) { in.Event = "Push" }), wantErr: ErrBadEventName},
		{name: "event too long", in: with(func(in *Input) { in.Event = "a" + strings.Repeat("b", 64) }), wantErr: ErrBadEventName},
		{name: "event with newline", in: with(func(in *Input) { in.Event = "push\n" }), wantErr: ErrBadEventName},
		{name: "no instance", in: with(func(in *Input) { in.Instance = "" }), wantErr: ErrNoInstance},
		{name: "delivery id with newline", in: with(func(in *Input) { in.DeliveryID = "abc\r\nNats-Msg-Id: x" }), wantErr: ErrMalformed},
		{name: "delivery id with space", in: with(func(in *Input) { in.DeliveryID = "a b" }), wantErr: ErrMalformed},
		{name: "delivery id too long", in: with(func(in *Input) { in.DeliveryID = strings.Repeat("a", 129) }), wantErr: ErrMalformed},
		{name: "delivery id not ASCII", in: with(func(in *Input) { in.DeliveryID = "ü" }), wantErr: ErrMalformed},
		{name: "truncated JSON", in: with(func(in *Input) { in.Payload = in.Payload[:40] }), wantErr: ErrMalformed},
		{name: "array", in: with(func(in *Input) { in.Payload = []byte(`[]`) }), wantErr: ErrMalformed},
		{name: "null", in: with(func(in *Input) { in.Payload = []byte(`null`) }), wantErr: ErrMalformed},
		{name: "empty", in: with(func(in *Input) { in.Payload = nil }), wantErr: ErrMalformed},
		{name: "trailing data", in: with(func(in *Input) { in.Payload = append(bytes.Clone(in.Payload), `{}`...) }), wantErr: ErrMalformed},
		{name: "unknown event, array", in: with(func(in *Input) { in.Event = "wiki"; in.Payload = []byte(`[1]`) }), wantErr: ErrMalformed},
		{name: "unknown event, no repository", in: with(func(in *Input) { in.Event = "wiki"; in.Payload = []byte(`{"sender":{"login":"a"}}`) }), wantErr: ErrMalformed},
		{name: "unknown event, invalid UTF-8", in: with(func(in *Input) { in.Event = "wiki"; in.Payload = []byte("{\"x\":\"\xff\"," + minimalRepo + "}") }), wantErr: ErrMalformed},
		{name: "no repository", in: with(func(in *Input) { in.Payload = []byte(`{"ref":"refs/heads/x","sender":{"login":"a"}}`) }), wantErr: ErrMalformed},
		{name: "no owner login", in: with(func(in *Input) {
			in.Payload = []byte(`{"ref":"refs/heads/x","repository":{"name":"r","owner":{}},"sender":{"login":"a"}}`)
		}), wantErr: ErrMalformed},
		{name: "no repository name", in: with(func(in *Input) {
			in.Payload = []byte(`{"ref":"refs/heads/x","repository":{"owner":{"login":"o"}},"sender":{"login":"a"}}`)
		}), wantErr: ErrMalformed},
		{name: "no sender", in: with(func(in *Input) {
			in.Payload = []byte(`{"ref":"refs/heads/x","repository":{"name":"r","owner":{"login":"o"},"html_url":"http://h/o/r"}}`)
		}), wantErr: ErrMalformed},
		{name: "owner login too long", in: with(func(in *Input) {
			in.Payload = []byte(`{"ref":"refs/heads/x","repository":{"name":"r","owner":{"login":"` + strings.Repeat("o", MaxNameLen+1) + `"},"html_url":"http://h/o/r"},"sender":{"login":"a"}}`)
		}), wantErr: ErrMalformed},
		{name: "repository name with a slash", in: with(func(in *Input) {
			in.Payload = []byte(`{"ref":"refs/heads/x","repository":{"name":"r/x","owner":{"login":"o"},"html_url":"http://h/o/r"},"sender":{"login":"a"}}`)
		}), wantErr: ErrMalformed},
		{name: "push without ref", in: with(func(in *Input) { in.Payload = []byte(`{` + minimalRepo + `}`) }), wantErr: ErrMalformed},
		{name: "wrong type", in: with(func(in *Input) { in.Payload = []byte(`{"ref":7,` + minimalRepo + `}`) }), wantErr: ErrMalformed},
		{name: "bad time", in: with(func(in *Input) {
			in.Event = "release"
			in.Payload = []byte(`{"release":{"created_at":"yesterday"},` + minimalRepo + `}`)
		}), wantErr: ErrMalformed},
		{name: "html_url not http", in: with(func(in *Input) {
			in.Payload = []byte(`{"ref":"refs/heads/x","repository":{"name":"r","owner":{"login":"o"},"html_url":"javascript:alert(1)"},"sender":{"login":"a"}}`)
		}), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Normalize(tt.in)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Normalize = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "yesterday") {
					t.Errorf("error %q carries payload text", err)
				}
				return
			}
			if err := schemas.Validate(n.JSON); err != nil {
				t.Fatalf("schemas.Validate: %v\n%s", err, n.JSON)
			}
			if n.Subject != tt.wantSubject {
				t.Errorf("Subject = %q, want %q", n.Subject, tt.wantSubject)
			}
			if !n.Envelope.Time.Equal(tt.in.Received) || n.Envelope.Time.Location() != time.UTC {
				t.Errorf("time = %v, want %v in UTC", n.Envelope.Time, tt.in.Received)
			}
			if tt.check != nil {
				tt.check(t, n)
			}
		})
	}
}

// FuzzNormalize: no input panics; every success is valid against the
// schemas, and its subject parses back to its instance, event and repo.
func FuzzNormalize(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		if payload, err := ExtractPayload(fx.contentType(), fx.Body); err == nil {
			f.Add(fx.event(), fx.delivery(), payload)
		}
	}
	// Every captured payload under every other known event's name: the
	// header is not signed, so each must be refused.
	for _, fx := range loadFixtures(f) {
		if payload, err := ExtractPayload(fx.contentType(), fx.Body); err == nil {
			for ev := range wantMembers {
				if ev != fx.event() {
					f.Add(ev, fx.delivery(), payload)
				}
			}
		}
	}
	f.Add("push", "x", []byte(`{"ref":"refs/heads/a","REF":"refs/heads/b","before":"1","after":"2","commits":[],`+minimalRepo+`}`))
	f.Add("push", "x", []byte(`{"ref":"refs/heads/a","ref":"refs/heads/b","before":"1","after":"2","commits":[],`+minimalRepo+`}`))
	f.Add("wiki", "", []byte(`{`+minimalRepo+`}`))
	f.Add("push", "x", []byte(`{"ref":"refs/heads/a","commits":[{"timestamp":"0001-01-01T00:00:00Z"}],`+minimalRepo+`}`))
	f.Fuzz(func(t *testing.T, event, delivery string, payload []byte) {
		n, err := Normalize(Input{Event: event, DeliveryID: delivery, Instance: "fuzz.instance", Payload: payload, Received: time.Unix(1, 0)})
		if err != nil {
			for _, s := range []error{ErrMissingEvent, ErrBadEventName, ErrMalformed} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("Normalize error %v wraps no sentinel", err)
		}
		if err := schemas.Validate(n.JSON); err != nil {
			t.Fatalf("Normalize output invalid: %v\n%s", err, n.JSON)
		}
		// Event/payload binding and exact keys, against an independent
		// reading: what is accepted as a known event has that event's
		// members, repeats no name, and its ref is the exact "ref" member.
		if want, known := wantMembers[event]; known {
			top, dup, ok := strictRead(payload)
			if !ok || dup {
				t.Fatalf("accepted a %s payload that a strict reader refuses (valid %v, duplicate names %v)", event, ok, dup)
			}
			for _, m := range want {
				if _, has := top[m]; !has {
					t.Fatalf("accepted a payload without %q as %s", m, event)
				}
			}
			if event == "push" || event == "create" || event == "delete" {
				var ref string
				if err := json.Unmarshal(top["ref"], &ref); err != nil || ref != n.Envelope.Subject {
					t.Fatalf("subject %q, but the exact \"ref\" member is %s", n.Envelope.Subject, top["ref"])
				}
			}
		}
		addr, err := schemas.ParseEventSubject(n.Subject)
		if err != nil {
			t.Fatalf("subject %q does not parse: %v", n.Subject, err)
		}
		if addr.Instance != "fuzz.instance" || addr.Event != event || addr.Owner+"/"+addr.Repo != n.Envelope.Repo {
			t.Fatalf("subject %q parses to %+v; envelope repo %q", n.Subject, addr, n.Envelope.Repo)
		}
		var back schemas.Envelope
		if err := json.Unmarshal(n.JSON, &back); err != nil || back.ID != n.Envelope.ID {
			t.Fatalf("JSON does not decode back: %v", err)
		}
	})
}

// BenchmarkNormalize normalizes the largest push fixture: the hot path of
// every accepted delivery.
func BenchmarkNormalize(b *testing.B) {
	fx := loadFixture(b, filepath.Join(fixtureDir, "push-multi-commit.json"))
	in := fixtureInput(fx, fx.Body)
	b.SetBytes(int64(len(fx.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Normalize(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the HMAC check that precedes Normalize, for scale.
func BenchmarkVerify(b *testing.B) {
	fx := loadFixture(b, filepath.Join(fixtureDir, "push-multi-commit.json"))
	secrets := [][]byte{[]byte(fixtureSecret)}
	b.SetBytes(int64(len(fx.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(fx.Body, fx.signature(), secrets); err != nil {
			b.Fatal(err)
		}
	}
}
