package runtime

import (
	"errors"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/schemas"
)

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		check   func(t *testing.T, s Settings, p Policy)
		wantErr error
	}{
		{name: "empty gives defaults", yaml: ``, check: func(t *testing.T, s Settings, p Policy) {
			if s.MaxDeliver != 5 || s.IdempotencyTTL != 7*24*time.Hour || len(p.Repos) != 0 {
				t.Errorf("settings %+v policy %+v", s, p)
			}
		}},
		{name: "worker keys ignored, runtime and policy read", yaml: `
rules: [{repo: "a/*"}]
runtime:
  max_in_flight: 2
  ack_wait: 45s
  retry: {max_elapsed: 0s}
  nak_delays: [1s, 1m]
policy:
  repos: ["acme/*"]
  deny_senders: ["bot*"]
`, check: func(t *testing.T, s Settings, p Policy) {
			if s.MaxInFlight != 2 || s.AckWait != 45*time.Second || s.Retry.MaxElapsed != 0 ||
				s.Retry.Initial != DefaultSettings().Retry.Initial || len(s.NakDelays) != 2 || s.NakDelays[1] != time.Minute ||
				s.MaxDeliver != 5 {
				t.Errorf("settings %+v", s)
			}
			if len(p.Repos) != 1 || p.DenySenders[0] != "bot*" {
				t.Errorf("policy %+v", p)
			}
		}},
		{name: "typo in runtime", yaml: "runtime:\n  max_inflight: 3\n", wantErr: ErrInvalidSettings},
		{name: "typo in retry", yaml: "runtime:\n  retry: {initail: 1s}\n", wantErr: ErrInvalidSettings},
		{name: "typo in policy", yaml: "policy:\n  repo: [x]\n", wantErr: ErrInvalidSettings},
		{name: "bad value", yaml: "runtime:\n  max_deliver: 0\n", wantErr: ErrInvalidSettings},
		{name: "bad duration", yaml: "runtime:\n  ack_wait: soon\n", wantErr: ErrInvalidSettings},
		{name: "bad glob", yaml: "policy:\n  repos: [\"a/[\"]\n", wantErr: ErrInvalidSettings},
		{name: "not a mapping", yaml: "[1, 2]\n", wantErr: ErrInvalidSettings},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tc.yaml), &n); err != nil {
				t.Fatal(err)
			}
			s, p, err := DecodeConfig(&n)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, s, p)
			}
		})
	}
	if s, _, err := DecodeConfig(nil); err != nil || s.MaxInFlight != DefaultSettings().MaxInFlight {
		t.Errorf("DecodeConfig(nil) = %+v, %v", s, err)
	}
}

func TestSettingsValidate(t *testing.T) {
	mod := func(f func(*Settings)) Settings { s := DefaultSettings(); f(&s); return s }
	tests := []struct {
		name    string
		s       Settings
		wantErr error
	}{
		{"defaults", DefaultSettings(), nil},
		{"no in-process retry", mod(func(s *Settings) { s.Retry = RetrySettings{} }), nil},
		{"in flight 0", mod(func(s *Settings) { s.MaxInFlight = 0 }), ErrInvalidSettings},
		{"ack wait too short", mod(func(s *Settings) { s.AckWait = 10 * time.Millisecond }), ErrInvalidSettings},
		{"multiplier below 1", mod(func(s *Settings) { s.Retry.Multiplier = 0.5 }), ErrInvalidSettings},
		{"negative nak delay", mod(func(s *Settings) { s.NakDelays = []time.Duration{-1} }), ErrInvalidSettings},
		{"no ttl", mod(func(s *Settings) { s.IdempotencyTTL = 0 }), ErrInvalidSettings},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Validate(); !errors.Is(err, tc.wantErr) {
				t.Errorf("Validate() = %v, want %v", err, tc.wantErr)
			}
		})
	}
	s := DefaultSettings()
	s.NakDelays = []time.Duration{time.Second, time.Minute}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: time.Minute, 9: time.Minute} {
		if got := s.nakDelay(attempt); got != want {
			t.Errorf("nakDelay(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	p := Policy{
		Repos:       []string{"acme/*", "Solo/Docs"},
		Refs:        []string{"main", "release/**", "refs/tags/v*"},
		Events:      []string{"push", "forge.delete", "issues"},
		DenySenders: []string{"bot*"},
	}
	ev := func(typ, repo, ref, sender string) *schemas.Envelope {
		return &schemas.Envelope{Type: schemas.TypePrefix + typ, Repo: repo, Subject: ref, Sender: sender}
	}
	tests := []struct {
		name     string
		ev       *schemas.Envelope
		wantOK   bool
		wantRule string
	}{
		{"allowed push", ev("push", "acme/site", "refs/heads/main", "alice"), true, ""},
		{"repo case-insensitive", ev("push", "solo/docs", "refs/heads/main", "alice"), true, ""},
		{"nested release branch", ev("push", "acme/site", "refs/heads/release/1/2", "alice"), true, ""},
		{"delete by short ref", ev("delete", "acme/site", "main", "alice"), true, ""},
		{"issues have no ref", ev("issues", "acme/site", "issues/3", "alice"), true, ""},
		{"other repo", ev("push", "evil/site", "refs/heads/main", "alice"), false, "repos"},
		{"repo glob does not cross /", ev("push", "acme/site/x", "refs/heads/main", "alice"), false, "repos"},
		{"other branch", ev("push", "acme/site", "refs/heads/dev", "alice"), false, "refs"},
		{"other event", ev("fork", "acme/site", "", "alice"), false, "events"},
		{"denied sender", ev("push", "acme/site", "refs/heads/main", "BOT-ci"), false, "deny_senders: bot*"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, rule := p.Check(tc.ev)
			if ok != tc.wantOK || rule != tc.wantRule {
				t.Errorf("Check() = %v, %q; want %v, %q", ok, rule, tc.wantOK, tc.wantRule)
			}
		})
	}
	if ok, _ := (Policy{}).Check(ev("push", "x/y", "z", "w")); !ok {
		t.Error("empty policy refused an event")
	}
	if ok, rule := (Policy{Senders: []string{"alice"}}).Check(ev("push", "x/y", "z", "bob")); ok || rule != "senders" {
		t.Errorf("senders allow list: %v %q", ok, rule)
	}
}

func TestIdempotencyKey(t *testing.T) {
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct{ id, want string }{
		{"0b8f7c2a-9c1e-4d55-b6a7-2b8c1d0e9f11", "0b8f7c2a-9c1e-4d55-b6a7-2b8c1d0e9f11"},
		{"a.b/c=d e", "a=2Eb=2Fc=3Dd=20e"},
		{"", "sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	}
	for _, tc := range tests {
		if got := IdempotencyKey(tc.id); got != tc.want {
			t.Errorf("IdempotencyKey(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
	if k := IdempotencyKey(string(long)); len(k) != len("sha256/")+64 {
		t.Errorf("long id key = %q", k)
	}
}
