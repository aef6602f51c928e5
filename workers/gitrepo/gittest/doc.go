// Package gittest builds real git repositories for tests and serves them
// over smart HTTP (git http-backend behind net/http/cgi on 127.0.0.1),
// optionally requiring a Gogs-style "Authorization: token …" header.
package gittest
