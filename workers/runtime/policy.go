package runtime

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/forgebus/forgebus/schemas"
)

// Policy says which events a worker handles: the `policy:` key of its
// section in the config file. Empty lists allow everything. Patterns are
// doublestar globs ("acme/*", "docs-**", "release/**"); repositories and
// senders are matched without regard to case, as Gogs treats them.
//
// The checks run in this order and the first that refuses names the rule:
// events, repos, refs, senders, deny_senders.
type Policy struct {
	// Repos are globs on "owner/name".
	Repos []string `yaml:"repos"`
	// Refs are globs on the ref of push, create, delete and release events,
	// matched against the full ref ("refs/heads/main") and its short form
	// ("main"). Events without a ref (issues, pull requests, forks) are not
	// subject to this rule.
	Refs []string `yaml:"refs"`
	// Events are the event names handled ("push", "delete"; a "forge."
	// prefix is accepted), globs allowed.
	Events []string `yaml:"events"`
	// Senders are globs on the sender's login; when set, only they are
	// handled.
	Senders []string `yaml:"senders"`
	// DenySenders are globs on logins that are never handled, whatever
	// Senders says.
	DenySenders []string `yaml:"deny_senders"`
}

// Validate reports the first pattern that is not a valid glob, wrapping
// [ErrInvalidSettings].
func (p Policy) Validate() error {
	for _, l := range []struct {
		name string
		pats []string
	}{{"repos", p.Repos}, {"refs", p.Refs}, {"events", p.Events}, {"senders", p.Senders}, {"deny_senders", p.DenySenders}} {
		for i, pat := range l.pats {
			if pat == "" || !doublestar.ValidatePattern(pat) {
				return fmt.Errorf("%w: policy.%s[%d] %q is not a valid glob", ErrInvalidSettings, l.name, i, pat)
			}
		}
	}
	return nil
}

// Check reports whether the policy allows ev; when it does not, rule names
// the rule that refused it: "events", "repos", "refs", "senders" (not in an
// allow list) or "deny_senders: <pattern>".
func (p Policy) Check(ev *schemas.Envelope) (ok bool, rule string) {
	if len(p.Events) > 0 {
		name := ev.Event()
		if !anyMatch(p.Events, func(pat string) bool {
			return match(strings.TrimPrefix(pat, schemas.TypePrefix), name)
		}) {
			return false, "events"
		}
	}
	if len(p.Repos) > 0 {
		repo := strings.ToLower(ev.Repo)
		if !anyMatch(p.Repos, func(pat string) bool { return match(strings.ToLower(pat), repo) }) {
			return false, "repos"
		}
	}
	if len(p.Refs) > 0 && hasRef(ev) {
		full := ev.Subject
		short := strings.TrimPrefix(strings.TrimPrefix(full, "refs/heads/"), "refs/tags/")
		if !anyMatch(p.Refs, func(pat string) bool { return match(pat, full) || match(pat, short) }) {
			return false, "refs"
		}
	}
	sender := strings.ToLower(ev.Sender)
	if len(p.Senders) > 0 {
		if !anyMatch(p.Senders, func(pat string) bool { return match(strings.ToLower(pat), sender) }) {
			return false, "senders"
		}
	}
	for _, pat := range p.DenySenders {
		if match(strings.ToLower(pat), sender) {
			return false, "deny_senders: " + pat
		}
	}
	return true, ""
}

// hasRef reports whether ev's subject is a ref or tag.
func hasRef(ev *schemas.Envelope) bool {
	switch ev.Event() {
	case schemas.EventPush, schemas.EventCreate, schemas.EventDelete, schemas.EventRelease:
		return ev.Subject != ""
	}
	return false
}

func anyMatch(pats []string, f func(string) bool) bool {
	for _, p := range pats {
		if f(p) {
			return true
		}
	}
	return false
}

func match(pat, s string) bool {
	ok, err := doublestar.Match(pat, s)
	return err == nil && ok
}

// MatchRule reports whether a worker's rule, with repoGlob over
// "owner/name" and branchGlob over the short branch name, applies to a push
// of branch to repo. An empty branchGlob means the repository's default
// branch. The globs are doublestar's and validated when the rule is loaded.
func MatchRule(repoGlob, branchGlob, repo, branch, defaultBranch string) bool {
	if !doublestar.MatchUnvalidated(repoGlob, repo) {
		return false
	}
	if branchGlob == "" {
		return branch != "" && branch == defaultBranch
	}
	return doublestar.MatchUnvalidated(branchGlob, branch)
}
