// Package models is the models worker: when a push touches a path that a
// rule watches (doublestar globs such as "models/**"), it runs the rule's
// action, either a signed HTTP POST to a refresh endpoint or an argv
// command in a clean checkout of the pushed commit.
//
// The changed paths come from git, between the push's before and after
// commits (a new branch: from its merge-base with the default branch),
// never from the payload's commit lists, which Gogs caps at five commits,
// strips of renames and cuts at the first space.
//
// The POST body is JSON {repo, branch, commit, paths, event_id}; the header
// X-Forgebus-Signature carries the lower-case hex HMAC-SHA256 of the body
// with the secret given to [New]. A 5xx, 408 or 429 answer, a timeout or a
// connection error is transient; any other non-2xx answer is permanent.
package models
