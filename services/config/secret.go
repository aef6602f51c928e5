package config

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// Redacted is how a [Secret] renders everywhere.
const Redacted = "[redacted]"

// Secret is a value that must never be printed or logged. Its String,
// GoString, MarshalJSON, MarshalText and MarshalYAML all give [Redacted]
// (an empty Secret renders as ""), so a secret that slips into a log line,
// a %v or a JSON document shows nothing. Use [Secret.Reveal] where the value
// is really needed.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.v }

// Bytes returns the secret value as a new byte slice.
func (s Secret) Bytes() []byte { return []byte(s.v) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) render() string {
	if s.v == "" {
		return ""
	}
	return Redacted
}

// String returns [Redacted].
func (s Secret) String() string { return s.render() }

// GoString returns [Redacted], for %#v.
func (s Secret) GoString() string { return s.render() }

// MarshalText returns [Redacted].
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.render()), nil }

// MarshalJSON returns [Redacted] as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.render()) }

// MarshalYAML returns [Redacted].
func (s Secret) MarshalYAML() (any, error) { return s.render(), nil }

// splitSecrets splits a comma- or newline-separated list, trimming spaces and
// dropping empty items.
func splitSecrets(s string, sep func(rune) bool) []Secret {
	var out []Secret
	for _, f := range strings.FieldsFunc(s, sep) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, NewSecret(f))
		}
	}
	return out
}

// readSecretFile reads a *_FILE secret file (named by variable), refusing one
// its group or others can read: such a file leaks the secret to every local
// user, and to builds run as another user.
func readSecretFile(variable, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, variable, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: stat %s: %w", ErrInvalid, variable, path, err)
	}
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		return nil, fmt.Errorf("%w: %w: %s: %s has mode %04o; make it readable by its owner only (chmod 600)", ErrInvalid, ErrSecretFileMode, variable, path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: read %s: %w", ErrInvalid, variable, path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%w: %s: %s is larger than %d bytes", ErrInvalid, variable, path, maxFileBytes)
	}
	return data, nil
}

// SecretVariables are the environment variables that hold secret values;
// a program drops them from its environment once the configuration is
// loaded.
var SecretVariables = []string{"FORGEBUS_GOGS_SECRETS", "FORGEBUS_GOGS_TOKEN", "FORGEBUS_MODELS_SECRET", "FORGEBUS_NATS_PASSWORD"}

// SecretValues are every secret value of c: the webhook secrets, the Gogs
// token, the models secret and the NATS password.
func (c Config) SecretValues() []string {
	var out []string
	for _, s := range append(append([]Secret{}, c.Gogs.Secrets...), c.Gogs.Token, c.ModelsSecret, c.NATS.Password) {
		if !s.IsZero() {
			out = append(out, s.Reveal())
		}
	}
	return out
}
