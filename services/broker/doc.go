// Package broker reaches NATS JetStream the way the configuration says: an
// embedded nats-server (JetStream, file store under <data>/nats, listening on
// FORGEBUS_NATS_LISTEN so other processes and the nats CLI can connect) or
// external servers with credentials, TLS or user and password. Either way the
// client reconnects forever.
package broker
