// Package config is the one configuration of the forgebus program: built-in
// defaults, then an optional YAML file (FORGEBUS_CONFIG, non-secret settings
// only), then the environment, which wins. Secrets come only from the
// environment or from files named by *_FILE variables, and are held as
// [Secret] values that never print.
//
// Nothing else in the repository reads the environment: the command passes
// os.Getenv to [Load].
package config
