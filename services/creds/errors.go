package creds

import "errors"

var (
	// ErrInvalid is returned for a role, name or subject that cannot be issued.
	ErrInvalid = errors.New("invalid credentials request")
	// ErrNotFound is returned when no issued user has the name.
	ErrNotFound = errors.New("no such user")
	// ErrExists is returned when a user with the name is already issued.
	ErrExists = errors.New("user already exists")
)
