// Package platform is what every forgebus service starts with: the broker
// (embedded or external NATS), the provisioned streams, a metrics registry
// and health probes, and a graceful HTTP server.
package platform
