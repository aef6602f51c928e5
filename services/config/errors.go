package config

import "errors"

var (
	// ErrInvalid wraps every error of [Config.Validate] and of parsing a value.
	ErrInvalid = errors.New("invalid configuration")
	// ErrSecretInFile is returned when the YAML file holds a secret key.
	ErrSecretInFile = errors.New("secrets come from the environment, not the config file")
	// ErrConflict is returned when a value and its *_FILE twin are both set.
	ErrConflict = errors.New("conflicting settings")
	// ErrSecretFileMode is returned when a *_FILE secret file can be read
	// by its group or by others.
	ErrSecretFileMode = errors.New("secret file readable by group or others")
	// ErrNoSecret is returned by [Config.Validate] when no Gogs secret is set
	// and unsigned deliveries are not allowed.
	ErrNoSecret = errors.New("no Gogs webhook secret: set FORGEBUS_GOGS_SECRETS or FORGEBUS_GOGS_SECRETS_FILE (or FORGEBUS_ALLOW_UNSIGNED=true to accept unsigned deliveries)")
)
