package models

import (
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/workers/skiplog"
)

// noRuleMatches is the skip reason when no rule applies to an event.
const noRuleMatches = skiplog.NoRuleMatches

// logNoRule logs a skip for want of a rule, with every rule's globs.
func logNoRule(log zerolog.Logger, rules []Rule, eventID, repo, branch string) {
	globs := make([]skiplog.Rule, len(rules))
	for i, r := range rules {
		globs[i] = skiplog.Rule{Repo: r.Repo, Branch: r.Branch}
	}
	skiplog.NoRule(log, globs, eventID, repo, branch)
}
