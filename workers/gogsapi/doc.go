// Package gogsapi is a tiny client for the one Gogs REST call forgebus needs:
// the raw content of a file at a ref.
//
// The route, read in the Gogs sources (internal/route/api/v1/api.go and
// internal/context/repo.go), is
//
//	GET {gogs_url}/api/v1/repos/{owner}/{repo}/raw/{ref}/{path}
//
// It sits in the group that requires token authentication: a request without
// a valid token gets 401. The token is sent as "Authorization: token <t>".
// {ref} is a branch or tag name (the longest one that exists wins, so names
// may contain "/") or a full 40-hex commit SHA. Gogs answers 404 for a
// repository the token cannot see, an unknown ref or commit, and a path that
// does not exist at that ref; it does not tell these apart.
package gogsapi
