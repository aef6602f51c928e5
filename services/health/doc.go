// Package health serves the probes and metrics of a forgebus service:
// /healthz (the process is alive), /readyz (NATS is connected and
// FORGE_EVENTS answers, plus any added [Check]; a check added with
// [Health.AddAdvisory] shows but does not fail readiness) and /metrics
// (Prometheus).
package health
