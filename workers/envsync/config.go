package envsync

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/runtime"
	"github.com/forgebus/forgebus/workers/skiplog"
)

// DefaultBucket is the KV bucket of a rule that names none.
const DefaultBucket = "forgebus_env"

// DefaultHistory is how many values per key a bucket created by envsync keeps.
const DefaultHistory = 10

// DefaultClaimTTL is how long a claim on a target blocks other replicas
// before it counts as abandoned.
const DefaultClaimTTL = 30 * time.Second

// Config is the envsync worker's configuration: the "rules:" key of its YAML
// document.
type Config struct {
	Rules []Rule `yaml:"rules"`
	// ClaimTTL: see [DefaultClaimTTL]. Zero means the default.
	ClaimTTL time.Duration `yaml:"claim_ttl"`
}

// Rule maps one env file in matching repositories to one target.
type Rule struct {
	// Name identifies the rule in results and logs; default "<repo>:<file>".
	Name string `yaml:"name"`
	// Repo is a doublestar glob over "owner/name" ("acme/*").
	Repo string `yaml:"repo"`
	// Branch is a glob over the short branch name; empty means the
	// repository's default branch.
	Branch string `yaml:"branch"`
	// File is the env file's path in the repository ("deploy/production.env").
	File string `yaml:"file"`
	// Bucket is the KV bucket; default [DefaultBucket].
	Bucket string `yaml:"bucket"`
	// Prefix is the KV key prefix; default "<owner>.<repo>.<file-stem>",
	// escaped (see the package doc).
	Prefix string `yaml:"prefix"`
	// EnvFile, when set, is an absolute path where the env is also rendered
	// (mode 0600, written atomically).
	EnvFile string `yaml:"env_file"`
}

// Globs is what decides whether r applies, for the skip log.
func (r Rule) Globs() skiplog.Rule { return skiplog.Rule{Repo: r.Repo, Branch: r.Branch} }

var (
	bucketRe = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	prefixRe = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)
)

// DecodeConfig decodes the worker's YAML document. Only "rules:" and
// "claim_ttl:" are read; "runtime:", "policy:" and any other top-level key
// are left to others. An unknown field inside a rule is an error (a typo
// would otherwise silently sync nothing).
func DecodeConfig(node *yaml.Node) (Config, error) {
	var cfg Config
	if node == nil {
		return cfg, fmt.Errorf("%w: empty document", ErrConfig)
	}
	if err := runtime.DecodeSectionKey(node, "rules", &cfg.Rules); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := runtime.DecodeSectionKey(node, "claim_ttl", &cfg.ClaimTTL); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return cfg, cfg.Validate()
}

// Validate checks every rule.
func (c Config) Validate() error {
	if len(c.Rules) == 0 {
		return fmt.Errorf("%w: no rules", ErrConfig)
	}
	if c.ClaimTTL < 0 {
		return fmt.Errorf("%w: claim_ttl is negative", ErrConfig)
	}
	for i, r := range c.Rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("%w: rule %d (%s): %v", ErrConfig, i, r.name(), err)
		}
	}
	return nil
}

func (r Rule) validate() error {
	if r.Repo == "" || !doublestar.ValidatePattern(r.Repo) {
		return fmt.Errorf("repo %q is not a valid glob", r.Repo)
	}
	if r.Branch != "" && !doublestar.ValidatePattern(r.Branch) {
		return fmt.Errorf("branch %q is not a valid glob", r.Branch)
	}
	if r.File == "" || strings.HasPrefix(r.File, "/") || path.Clean(r.File) != r.File ||
		r.File == "." || strings.HasPrefix(r.File, "../") || r.File == ".." || strings.ContainsRune(r.File, 0) {
		return fmt.Errorf("file %q must be a clean relative path inside the repository", r.File)
	}
	if r.Bucket != "" && !bucketRe.MatchString(r.Bucket) {
		return fmt.Errorf("bucket %q: only [a-zA-Z0-9_-]", r.Bucket)
	}
	if r.Prefix != "" && !prefixRe.MatchString(r.Prefix) {
		return fmt.Errorf("prefix %q: dot-separated tokens of [-/_=a-zA-Z0-9]", r.Prefix)
	}
	if strings.HasPrefix(r.Prefix, metaRoot) {
		return fmt.Errorf("prefix %q: %q is reserved", r.Prefix, metaRoot)
	}
	if r.EnvFile != "" && (!filepath.IsAbs(r.EnvFile) || filepath.Clean(r.EnvFile) != r.EnvFile) {
		return fmt.Errorf("env_file %q must be a clean absolute path", r.EnvFile)
	}
	return nil
}

func (r Rule) name() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Repo + ":" + r.File
}

func (r Rule) bucket() string {
	if r.Bucket != "" {
		return r.Bucket
	}
	return DefaultBucket
}

// prefix is the rule's key prefix for owner/repo.
func (r Rule) prefix(owner, repo string) string {
	if r.Prefix != "" {
		return r.Prefix
	}
	return escapeKV(owner) + "." + escapeKV(repo) + "." + escapeKV(fileStem(r.File))
}

// fileStem is the file's base name without its extension: "production" for
// "deploy/production.env", "env" for ".env".
func fileStem(p string) string {
	base := path.Base(p)
	stem := strings.TrimSuffix(base, path.Ext(base))
	if stem == "" {
		stem = strings.TrimPrefix(base, ".")
	}
	return stem
}

const upperHex = "0123456789ABCDEF"

// escapeKV makes s one KV key token: bytes outside [-_a-zA-Z0-9] become
// "=XX" (upper-case hex). The empty string becomes "=".
func escapeKV(s string) string {
	if s == "" {
		return "="
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0x0f])
		}
	}
	return b.String()
}
