// Package provision creates or updates the JetStream resources forgebus
// uses, idempotently, from plain jetstream configuration values kept in one
// place: the streams (stream.go) and the worker consumers.
package provision
