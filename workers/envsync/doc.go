// Package envsync is the envsync worker: on every push to a configured
// branch it fetches an env file (KEY=value lines, parsed by
// github.com/joho/godotenv) from Gogs at the pushed commit and applies it as a
// diff to a NATS KV bucket, and optionally to a rendered .env file on disk.
//
// # What it does, per matching rule
//
//  1. Fetch the file at the push's "after" commit through the Gogs API (the
//     payload's file lists are unreliable, so every push to the branch is
//     fetched). A push that does not touch the file yields the same content,
//     and the diff is then empty: nothing is written.
//  2. Parse it. A file that does not parse is a permanent error naming the
//     line, never the content.
//  3. Claim the target (a meta record, see below), put the keys whose value
//     changed, delete the keys that left the file, leave the rest, render the
//     .env file if configured, and mark the claim applied.
//
// KV keys are "<prefix>.<KEY>". The prefix defaults to
// "<owner>.<repo>.<file-stem>", each part escaped so only [-_=a-zA-Z0-9]
// remain ("=" followed by two upper-case hex digits for any other byte, so
// "my.repo" becomes "my=2Erepo"). An env key must match
// [A-Za-z0-9_][A-Za-z0-9_.]* without ".." and not end in "."; any other key
// cannot be represented and makes the file a permanent error. The bucket
// keeps History (10) previous values per key for operators.
//
// # Newest wins, and replicas
//
// Each target has a meta record at "__forgebus_meta.<prefix>" in the same
// bucket (outside "<prefix>.>", so watchers of the env keys never see it):
// the applied event's time (the envelope's Time, ns precision, the ordering
// key across the system), event id, commit, state and the applied key names
// with value hashes. It is only ever changed with KV revision CAS. An event
// older than the recorded one is skipped as [schemas.OutcomeSuperseded].
// So is a replayed old push (a new event to ingest, with a new delivery id):
// a commit that is an ancestor of the recorded one, or that does not descend
// from it unless its push started from it (a force push) or created the
// branch. The history comes from a bare git cache of the repository
// ([GitHistory]), as in the docs worker; when the recorded commit is gone
// from the repository, time alone decides. An event whose apply is in
// progress elsewhere (a fresh claim) makes this one
// retry later. Every key write is CAS on the key's revision too, so even a
// stalled replica whose claim expired cannot overwrite a newer value.
//
// # A file that is missing at the pushed commit
//
// Gogs answers 404 alike for a missing file, an unknown commit and a
// repository the token cannot see. Deleting every key on a 404 would wipe a
// production environment because a token lost its access, so a 404 is a
// permanent error and the keys are left as they are. To retire a target,
// remove the rule and delete its keys with the nats CLI.
//
// # The file format, and the rendered file
//
// The file is read as godotenv reads it: "export" prefixes, # comments,
// single quotes (literal), double quotes (\n escapes, may span lines), and
// $VAR / ${VAR} expansion from keys earlier in the same file in unquoted and
// double-quoted values (never from the worker's own environment): use
// single quotes for a value holding a literal "$". The rendered env_file
// (sorted keys) reads back unchanged with godotenv; a value it cannot hold
// is a permanent error naming the key.
//
// env_file is written by whichever replica applies the event, on its own
// disk: with several replicas, point it at shared storage or run one replica
// per host that needs the file.
//
// # Secrets
//
// No value ever appears in a log line, an error, a result or the audit log:
// only key names and value hashes. A value hash is the first 16 hex digits of
// SHA-256("<KEY>=<value>"); an operator who knows a value can check it.
package envsync
