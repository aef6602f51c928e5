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

// AuthHint says which setting to fix when err is an [ErrUnauthorized] or
// [ErrForbidden] refusal, or "" for any other error. tokenSet is whether a
// token was configured.
func AuthHint(err error, tokenSet bool) string {
	switch {
	case errors.Is(err, ErrForbidden):
		return "the Gogs token's user lacks read access to the repository: add that user as a collaborator or to a team that can read it"
	case errors.Is(err, ErrUnauthorized) && !tokenSet:
		return "the repository is private and no Gogs token is set: set FORGEBUS_GOGS_TOKEN (or FORGEBUS_GOGS_TOKEN_FILE) to an access token of a user who can read it"
	case errors.Is(err, ErrUnauthorized):
		return "Gogs refused the token: set FORGEBUS_GOGS_TOKEN (or FORGEBUS_GOGS_TOKEN_FILE) to a valid, unrevoked access token"
	}
	return ""
}
