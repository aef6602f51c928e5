#!/usr/bin/env bash
# cluster.sh: a local three-node NATS JetStream cluster on 127.0.0.1, with the
# same settings as docker-compose.yml (deploy/nats/nats-{1,2,3}.conf); only
# addresses, ports and store directories are overridden, by flags.
#
#   scripts/cluster.sh start  [dir]   start the nodes, wait for a JetStream meta leader
#   scripts/cluster.sh status [dir]   show each node and the meta leader
#   scripts/cluster.sh stop   [dir]   stop the nodes this script started in dir
#   scripts/cluster.sh urls   [dir]   print FORGEBUS_NATS_URL for the cluster
#   scripts/cluster.sh creds  [dir]   print the directory of each role's credentials
#
# dir (default ./data/cluster) holds each node's store, log and pid file, and
# creds/: the operator's keys and each role's credentials, made on the first
# start with "forgebus creds server-config". Every node runs with auth on:
# conf/nats-N.conf is deploy/nats/nats-N.conf as is, and its include
# conf/auth.conf trusts that operator. No client gets in without creds.
# Environment:
#   NATS_SERVER         nats-server binary (default: bin/nats-server, built
#                       from the services module on first use)
#   CLUSTER_PORT_BASE   client ports are BASE, BASE+1, BASE+2; routes
#                       BASE+10..12; monitoring BASE+20..22 (default 14222;
#                       remembered in dir by start)
#   CLUSTER_WAIT        seconds to wait for the meta leader (default 30)
#   FORGEBUS            forgebus binary (default: bin/forgebus, built from the
#                       services module on first use)
#
# Then: FORGEBUS_NATS_URL=$(scripts/cluster.sh urls) FORGEBUS_STREAM_REPLICAS=3 \
#   FORGEBUS_NATS_CREDS=$(scripts/cluster.sh creds)/operator.creds bin/forgebus ingest
# (each process with its own role's file: ingest.creds, worker-docs.creds, ...).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"
dir="${2:-$root/data/cluster}"
base="${CLUSTER_PORT_BASE:-}"
wait_s="${CLUSTER_WAIT:-30}"
nodes=(1 2 3)
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
# The ports of a running cluster are remembered in its dir.
if [ -z "$base" ] && [ -f "$dir/port_base" ]; then
	base="$(cat "$dir/port_base")"
fi
base="${base:-14222}"

die() { echo "cluster: $*" >&2; exit 1; }

case "$base" in '' | *[!0-9]*) die "CLUSTER_PORT_BASE must be a number" ;; esac
[ "$base" -ge 1024 ] && [ "$base" -le 65000 ] || die "CLUSTER_PORT_BASE must be 1024..65000"
case "$wait_s" in '' | *[!0-9]*) die "CLUSTER_WAIT must be a number of seconds" ;; esac

client_port() { echo $((base + $1 - 1)); }
route_port() { echo $((base + 10 + $1 - 1)); }
monitor_port() { echo $((base + 20 + $1 - 1)); }
pidfile() { echo "$dir/nats-$1.pid"; }

# http_get URL: the body, or nothing and status 1.
http_get() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 2 "$1" 2>/dev/null
	else
		wget -q -T 2 -O - "$1" 2>/dev/null
	fi
}

# ours N: the pid of node N if it is alive and is the nats-server this script
# started for dir (checked against its command line), else nothing.
ours() {
	local f pid
	f="$(pidfile "$1")"
	[ -f "$f" ] || return 1
	pid="$(cat "$f")"
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/nats-$1/store" || return 1
	echo "$pid"
}

server_bin() {
	if [ -n "${NATS_SERVER:-}" ]; then
		[ -x "$NATS_SERVER" ] || die "NATS_SERVER=$NATS_SERVER is not executable"
		echo "$NATS_SERVER"
		return
	fi
	if [ ! -x "$root/bin/nats-server" ]; then
		echo "cluster: building bin/nats-server from the services module" >&2
		(cd "$root/services" && go build -o "$root/bin/nats-server" github.com/nats-io/nats-server/v2)
	fi
	echo "$root/bin/nats-server"
}

# meta_leader N: the JetStream meta leader as node N's /jsz sees it.
meta_leader() {
	http_get "http://127.0.0.1:$(monitor_port "$1")/jsz" |
		tr -d '\n ' | grep -o '"meta_cluster":{[^}]*' | grep -o '"leader":"[^"]*"' | cut -d'"' -f4
}

forgebus_bin() {
	if [ -n "${FORGEBUS:-}" ]; then
		[ -x "$FORGEBUS" ] || die "FORGEBUS=$FORGEBUS is not executable"
		echo "$FORGEBUS"
		return
	fi
	if [ ! -x "$root/bin/forgebus" ]; then
		echo "cluster: building bin/forgebus from the services module" >&2
		(cd "$root/services" && go build -o "$root/bin/forgebus" ./cmd/forgebus)
	fi
	echo "$root/bin/forgebus"
}

# auth_conf: the nodes' configuration, with auth: deploy/nats/nats-N.conf
# copied beside a generated auth.conf (its include is relative to the file).
auth_conf() {
	local n fb
	fb="$(forgebus_bin)"
	mkdir -p "$dir/conf"
	FORGEBUS_DATA_DIR="$dir" "$fb" creds server-config >"$dir/conf/auth.conf.tmp"
	mv "$dir/conf/auth.conf.tmp" "$dir/conf/auth.conf"
	for n in "${nodes[@]}"; do
		cp "$root/deploy/nats/nats-$n.conf" "$dir/conf/nats-$n.conf"
	done
}

urls() {
	local out="" n
	for n in "${nodes[@]}"; do
		out="${out:+$out,}nats://127.0.0.1:$(client_port "$n")"
	done
	echo "$out"
}

start() {
	local bin n routes m pid leader deadline
	bin="$(server_bin)"
	mkdir -p "$dir"
	echo "$base" >"$dir/port_base"
	auth_conf
	for n in "${nodes[@]}"; do
		if pid="$(ours "$n")"; then
			echo "cluster: nats-$n already running (pid $pid)"
			continue
		fi
		routes=""
		for m in "${nodes[@]}"; do
			[ "$m" = "$n" ] || routes="${routes:+$routes,}nats-route://127.0.0.1:$(route_port "$m")"
		done
		mkdir -p "$dir/nats-$n/store"
		# The config file is the compose one; flags win over it.
		"$bin" -c "$dir/conf/nats-$n.conf" \
			-a 127.0.0.1 -p "$(client_port "$n")" -m "$(monitor_port "$n")" \
			--cluster "nats://127.0.0.1:$(route_port "$n")" --routes "$routes" \
			-sd "$dir/nats-$n/store" \
			>"$dir/nats-$n.log" 2>&1 </dev/null &
		echo $! >"$(pidfile "$n")"
		echo "cluster: started nats-$n (pid $!, client $(client_port "$n"), monitor $(monitor_port "$n"))"
	done
	deadline=$((SECONDS + wait_s))
	while [ "$SECONDS" -lt "$deadline" ]; do
		for n in "${nodes[@]}"; do
			ours "$n" >/dev/null || die "nats-$n exited; see $dir/nats-$n.log"
		done
		leader="$(meta_leader 1 || true)"
		if [ -n "$leader" ] && [ "$leader" = "$(meta_leader 2 || true)" ] && [ "$leader" = "$(meta_leader 3 || true)" ]; then
			echo "cluster: ready, JetStream meta leader $leader"
			echo "FORGEBUS_NATS_URL=$(urls)"
			echo "FORGEBUS_NATS_CREDS=$dir/creds/<role>.creds (operator, ingest, worker-docs, ...)"
			return 0
		fi
		sleep 0.5
	done
	die "no JetStream meta leader after ${wait_s}s; see $dir/nats-*.log"
}

stop() {
	local n pid i
	for n in "${nodes[@]}"; do
		if ! pid="$(ours "$n")"; then
			rm -f "$(pidfile "$n")"
			continue
		fi
		kill -TERM "$pid"
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "cluster: nats-$n (pid $pid) ignored SIGTERM; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -f "$(pidfile "$n")"
		echo "cluster: stopped nats-$n (pid $pid)"
	done
}

status() {
	local n pid running=0
	for n in "${nodes[@]}"; do
		if pid="$(ours "$n")"; then
			running=$((running + 1))
			echo "nats-$n: running, pid $pid, client $(client_port "$n"), meta leader '$(meta_leader "$n" || true)'"
		else
			echo "nats-$n: stopped"
		fi
	done
	[ "$running" -eq "${#nodes[@]}" ]
}

case "$cmd" in
start) start ;;
stop) stop ;;
status) status ;;
urls) urls ;;
creds) echo "$dir/creds" ;;
*)
	sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
