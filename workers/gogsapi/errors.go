package gogsapi

import "errors"

// Sentinel errors returned by [Client.RawFile]; compare with [errors.Is].
var (
	// ErrNoToken: the client has no API token, so it does not call Gogs.
	ErrNoToken = errors.New("gogs api token is not set")
	// ErrUnauthorized: Gogs answered 401; the token is missing, wrong or revoked.
	ErrUnauthorized = errors.New("gogs api: unauthorized (401)")
	// ErrForbidden: Gogs answered 403; the token's user lacks the right.
	ErrForbidden = errors.New("gogs api: forbidden (403)")
	// ErrNotFound: Gogs answered 404: no such file at that ref, no such ref or
	// commit, or a repository the token cannot see.
	ErrNotFound = errors.New("gogs api: not found (404)")
	// ErrTooLarge: the file is larger than the client's size limit.
	ErrTooLarge = errors.New("gogs api: file too large")
	// ErrServer: Gogs answered 5xx or 429; trying again later may help.
	ErrServer = errors.New("gogs api: server error")
	// ErrUnexpected: any other answer (a redirect, another 4xx).
	ErrUnexpected = errors.New("gogs api: unexpected response")
	// ErrBadArgument: an owner, repository, ref or path that cannot be put in
	// a URL safely (empty, "..", a NUL byte, a leading "/").
	ErrBadArgument = errors.New("gogs api: bad argument")
)

// Transient reports whether err is worth retrying: a 5xx, a 429, a timeout
// or a network error. Authentication, missing files and bad arguments are not.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	for _, perm := range []error{ErrNoToken, ErrUnauthorized, ErrForbidden, ErrNotFound, ErrTooLarge, ErrUnexpected, ErrBadArgument} {
		if errors.Is(err, perm) {
			return false
		}
	}
	return true
}
