// Package gittest builds real git repositories for tests and serves them
// over smart HTTP (git http-backend behind net/http/cgi on 127.0.0.1),
// authenticating the way Gogs' git HTTP handler does: HTTP Basic only,
// tried as a login and password, then the username as an access token, then
// the password as an access token.
package gittest
