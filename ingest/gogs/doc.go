// Package gogs checks, decodes and normalizes Gogs webhook deliveries. It
// does no I/O: the HTTP handler reads the request, then calls [ExtractPayload]
// to find the signed JSON, [Verify] to check X-Gogs-Signature against every
// configured secret, and [Normalize] to build the CloudEvents envelope and
// the NATS subject it is published on.
//
// Everything here treats its input as hostile: the signature is checked on
// the exact bytes Gogs signed, before any field is trusted, and errors never
// carry a secret, a MAC or payload text.
package gogs
