// Package docs is the docs worker: on a push to a configured branch it
// builds the repository's documentation at exactly the pushed commit with
// the operator's argv command, and publishes the built site atomically
// under <root>/<owner>/<repo>/<branch>/releases/<commit>, with a "current"
// symlink swapped by rename and the last K releases kept. A delete event
// for the branch removes its published docs.
//
// Newest wins: each branch's publish directory holds a small state file
// (the envelope time and commit of what is live); an event older than that,
// or whose commit is an ancestor of the live one, is reported as
// superseded. Work on one branch is serialized by a mutex inside the
// process and a flock(2) lock file shared by every replica.
//
// The branch is one path segment on disk: "/" is written "%2F" and "%"
// "%25" ("feature/x" is published under "feature%2Fx"), so no branch can
// reach into another branch's directory.
package docs
