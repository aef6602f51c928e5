#!/usr/bin/env bash
# run-local.sh: the scaled-out layout of docker-compose.yml as local
# processes, for development: the three-node cluster of scripts/cluster.sh,
# streams with three replicas, two ingest replicas and one replica of each
# worker named on the command line.
#
#   FORGEBUS_GOGS_SECRETS=dev-secret scripts/run-local.sh start [worker...]
#   scripts/run-local.sh status
#   scripts/run-local.sh stop
#
# ingest replicas listen on 127.0.0.1:8080 and :8081, workers on :8090 and
# up (/healthz, /readyz, /metrics). The audit worker always runs; docs,
# models and envsync need their section in FORGEBUS_CONFIG (e.g. a copy of
# deploy/forgebus.yaml with local paths). Everything lives in ./data/local;
# logs in ./data/local/*.log. stop ends only the processes this script
# started, then the cluster. NATS auth is on: the streams are provisioned
# with the operator's credentials, then each process connects with its own
# role's file from ./data/local/cluster/creds (ingest.creds,
# worker-<name>.creds, worker-audit.creds).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/data/local"
cluster_dir="$dir/cluster"
cmd="${1:-}"
[ "$#" -gt 0 ] && shift

die() { echo "run-local: $*" >&2; exit 1; }

# ours NAME: the pid of process NAME if it is alive and runs this
# repository's bin/forgebus (a pid file can outlive its process, and the pid
# be reused).
ours() {
	local f="$dir/$1.pid" pid exe
	[ -f "$f" ] || return 1
	pid="$(cat "$f")"
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
	[ "${exe% (deleted)}" = "$root/bin/forgebus" ] || return 1
	echo "$pid"
}

# launch NAME PORT ROLE ARGS...: start "forgebus ARGS" as process NAME,
# with the credentials of ROLE.
launch() {
	local name="$1" port="$2" role="$3" pid
	shift 3
	if pid="$(ours "$name")"; then
		echo "run-local: $name already running (pid $pid)"
		return
	fi
	mkdir -p "$dir/$name"
	FORGEBUS_NATS_URL="$nats_url" FORGEBUS_STREAM_REPLICAS=3 FORGEBUS_DATA_DIR="$dir/$name" \
		FORGEBUS_NATS_CREDS="$creds_dir/$role.creds" \
		"$root/bin/forgebus" "$@" --http-addr "127.0.0.1:$port" \
		>"$dir/$name.log" 2>&1 </dev/null &
	echo $! >"$dir/$name.pid"
	echo "run-local: started $name (pid $!, http 127.0.0.1:$port)"
}

# ready NAME PORT: wait until process NAME answers /readyz.
ready() {
	local i
	for i in $(seq 1 150); do
		curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$2/readyz" 2>/dev/null && return 0
		ours "$1" >/dev/null || die "$1 exited; see $dir/$1.log"
		sleep 0.2
	done
	die "$1 not ready after 30s; see $dir/$1.log"
}

start() {
	local port=8090 w workers=(audit)
	for w in "$@"; do
		case "$w" in
		audit) ;;
		docs | models | envsync) workers+=("$w") ;;
		*) die "unknown worker $w (docs, models, envsync, audit)" ;;
		esac
	done
	mkdir -p "$dir"
	"$root/scripts/cluster.sh" start "$cluster_dir"
	nats_url="$("$root/scripts/cluster.sh" urls "$cluster_dir")"
	creds_dir="$("$root/scripts/cluster.sh" creds "$cluster_dir")"
	make -C "$root" --no-print-directory build
	# The operator provisions the streams, once, before anyone uses them.
	FORGEBUS_NATS_URL="$nats_url" FORGEBUS_STREAM_REPLICAS=3 FORGEBUS_DATA_DIR="$dir" \
		FORGEBUS_NATS_CREDS="$creds_dir/operator.creds" "$root/bin/forgebus" provision
	launch ingest-1 8080 ingest ingest
	launch ingest-2 8081 ingest ingest
	local started=("ingest-1 8080" "ingest-2 8081")
	for w in "${workers[@]}"; do
		launch "worker-$w" "$port" "worker-$w" worker "$w"
		started+=("worker-$w $port")
		port=$((port + 1))
	done
	# Every process must come up: a worker without its config section or
	# token exits at once, and start says so instead of "started".
	local p
	for p in "${started[@]}"; do
		# shellcheck disable=SC2086 # "name port"
		ready $p
	done
	echo "run-local: webhooks at http://127.0.0.1:8080/hooks/gogs and :8081; FORGEBUS_NATS_URL=$nats_url"
}

stop() {
	local f name pid i
	for f in "$dir"/*.pid; do
		[ -e "$f" ] || continue
		name="$(basename "$f" .pid)"
		if pid="$(ours "$name")"; then
			kill -TERM "$pid"
			for i in $(seq 1 150); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
			echo "run-local: stopped $name (pid $pid)"
		fi
		rm -f "$f"
	done
	"$root/scripts/cluster.sh" stop "$cluster_dir"
}

status() {
	local f name pid rc=0
	for f in "$dir"/*.pid; do
		[ -e "$f" ] || continue
		name="$(basename "$f" .pid)"
		if pid="$(ours "$name")"; then
			echo "$name: running, pid $pid"
		else
			echo "$name: stopped (see $dir/$name.log)"
			rc=1
		fi
	done
	"$root/scripts/cluster.sh" status "$cluster_dir" || rc=1
	return "$rc"
}

case "$cmd" in
start) start "$@" ;;
stop) stop ;;
status) status ;;
*)
	sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
