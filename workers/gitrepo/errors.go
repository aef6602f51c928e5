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
	// ErrUnauthorized is returned (wrapped, with [ErrGit]) when the git
	// server asked for credentials and had none or refused them (401): no
	// token, or a wrong or revoked one. Retrying cannot help.
	ErrUnauthorized = errors.New("git server refused the credentials (401)")
	// ErrForbidden is returned (wrapped, with [ErrGit]) when the git server
	// accepted the credentials but the user may not read the repository
	// (403). Retrying cannot help.
	ErrForbidden = errors.New("git server denied access (403)")
	// ErrTooLarge is returned when git output or a checked-out tree passes
	// its size bound.
	ErrTooLarge = errors.New("too large")
)
