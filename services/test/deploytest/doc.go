// Package deploytest holds the tests of forgebus's deployment files, which
// live outside every Go module: the root docker-compose.yml (loaded with
// compose-go, as docker compose loads it), the NATS cluster configuration
// under deploy/nats, deploy/forgebus.yaml, scripts/cluster.sh (run for
// real: a three-node JetStream cluster on 127.0.0.1) and .gitlab-ci.yml
// (against .ci/run and the Makefile). It has no API: tests only.
package deploytest
