package schemas

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const hexDigits = "0123456789ABCDEF"

// EscapeToken makes s safe to use as one token of a NATS subject, reversibly.
// The bytes of '.', '*', '>', '%', white space, control and other
// non-printable characters, and invalid UTF-8 are written as %XX (upper-case
// hex of each byte); every other character is kept. The empty string becomes
// "%", which no escaped non-empty string can be. [UnescapeToken] reverses it.
func EscapeToken(s string) string {
	if s == "" {
		return "%"
	}
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if keep(r, size) {
			b.WriteString(s[i : i+size])
		} else {
			for j := i; j < i+size; j++ {
				b.WriteByte('%')
				b.WriteByte(hexDigits[s[j]>>4])
				b.WriteByte(hexDigits[s[j]&0x0f])
			}
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !keep(r, size) {
			return true
		}
		i += size
	}
	return false
}

func keep(r rune, size int) bool {
	if r == utf8.RuneError && size <= 1 {
		return false
	}
	switch r {
	case '.', '*', '>', '%':
		return false
	}
	return unicode.IsPrint(r) && !unicode.IsSpace(r)
}

// UnescapeToken reverses [EscapeToken]. It returns an error wrapping
// [ErrBadSubject] for a token EscapeToken cannot have produced.
func UnescapeToken(tok string) (string, error) {
	if tok == "%" {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("%w: empty token", ErrBadSubject)
	}
	if !strings.Contains(tok, "%") {
		if !validRawToken(tok) {
			return "", fmt.Errorf("%w: token %q has unescaped characters", ErrBadSubject, tok)
		}
		return tok, nil
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); {
		c := tok[i]
		if c != '%' {
			r, size := utf8.DecodeRuneInString(tok[i:])
			if !keep(r, size) {
				return "", fmt.Errorf("%w: token %q has unescaped characters", ErrBadSubject, tok)
			}
			b.WriteString(tok[i : i+size])
			i += size
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: token %q has a cut escape", ErrBadSubject, tok)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: token %q has a bad escape", ErrBadSubject, tok)
		}
		b.WriteByte(hi<<4 | lo)
		i += 3
	}
	out := b.String()
	if EscapeToken(out) != tok {
		return "", fmt.Errorf("%w: token %q is not in canonical escaped form", ErrBadSubject, tok)
	}
	return out, nil
}

func validRawToken(tok string) bool {
	for i := 0; i < len(tok); {
		r, size := utf8.DecodeRuneInString(tok[i:])
		if !keep(r, size) {
			return false
		}
		i += size
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EventSubject is the subject an event is published on:
// forge.<instance>.<event>.<owner>.<repo>, each token escaped.
func EventSubject(instance, event, owner, repo string) string {
	return EventsRoot + "." + EscapeToken(instance) + "." + EscapeToken(event) + "." +
		EscapeToken(owner) + "." + EscapeToken(repo)
}

// EventAddress is a parsed event subject.
type EventAddress struct {
	Instance, Event, Owner, Repo string
}

// ParseEventSubject reverses [EventSubject].
func ParseEventSubject(subject string) (EventAddress, error) {
	t, err := parseTokens(subject, EventsRoot, 4)
	if err != nil {
		return EventAddress{}, err
	}
	return EventAddress{Instance: t[0], Event: t[1], Owner: t[2], Repo: t[3]}, nil
}

// ResultSubject is the subject a worker's result is published on:
// forgebus.results.<worker>.<owner>.<repo>.
func ResultSubject(worker, owner, repo string) string {
	return ResultsRoot + "." + EscapeToken(worker) + "." + EscapeToken(owner) + "." + EscapeToken(repo)
}

// DLQSubject is the subject a dead letter is published on:
// forgebus.dlq.<worker>.<owner>.<repo>.
func DLQSubject(worker, owner, repo string) string {
	return DLQRoot + "." + EscapeToken(worker) + "." + EscapeToken(owner) + "." + EscapeToken(repo)
}

// WorkerAddress is a parsed result or dead-letter subject.
type WorkerAddress struct {
	Worker, Owner, Repo string
}

// ParseResultSubject reverses [ResultSubject].
func ParseResultSubject(subject string) (WorkerAddress, error) {
	t, err := parseTokens(subject, ResultsRoot, 3)
	if err != nil {
		return WorkerAddress{}, err
	}
	return WorkerAddress{Worker: t[0], Owner: t[1], Repo: t[2]}, nil
}

// ParseDLQSubject reverses [DLQSubject].
func ParseDLQSubject(subject string) (WorkerAddress, error) {
	t, err := parseTokens(subject, DLQRoot, 3)
	if err != nil {
		return WorkerAddress{}, err
	}
	return WorkerAddress{Worker: t[0], Owner: t[1], Repo: t[2]}, nil
}

func parseTokens(subject, root string, n int) ([]string, error) {
	rest, ok := strings.CutPrefix(subject, root+".")
	if !ok {
		return nil, fmt.Errorf("%w: %q does not start with %q", ErrBadSubject, subject, root+".")
	}
	if got := strings.Count(rest, ".") + 1; got != n {
		return nil, fmt.Errorf("%w: %q has %d tokens after %q, want %d", ErrBadSubject, subject, got, root, n)
	}
	out := make([]string, n)
	for i := range out {
		var tok string
		tok, rest, _ = strings.Cut(rest, ".")
		s, err := UnescapeToken(tok)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}
