package gitrepo

import "errors"

// Sentinel errors; compare with [errors.Is].
var (
	// ErrBadName is returned for an owner, repository, branch or commit name
	// that is not safe to use. Retrying cannot help.
	ErrBadName = errors.New("unsafe name")
	// ErrNoCommit is returned when a commit is not in the repository even
	// after a fetch (force-pushed away, or never there).
	ErrNoCommit = errors.New("commit not found")
	// ErrGit is returned (wrapped) when a git command fails: network, auth,
	// a broken cache. Usually transient.
	ErrGit = errors.New("git failed")
	// ErrTooLarge is returned when git output or a checked-out tree passes
	// its size bound.
	ErrTooLarge = errors.New("too large")
)
