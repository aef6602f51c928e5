// Package history reads what happened to deliveries from the bus: the
// accepted event in FORGE_EVENTS, every worker's results in FORGE_RESULTS,
// the dead letters in FORGE_DLQ, the replays sent back to FORGE_EVENTS and
// the audit records of FORGE_AUDIT. It only reads; the console and the
// "forgebus events show" command are built on it.
package history
