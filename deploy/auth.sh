#!/usr/bin/env bash
# Makes the compose stack's NATS auth and audit key, once: the operator and
# account keys with every role's credentials (deploy/auth/creds, kept),
# the nats-server block that trusts them (deploy/nats/auth.conf, included
# by every node's configuration), a copy of each role's credentials for the
# containers (deploy/creds/<role>.creds) and the audit signing key
# (deploy/creds/audit.key). A later run reuses the keys and rewrites only
# auth.conf and the copies (after "forgebus creds revoke", run it again so
# that a restarted node keeps the revocation).
#
#   deploy/auth.sh [path/to/forgebus]        (default: bin/forgebus)
#
# The containers run as uid 65532: when run as root, the copies are made
# theirs (0600); otherwise they are left 0644 for a single-user host.
set -euo pipefail
cd "$(dirname "$0")/.."
fb=${1:-bin/forgebus}
[ -x "$fb" ] || { echo "auth.sh: $fb not found: make build first" >&2; exit 2; }

keys=deploy/auth # the operator's and account's keys: back this folder up
mkdir -p "$keys" deploy/creds
chmod 0700 "$keys"
FORGEBUS_DATA_DIR="$keys" "$fb" creds server-config >deploy/nats/auth.conf.tmp
mv deploy/nats/auth.conf.tmp deploy/nats/auth.conf
chmod 0644 deploy/nats/auth.conf

for role in operator ingest worker-docs worker-models worker-envsync worker-audit; do
	install -m 0600 "$keys/creds/$role.creds" "deploy/creds/$role.creds"
done
[ -f deploy/creds/audit.key ] || "$fb" audit keygen deploy/creds/audit.key >/dev/null

if [ "$(id -u)" = 0 ]; then
	chown 65532:65532 deploy/creds/*.creds deploy/creds/audit.key
	chmod 0600 deploy/creds/*.creds deploy/creds/audit.key
else
	chmod 0644 deploy/creds/*.creds deploy/creds/audit.key
fi
echo "deploy/nats/auth.conf and deploy/creds/ written (keys in $keys/)"
