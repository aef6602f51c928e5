package schemas

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestEscapeToken(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "webhook-fixtures", "webhook-fixtures"},
		{"empty", "", "%"},
		{"dot", "a.b", "a%2Eb"},
		{"star", "*", "%2A"},
		{"gt", ">", "%3E"},
		{"percent", "100%", "100%25"},
		{"lone percent", "%", "%25"},
		{"space", "my repo", "my%20repo"},
		{"tab", "a\tb", "a%09b"},
		{"newline", "a\nb", "a%0Ab"},
		{"carriage return", "a\r\n", "a%0D%0A"},
		{"NUL", "a\x00b", "a%00b"},
		{"DEL", "a\x7fb", "a%7Fb"},
		{"invalid UTF-8", "a\xffb", "a%FFb"},
		{"cut UTF-8", "\xc3", "%C3"},
		{"non-breaking space", "a\u00a0b", "a%C2%A0b"},
		{"zero-width space", "a\u200bb", "a%E2%80%8Bb"},
		{"emoji", "🚀", "🚀"},
		{"non-ASCII letters", "Grüße中文", "Grüße中文"},
		{"underscore dash", "issue_comment", "issue_comment"},
		{"slash and colon", "a/b:c", "a/b:c"},
		{"wildcard subject", "forge.*.>", "forge%2E%2A%2E%3E"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EscapeToken(tt.in)
			if got != tt.want {
				t.Fatalf("EscapeToken(%q) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := UnescapeToken(got)
			if err != nil || back != tt.in {
				t.Fatalf("UnescapeToken(%q) = %q, %v, want %q", got, back, err, tt.in)
			}
		})
	}
}

func TestUnescapeTokenRejects(t *testing.T) {
	tests := []struct {
		name, tok string
	}{
		{"empty", ""},
		{"raw dot", "a.b"},
		{"raw star", "*"},
		{"raw gt", ">"},
		{"raw space", "a b"},
		{"raw newline", "a\n"},
		{"raw invalid UTF-8", "a\xff"},
		{"cut escape", "a%2"},
		{"cut escape at end", "a%"},
		{"lower-case hex", "a%2e"},
		{"bad hex", "a%GG"},
		{"needless escape", "%61"},
		{"escaped percent then raw dot", "%25."},
		{"escape and raw space", "%2E "},
		{"double percent", "%%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UnescapeToken(tt.tok)
			if !errors.Is(err, ErrBadSubject) {
				t.Fatalf("UnescapeToken(%q) = %q, %v, want ErrBadSubject", tt.tok, got, err)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		name                         string
		instance, event, owner, repo string
		want                         string
	}{
		{"plain", "gogs", "push", "fixture-admin", "webhook-fixtures", "forge.gogs.push.fixture-admin.webhook-fixtures"},
		{"dotted instance", "git.example.com", "issue_comment", "a", "b", "forge.git%2Eexample%2Ecom.issue_comment.a.b"},
		{"dotted repo", "g", "push", "o", "site.io", "forge.g.push.o.site%2Eio"},
		{"empty owner", "g", "push", "", "r", "forge.g.push.%.r"},
		{"wildcards", "*", ">", "*", ">", "forge.%2A.%3E.%2A.%3E"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EventSubject(tt.instance, tt.event, tt.owner, tt.repo)
			if got != tt.want {
				t.Fatalf("EventSubject = %q, want %q", got, tt.want)
			}
			addr, err := ParseEventSubject(got)
			if err != nil {
				t.Fatal(err)
			}
			if want := (EventAddress{tt.instance, tt.event, tt.owner, tt.repo}); addr != want {
				t.Errorf("ParseEventSubject = %+v, want %+v", addr, want)
			}

			want := WorkerAddress{Worker: tt.event, Owner: tt.owner, Repo: tt.repo}
			rs := ResultSubject(tt.event, tt.owner, tt.repo)
			if !strings.HasPrefix(rs, ResultsRoot+".") {
				t.Errorf("ResultSubject = %q", rs)
			}
			if got, err := ParseResultSubject(rs); err != nil || got != want {
				t.Errorf("ParseResultSubject(%q) = %+v, %v, want %+v", rs, got, err, want)
			}
			ds := DLQSubject(tt.event, tt.owner, tt.repo)
			if !strings.HasPrefix(ds, DLQRoot+".") {
				t.Errorf("DLQSubject = %q", ds)
			}
			if got, err := ParseDLQSubject(ds); err != nil || got != want {
				t.Errorf("ParseDLQSubject(%q) = %+v, %v, want %+v", ds, got, err, want)
			}
			// A result subject is not a DLQ subject and the reverse.
			if _, err := ParseDLQSubject(rs); !errors.Is(err, ErrBadSubject) {
				t.Errorf("ParseDLQSubject(result subject) = %v, want ErrBadSubject", err)
			}
			if _, err := ParseResultSubject(ds); !errors.Is(err, ErrBadSubject) {
				t.Errorf("ParseResultSubject(dlq subject) = %v, want ErrBadSubject", err)
			}
		})
	}
}

func TestParseSubjectRejects(t *testing.T) {
	tests := []struct {
		name, subject string
		parse         func(string) error
	}{
		{"event: wrong root", "forgebus.g.push.o.r", parseEvent},
		{"event: too few tokens", "forge.g.push.o", parseEvent},
		{"event: too many tokens", "forge.g.push.o.r.x", parseEvent},
		{"event: empty token", "forge.g..o.r", parseEvent},
		{"event: wildcard token", "forge.*.push.o.r", parseEvent},
		{"event: bad escape", "forge.g.push.o.r%", parseEvent},
		{"event: root only", "forge", parseEvent},
		{"event: empty", "", parseEvent},
		{"result: dlq root", "forgebus.dlq.w.o.r", parseResult},
		{"result: too few", "forgebus.results.w.o", parseResult},
		{"dlq: too many", "forgebus.dlq.w.o.r.x", parseDLQ},
		{"dlq: trailing dot", "forgebus.dlq.w.o.", parseDLQ},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.parse(tt.subject); !errors.Is(err, ErrBadSubject) {
				t.Fatalf("parse(%q) = %v, want ErrBadSubject", tt.subject, err)
			}
		})
	}
}

func parseEvent(s string) error  { _, err := ParseEventSubject(s); return err }
func parseResult(s string) error { _, err := ParseResultSubject(s); return err }
func parseDLQ(s string) error    { _, err := ParseDLQSubject(s); return err }

// FuzzEscapeToken: escaping round-trips, and an escaped token is one NATS
// token with no wildcard, separator or white space in it.
func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "*", ">", "%", "%25", "a b", "\t\n\r", "\x00\x7f", "\xff\xfe", "🚀", "\u00a0\u2028\u200b", "Grüße"} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, s, other string) {
		esc := EscapeToken(s)
		if esc == "" {
			t.Fatalf("EscapeToken(%q) is empty", s)
		}
		if i := strings.IndexFunc(esc, func(r rune) bool {
			return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || !unicode.IsPrint(r)
		}); i >= 0 {
			t.Fatalf("EscapeToken(%q) = %q has %q at %d", s, esc, esc[i:], i)
		}
		if !utf8.ValidString(esc) {
			t.Fatalf("EscapeToken(%q) = %q is not UTF-8", s, esc)
		}
		back, err := UnescapeToken(esc)
		if err != nil || back != s {
			t.Fatalf("UnescapeToken(EscapeToken(%q)) = %q, %v", s, back, err)
		}
		subj := EventSubject(s, other, s, other)
		if n := len(strings.Split(subj, ".")); n != 5 {
			t.Fatalf("EventSubject from %q, %q has %d tokens, want 5: %q", s, other, n, subj)
		}
		addr, err := ParseEventSubject(subj)
		if err != nil || addr != (EventAddress{s, other, s, other}) {
			t.Fatalf("ParseEventSubject(%q) = %+v, %v", subj, addr, err)
		}
		if n := len(strings.Split(ResultSubject(s, other, s), ".")); n != 5 {
			t.Fatalf("ResultSubject has %d tokens, want 5", n)
		}
		// Whatever UnescapeToken accepts, EscapeToken gives back.
		if u, err := UnescapeToken(s); err == nil && EscapeToken(u) != s {
			t.Fatalf("UnescapeToken(%q) = %q, which escapes to %q", s, u, EscapeToken(u))
		}
	})
}

// FuzzParseEventSubject: no subject panics the parsers, and whatever
// ParseEventSubject accepts is what EventSubject builds.
func FuzzParseEventSubject(f *testing.F) {
	for _, s := range []string{"forge.g.push.o.r", "forge.%.%.%.%", "forge.a%2Eb.push.o.r", "forge.", "forge....", "forgebus.results.w.o.r", "forgebus.dlq.w.o.r", "forge.g.push.o.r%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := ParseEventSubject(s); err == nil {
			if got := EventSubject(a.Instance, a.Event, a.Owner, a.Repo); got != s {
				t.Fatalf("ParseEventSubject(%q) = %+v, which builds %q", s, a, got)
			}
		} else if !errors.Is(err, ErrBadSubject) {
			t.Fatalf("error %v is not ErrBadSubject", err)
		}
		if a, err := ParseResultSubject(s); err == nil && ResultSubject(a.Worker, a.Owner, a.Repo) != s {
			t.Fatalf("ParseResultSubject(%q) does not round-trip", s)
		}
		if a, err := ParseDLQSubject(s); err == nil && DLQSubject(a.Worker, a.Owner, a.Repo) != s {
			t.Fatalf("ParseDLQSubject(%q) does not round-trip", s)
		}
	})
}
