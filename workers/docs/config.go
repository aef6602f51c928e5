package docs

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/runtime"
	"github.com/forgebus/forgebus/workers/skiplog"
)

// DefaultKeep is how many releases per branch a rule keeps by default.
const DefaultKeep = 5

// DefaultTimeout is a build's timeout when the rule names none.
const DefaultTimeout = 10 * time.Minute

// Config is the docs worker's configuration: the "rules:" key of its YAML
// document.
type Config struct {
	Rules []Rule `yaml:"rules"`
}

// Rule says how to build and where to publish the docs of matching
// repositories. The first rule that matches an event's repository and
// branch is used.
type Rule struct {
	// Name identifies the rule in results and logs; default the Repo glob.
	Name string `yaml:"name"`
	// Repo is a doublestar glob over "owner/name" ("acme/*").
	Repo string `yaml:"repo"`
	// Branch is a glob over the short branch name; empty means the
	// repository's default branch.
	Branch string `yaml:"branch"`
	// Command is the build's argv, run in a clean checkout of the commit.
	// It is never given to a shell (unless the operator names one).
	Command []string `yaml:"command"`
	// Output is the folder in the checkout that holds the built site
	// (relative, inside the checkout).
	Output string `yaml:"output"`
	// Root is the absolute publish root.
	Root string `yaml:"root"`
	// Timeout kills the build and its process group; default
	// [DefaultTimeout].
	Timeout time.Duration `yaml:"timeout"`
	// Keep is how many releases per branch stay on disk; default
	// [DefaultKeep].
	Keep int `yaml:"keep"`
	// Isolation is the build's user and sandbox (run_as, sandbox, network).
	command.Isolation `yaml:",inline"`
}

// Globs is what decides whether r applies, for the skip log.
func (r Rule) Globs() skiplog.Rule { return skiplog.Rule{Repo: r.Repo, Branch: r.Branch} }

// DecodeConfig decodes the worker's YAML document. Only "rules:" is read;
// "runtime:", "policy:" and any other top-level key are left to others. An
// unknown field inside a rule is an error. The result is validated and has
// its defaults filled in.
func DecodeConfig(node *yaml.Node) (Config, error) {
	var cfg Config
	if err := runtime.DecodeSectionKey(node, "rules", &cfg.Rules); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Validate checks every rule and fills in defaults.
func (c *Config) Validate() error {
	if len(c.Rules) == 0 {
		return fmt.Errorf("%w: no rules", ErrConfig)
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if r.Name == "" {
			r.Name = r.Repo
		}
		switch {
		case r.Repo == "" || !doublestar.ValidatePattern(r.Repo):
			return fmt.Errorf("%w: rule %d: repo must be a glob over owner/name", ErrConfig, i)
		case r.Branch != "" && !doublestar.ValidatePattern(r.Branch):
			return fmt.Errorf("%w: rule %d: bad branch glob", ErrConfig, i)
		case len(r.Command) == 0 || r.Command[0] == "":
			return fmt.Errorf("%w: rule %d: command must be a non-empty argv list", ErrConfig, i)
		case r.Output == "" || !filepath.IsLocal(r.Output):
			return fmt.Errorf("%w: rule %d: output must be a relative path inside the checkout", ErrConfig, i)
		case !filepath.IsAbs(r.Root):
			return fmt.Errorf("%w: rule %d: root must be an absolute path", ErrConfig, i)
		case r.Timeout < 0 || r.Keep < 0:
			return fmt.Errorf("%w: rule %d: timeout and keep must not be negative", ErrConfig, i)
		}
		if err := r.Isolation.Validate(); err != nil {
			return fmt.Errorf("%w: rule %d: %w", ErrConfig, i, err)
		}
		r.Root = filepath.Clean(r.Root)
		r.Output = filepath.Clean(r.Output)
		if r.Timeout == 0 {
			r.Timeout = DefaultTimeout
		}
		if r.Keep == 0 {
			r.Keep = DefaultKeep
		}
	}
	return nil
}
