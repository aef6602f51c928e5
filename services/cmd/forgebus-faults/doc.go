// Command forgebus-faults is the fault test of issue 6: it starts a local
// three-node JetStream cluster (scripts/cluster.sh) with streams of three
// replicas, two ingest processes, two replicas of the models worker and two
// of the audit worker, all as separate bin/forgebus processes on 127.0.0.1,
// posts signed push webhooks while it SIGKILLs and restarts a worker
// replica, a NATS node and an ingest process, waits for every consumer to
// drain, then counts from the streams and the effect receiver and runs
// "forgebus audit verify". It prints a table and exits non-zero on any
// loss or duplicate. See scripts/faults/README.md.
package main
