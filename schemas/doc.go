// Package schemas is forgebus's public contract: the CloudEvents envelope
// published for every accepted Gogs webhook, the normalized payload types of
// each event, the results and dead letters the workers publish, the stream and
// subject names, and the embedded JSON Schema files that describe them.
//
// Everything that crosses the broker is defined here and nowhere else. A change
// that breaks a consumer of v1 is a new version, never an edit.
package schemas
