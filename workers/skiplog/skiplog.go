// Package skiplog logs why a worker skipped an event for want of a rule,
// in one wording for docs, models and envsync.
package skiplog

import (
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/rs/zerolog"
)

// NoRuleMatches is the skip reason when no rule applies to an event.
const NoRuleMatches = "no rule matches"

// Rule is the part of a worker's rule that decides whether it applies: a
// doublestar glob over "owner/name" and one over the branch ("" for the
// default branch).
type Rule struct{ Repo, Branch string }

// NoRule logs a skip for want of a rule at info, with the branch and every
// rule's globs, so that a "*" written for "**" is seen: "*" does not match
// "/" in a branch like "feature/x".
func NoRule(log zerolog.Logger, rules []Rule, eventID, repo, branch string) {
	globs := make([]string, 0, len(rules))
	hint := false
	for _, r := range rules {
		b := r.Branch
		if b == "" {
			b = "(default branch)"
		} else if strings.Contains(branch, "/") && doublestar.MatchUnvalidated(r.Repo, repo) {
			wide := strings.ReplaceAll(strings.ReplaceAll(r.Branch, "**", "*"), "*", "**")
			hint = hint || doublestar.MatchUnvalidated(wide, branch)
		}
		globs = append(globs, "repo="+r.Repo+" branch="+b)
	}
	e := log.Info().Str("event_id", eventID).Str("repo", repo).Str("branch", branch).Strs("rule_globs", globs)
	if hint {
		e = e.Str("hint", `"*" does not match "/" in a branch name; write "**" to match `+branch)
	}
	e.Msg("skipped: " + NoRuleMatches)
}

// Globbed is a worker's own rule type, seen as the globs that decide
// whether it applies.
type Globbed interface{ Globs() Rule }

// NoRuleFor is [NoRule] over a worker's own rules.
func NoRuleFor[R Globbed](log zerolog.Logger, rules []R, eventID, repo, branch string) {
	globs := make([]Rule, len(rules))
	for i, r := range rules {
		globs[i] = r.Globs()
	}
	NoRule(log, globs, eventID, repo, branch)
}
