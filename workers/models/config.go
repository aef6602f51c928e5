package models

import (
	"fmt"
	"net/url"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/runtime"
	"github.com/forgebus/forgebus/workers/skiplog"
)

// DefaultPostTimeout is a POST's timeout when the rule names none.
const DefaultPostTimeout = 30 * time.Second

// DefaultCommandTimeout is a command's timeout when the rule names none.
const DefaultCommandTimeout = 10 * time.Minute

// Config is the models worker's configuration: the "rules:" key of its
// YAML document.
type Config struct {
	Rules []Rule `yaml:"rules"`
}

// Rule runs one action when a push to a matching repository and branch
// touches a matching path. Every matching rule runs, in order.
type Rule struct {
	// Name identifies the rule in results and logs; default the Repo glob.
	Name string `yaml:"name"`
	// Repo is a doublestar glob over "owner/name".
	Repo string `yaml:"repo"`
	// Branch is a glob over the short branch name; empty means the
	// repository's default branch.
	Branch string `yaml:"branch"`
	// Paths are doublestar globs over repository paths ("models/**").
	Paths []string `yaml:"paths"`
	// Post and Command are the action; exactly one is set.
	Post    *Post    `yaml:"post"`
	Command *Command `yaml:"command"`
}

// Globs is what decides whether r applies, for the skip log.
func (r Rule) Globs() skiplog.Rule { return skiplog.Rule{Repo: r.Repo, Branch: r.Branch} }

// Post is an HTTP POST action.
type Post struct {
	// URL is the http(s) endpoint.
	URL string `yaml:"url"`
	// Timeout bounds the whole request; default [DefaultPostTimeout].
	Timeout time.Duration `yaml:"timeout"`
}

// Command is an argv action, run in a clean checkout of the pushed commit
// with only PATH, HOME, FORGEBUS_REPO, FORGEBUS_COMMIT, FORGEBUS_BRANCH and
// FORGEBUS_EVENT_ID in its environment.
type Command struct {
	Argv []string `yaml:"argv"`
	// Timeout kills the command's process group; default
	// [DefaultCommandTimeout].
	Timeout time.Duration `yaml:"timeout"`
	// Isolation is the command's user and sandbox (run_as, sandbox,
	// network).
	command.Isolation `yaml:",inline"`
}

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
		if r.Repo == "" || !doublestar.ValidatePattern(r.Repo) {
			return fmt.Errorf("%w: rule %d: repo must be a glob over owner/name", ErrConfig, i)
		}
		if r.Branch != "" && !doublestar.ValidatePattern(r.Branch) {
			return fmt.Errorf("%w: rule %d: bad branch glob", ErrConfig, i)
		}
		if len(r.Paths) == 0 {
			return fmt.Errorf("%w: rule %d: no paths", ErrConfig, i)
		}
		for _, p := range r.Paths {
			if p == "" || !doublestar.ValidatePattern(p) {
				return fmt.Errorf("%w: rule %d: bad path glob %q", ErrConfig, i, p)
			}
		}
		if (r.Post == nil) == (r.Command == nil) {
			return fmt.Errorf("%w: rule %d: set exactly one of post and command", ErrConfig, i)
		}
		if r.Post != nil {
			u, err := url.Parse(r.Post.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				return fmt.Errorf("%w: rule %d: post url must be http(s) without credentials", ErrConfig, i)
			}
			if r.Post.Timeout < 0 {
				return fmt.Errorf("%w: rule %d: negative timeout", ErrConfig, i)
			}
			if r.Post.Timeout == 0 {
				r.Post.Timeout = DefaultPostTimeout
			}
		}
		if r.Command != nil {
			if len(r.Command.Argv) == 0 || r.Command.Argv[0] == "" {
				return fmt.Errorf("%w: rule %d: command argv must not be empty", ErrConfig, i)
			}
			if r.Command.Timeout < 0 {
				return fmt.Errorf("%w: rule %d: negative timeout", ErrConfig, i)
			}
			if r.Command.Timeout == 0 {
				r.Command.Timeout = DefaultCommandTimeout
			}
			if err := r.Command.Isolation.Validate(); err != nil {
				return fmt.Errorf("%w: rule %d: %w", ErrConfig, i, err)
			}
		}
	}
	return nil
}

func (r *Rule) matches(repo, branch, defaultBranch string) bool {
	return runtime.MatchRule(r.Repo, r.Branch, repo, branch, defaultBranch)
}

// matchPaths returns the paths any of the rule's globs match.
func (r *Rule) matchPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		for _, g := range r.Paths {
			if ok, _ := doublestar.Match(g, p); ok {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
