// Package platform is what every forgebus service starts with: the broker
// (embedded or external NATS), the provisioned streams, a metrics registry
// and health probes, and a graceful HTTP server. A service that must start
// while NATS is down (ingest, which spools) passes [AllowNATSDown]: its
// streams are then provisioned in the background once NATS is reachable.
package platform
