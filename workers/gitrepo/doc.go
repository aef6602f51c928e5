// Package gitrepo keeps a bare cache of one Gogs repository and answers the
// questions the docs and models workers ask of it: bring it up to date, is
// this commit there, is one commit an ancestor of another, which paths
// changed between two commits, and write a clean tree of a commit into a
// directory.
//
// Every name that comes from a payload is checked before it reaches git or
// the file system ([CheckName], [CheckBranch], [CheckCommit]); git always
// runs with an explicit argv (refs after "--" where git allows it), a
// minimal environment, no system or global config, no terminal prompt, only
// the protocol of the configured base URL, and the Gogs token sent with
// HTTP Basic auth (the only scheme Gogs' git handler takes) by a credential
// helper that reads it from a pipe, so that it is never in an argv, a URL,
// an environment, a file or a log line.
package gitrepo
