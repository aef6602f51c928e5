#!/usr/bin/env bash
# Runs every docker compose command of deploy/README.md as written, on a
# stack of its own (project fbrunbook<pid>, ports on 127.0.0.1, secrets in
# this shell's environment, which compose reads as it reads .env), checks
# what each should do, and writes the transcript to
# docs/deploy-runbook-transcript.md. Run make images first. "docker
# compose" is run as docker-compose where the plugin is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/deploy-runbook-transcript.md

if docker compose version >/dev/null 2>&1; then
	DC="docker compose"
else
	DC=docker-compose
fi
export COMPOSE_PROJECT_NAME=fbrunbook$$
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export FORGEBUS_HTTP_BIND=127.0.0.1 FORGEBUS_HTTP_PORT=$(freeport) FORGEBUS_NATS_PORT=$(freeport)
export FORGEBUS_GOGS_URL=http://gogs.invalid:3000
export FORGEBUS_MODELS_SECRET=$(openssl rand -hex 32)
old=$(openssl rand -hex 32)
new=$(openssl rand -hex 32)
export FORGEBUS_GOGS_SECRETS=$old

cleanup() {
	$DC down -v -t 10 >/dev/null 2>&1 || true
	rm -f docs-builder.Dockerfile
	docker rmi forgebus-docs:latest >/dev/null 2>&1 || true
}
trap cleanup EXIT

{
	echo "# The runbook, executed"
	echo
	echo "Every \`docker compose\` command of [deploy/README.md](../deploy/README.md),"
	echo "run as written by \`deploy/runbook.sh\` with \`$DC\` ($($DC version --short 2>/dev/null || $DC version | head -n1)),"
	echo "Docker $(docker version -f '{{.Server.Version}}'), on $(date -u +%Y-%m-%d). Output is cut to the last lines."
	echo
} >"$out"

# step runs a command line as written, shows it and the end of its output.
step() {
	local line=$1 rc=0 log
	log=$(bash -c "$line" 2>&1) || rc=$?
	{
		echo '```console'
		echo "\$ $line"
		printf '%s\n' "$log" | grep -v -e '^DEPRECATED' -e 'legacy builder' -e 'buildx' -e '^ *$' | sed 's/[[:space:]]*$//' | tail -n "${2:-12}"
		echo "# exit $rc"
		echo '```'
		echo
	} >>"$out"
	echo "runbook: $line: exit $rc" >&2
	return "$rc"
}
note() { printf '%s\n\n' "$*" >>"$out"; }

# wait_healthy waits until the project has n containers, all healthy or
# running (the load balancer has no healthcheck), not counting the
# one-shot provision service.
wait_healthy() {
	local n=$1 i states
	for i in $(seq 120); do
		states=$(docker ps -a -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter "label=com.docker.compose.oneoff=False" |
			xargs -r docker inspect -f '{{if eq (index .Config.Labels "com.docker.compose.service") "provision"}}{{else}}{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}{{end}}' | grep -v '^$')
		if [ "$(wc -w <<<"$states")" -eq "$n" ] && ! grep -qv -e healthy -e running <<<"$states"; then
			note "(all $n containers healthy after ${i}x2 s)"
			return 0
		fi
		sleep 2
	done
	note "NOT healthy: $(tr '\n' ' ' <<<"$states")"
	return 1
}

# service_count is how many containers the project has, not counting the
# one-shot provision service.
service_count() {
	docker ps -a -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" |
		xargs -r docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' | grep -vc '^provision$'
}

# post signs a captured push with a secret and prints the HTTP status.
post() {
	local secret=$1 body sig
	body=$(python3 -c 'import json,base64,sys,secrets; c=json.load(open("testdata/gogs/push-multi-commit.json")); b=json.loads(base64.b64decode(c["body_base64"])); b["after"]=secrets.token_hex(20); print(json.dumps(b))')
	sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | awk '{print $NF}')
	curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$FORGEBUS_HTTP_PORT/hooks/gogs" \
		-H 'Content-Type: application/json' -H 'X-Gogs-Event: push' \
		-H "X-Gogs-Delivery: $(python3 -c 'import uuid; print(uuid.uuid4())')" -H "X-Gogs-Signature: $sig" --data-binary "$body"
}
expect() {
	local what=$1 want=$2 got=$3
	note "check: $what: HTTP $got (want $want)"
	[ "$got" = "$want" ] || { echo "runbook: $what: got $got, want $want" >&2; exit 1; }
}

note "## Deploy"
step "deploy/auth.sh bin/image/forgebus" 1
step "$DC up -d --build" 6
wait_healthy 11
step "$DC ps" 14
expect "a delivery signed with the secret" 202 "$(post "$old")"

note "## Scale a worker"
step "$DC up -d --scale worker-docs=3" 6
step "$DC up -d --scale worker-docs=3 --scale ingest=4" 6
wait_healthy 14
expect "a delivery through the load balancer with 4 ingest replicas" 202 "$(post "$old")"

note "## The docs and models workers' tools"
cat >docs-builder.Dockerfile <<'DOCKERFILE'
# docs-builder.Dockerfile
FROM forgebus-tools:latest
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mkdocs \
 && rm -rf /var/lib/apt/lists/*
USER 65532:65532
DOCKERFILE
step "docker build -t forgebus-docs:latest -f docs-builder.Dockerfile ." 4
step "FORGEBUS_TOOLS_IMAGE=forgebus-docs:latest $DC up -d worker-docs worker-models" 6
step "docker run --rm --entrypoint mkdocs forgebus-docs:latest --version" 2

note "## Rotate the webhook secret"
export FORGEBUS_GOGS_SECRETS=$new,$old
step "$DC up -d ingest" 6
wait_healthy "$(service_count)"
expect "signed with the new secret (FORGEBUS_GOGS_SECRETS=new,old)" 202 "$(post "$new")"
expect "signed with the old secret (FORGEBUS_GOGS_SECRETS=new,old)" 202 "$(post "$old")"
export FORGEBUS_GOGS_SECRETS=$new
step "$DC up -d ingest" 6
wait_healthy "$(service_count)"
expect "signed with the old secret (FORGEBUS_GOGS_SECRETS=new)" 401 "$(post "$old")"
expect "signed with the new secret (FORGEBUS_GOGS_SECRETS=new)" 202 "$(post "$new")"

note "## Rotate the Gogs token"
export FORGEBUS_GOGS_TOKEN=$(openssl rand -hex 20)
step "$DC up -d worker-docs worker-models worker-envsync" 6
wait_healthy "$(service_count)"
step "$DC ps" 14

note "## Upgrade"
step "$DC up -d --no-deps ingest" 6
step "$DC up -d --no-deps worker-docs worker-models worker-envsync worker-audit" 6
step "$DC up -d --no-deps nats-3" 4
wait_healthy "$(service_count)"
expect "a delivery after the upgrade" 202 "$(post "$new")"
step "$DC run --rm -T provision dlq list" 3
step "$DC run --rm -T provision audit verify --pubkey \"\$(FORGEBUS_AUDIT_KEY_FILE=deploy/creds/audit.key bin/image/forgebus audit pubkey)\"" 2
note "Then \`$DC down -v\` removed the stack."
