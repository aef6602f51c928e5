// Package health serves the probes and metrics of a forgebus service:
// /healthz (the process is alive), /readyz (NATS is connected and
// FORGE_EVENTS answers, plus any added [Check]) and /metrics (Prometheus).
package health
