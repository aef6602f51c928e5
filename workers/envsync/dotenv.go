package envsync

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/joho/godotenv"
)

// envKeyRe is an env key that can be a KV key token sequence.
var envKeyRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.]*$`)

// parseEnv parses an env file with godotenv. godotenv's own errors quote the
// file's content, so they are never returned: a parse error is reported as
// [ErrParse] with the line of the statement that failed and a fixed reason,
// found by walking the file the way godotenv's parser does. Keys that cannot
// be KV keys give [ErrBadKey] with their line.
func parseEnv(src []byte) (map[string]string, error) {
	stmts, errLine, reason := walkEnv(src)
	env, err := godotenv.UnmarshalBytes(src)
	if err != nil {
		if errLine > 0 {
			return nil, fmt.Errorf("%w: line %d: %s", ErrParse, errLine, reason)
		}
		return nil, fmt.Errorf("%w: line unknown", ErrParse)
	}
	for _, s := range stmts {
		if err := checkKey(s.key); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadKey, s.line, err)
		}
	}
	// Belt and braces: every key godotenv returned is checked, even one the
	// walker did not see.
	for k := range env {
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
	}
	return env, nil
}

func checkKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("a line has no variable name (missing \"=\"?)")
	case !envKeyRe.MatchString(k) || strings.Contains(k, "..") || strings.HasSuffix(k, "."):
		// The name is not a value, but keep it bounded and printable.
		return fmt.Errorf("variable name %q: only A-Z a-z 0-9 _ and single inner dots", truncate(k, 64))
	}
	return nil
}

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type statement struct {
	key  string
	line int
}

// walkEnv mirrors godotenv v1.5.1's parser (parser.go) statement by statement,
// keeping byte offsets so it can name lines. It returns the statements it
// read, and the line and a fixed reason of the first error.
func walkEnv(src []byte) (stmts []statement, errLine int, reason string) {
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	lineOf := func(off int) int { return 1 + bytes.Count(src[:off], []byte("\n")) }
	pos := 0
	for {
		// getStatementStart: skip white space and comment lines.
		for {
			i := bytes.IndexFunc(src[pos:], func(r rune) bool { return !unicode.IsSpace(r) })
			if i == -1 {
				return stmts, 0, ""
			}
			pos += i
			if src[pos] != '#' {
				break
			}
			j := bytes.IndexByte(src[pos:], '\n')
			if j == -1 {
				return stmts, 0, ""
			}
			pos += j
		}
		start := pos
		// locateKeyName.
		k := pos
		for k < len(src) && isSpace(rune(src[k])) {
			k++
		}
		if bytes.HasPrefix(src[k:], []byte("export")) {
			t := k + len("export")
			if t < len(src) && isSpace(rune(src[t])) {
				k = t
				for k < len(src) && isSpace(rune(src[k])) {
					k++
				}
			}
		}
		keyStart, keyEnd, valStart := k, -1, -1
		for i := k; i < len(src); i++ {
			c := src[i]
			if isSpace(rune(c)) {
				continue
			}
			if c == '=' || c == ':' {
				keyEnd, valStart = i, i+1
				break
			}
			if c == '_' || unicode.IsLetter(rune(c)) || unicode.IsNumber(rune(c)) || c == '.' {
				continue
			}
			return stmts, lineOf(start), "unexpected character in variable name (a line without \"=\"?)"
		}
		if keyStart == len(src) {
			return stmts, lineOf(start), "empty statement"
		}
		key := ""
		if keyEnd >= 0 {
			key = strings.TrimRightFunc(string(src[keyStart:keyEnd]), unicode.IsSpace)
		} else {
			valStart = keyStart
		}
		for valStart < len(src) && isSpace(rune(src[valStart])) {
			valStart++
		}
		stmts = append(stmts, statement{key: key, line: lineOf(start)})
		// extractVarValue.
		rest := src[valStart:]
		if len(rest) > 0 && (rest[0] == '"' || rest[0] == '\'') {
			q, end := rest[0], -1
			for i := 1; i < len(rest); i++ {
				if rest[i] == q && rest[i-1] != '\\' {
					end = i
					break
				}
			}
			if end == -1 {
				return stmts, lineOf(start), "unterminated quoted value"
			}
			pos = valStart + end + 1
			continue
		}
		eol := bytes.IndexFunc(rest, func(r rune) bool { return r == '\n' || r == '\r' })
		if eol == -1 {
			return stmts, 0, ""
		}
		pos = valStart + eol
	}
}

func isSpace(r rune) bool {
	switch r {
	case '\t', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}

// valueHash is the first 16 hex digits of SHA-256("KEY=value").
func valueHash(key, value string) string {
	sum := sha256.Sum256([]byte(key + "=" + value))
	return hex.EncodeToString(sum[:])[:16]
}

// render is the env as a .env file: sorted keys, each value single-quoted
// (literal: no escapes, no $ expansion) or, when it holds a single quote or
// ends in a backslash, double-quoted with escapes, so godotenv reads every
// value back unchanged. A value that neither form can carry (one that holds a
// single quote and starts or ends with a double quote or ends with a
// backslash, and cannot go unquoted either) is an error naming
// the key.
func render(env map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		v := env[k]
		switch {
		case !strings.ContainsAny(v, "'\r") && !strings.HasSuffix(v, `\`) && !strings.HasPrefix(v, "'"):
			b.WriteString(k + "='" + v + "'\n")
		case !strings.HasPrefix(v, `"`) && !strings.HasSuffix(v, `"`) && !strings.HasSuffix(v, `\`):
			b.WriteString(k + `="` + escapeDouble(v) + "\"\n")
		case bareOK(v):
			b.WriteString(k + "=" + v + "\n")
		default:
			return nil, fmt.Errorf("%w: the value of %s cannot be written to a .env file", ErrBadKey, k)
		}
	}
	return b.Bytes(), nil
}

// bareOK reports whether v reads back unchanged unquoted: godotenv keeps an
// unquoted value literally up to the line end, trimmed, minus a " #" comment
// and with $ expanded.
func bareOK(v string) bool {
	if v == "" || !utf8.ValidString(v) || strings.ContainsAny(v, "\n\r$") || v[0] == '"' || v[0] == '\'' ||
		strings.TrimFunc(v, isSpace) != v || strings.Contains(v, "#") {
		return false
	}
	return true
}

func escapeDouble(v string) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, `"`, `\"`, `$`, `\$`)
	return r.Replace(v)
}

// envHash is the first 16 hex digits of the SHA-256 over the sorted,
// length-prefixed KEY=value pairs.
func envHash(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(k), k, len(env[k]), env[k])
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:])[:16]
}
