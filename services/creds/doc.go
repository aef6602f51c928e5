// Package creds keeps forgebus's NATS identities: an operator, the FORGE
// account that holds the streams, a system account, and one user per role
// with the least permissions its job needs. It writes standard NATS
// credentials files, keeps a list of issued users, and revokes them by
// re-signing the account JWT, which a running server takes without restart.
package creds
