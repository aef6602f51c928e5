// Command forgebus-faults is the fault test of issue 6: it starts a local
// three-node JetStream cluster (scripts/cluster.sh) with streams of three
// replicas, two ingest processes and two replicas of each runtime worker
// (models, docs, envsync) and of the audit worker, all as separate
// bin/forgebus processes on 127.0.0.1, posts signed push webhooks while it
// SIGKILLs and restarts a worker replica, a NATS node and an ingest
// process, waits for every consumer to drain, then counts from the
// streams, envsync's KV bucket and the effect server, and runs "forgebus
// audit verify".
//
// Each worker's effect is real and counted: the models worker's refresh
// POST per event, each docs build (the build command is this program,
// "forgebus-faults docs-build <url>", which reports itself) per commit,
// and envsync's KV writes per key, read from the bucket's history. It
// prints a table and exits non-zero on any loss, any event without
// exactly one terminal result per worker, or any effect that ran twice.
// See scripts/faults/README.md.
package main
