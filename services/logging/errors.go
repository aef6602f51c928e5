package logging

import "errors"

var (
	// ErrLevel is returned for an unknown level name.
	ErrLevel = errors.New("unknown log level")
	// ErrFormat is returned for a format other than json, console or auto.
	ErrFormat = errors.New("unknown log format")
)
