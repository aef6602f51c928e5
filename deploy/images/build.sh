#!/usr/bin/env bash
# make images: builds every image docker-compose.yml uses with nothing
# pulled from a registry. The Go binaries are built here with the host's Go
# toolchain (modules from the Go module proxy); the Debian base of the tools
# image is made with debootstrap from this machine's own apt mirror and
# imported, and cached so that the next run only imports it again.
#
#   deploy/images/build.sh            # all images
#   VERSION=v1.2.3 deploy/images/build.sh
#
# Environment: VERSION (stamped into forgebus), DEBIAN_MIRROR (default: the
# first Debian mirror of this machine's apt sources), DEBIAN_SUITE
# (default bookworm), FORGEBUS_IMAGE_CACHE (default ~/.cache/forgebus),
# CADDY_VERSION, and the image tags FORGEBUS_IMAGE, FORGEBUS_TOOLS_IMAGE,
# FORGEBUS_NATS_IMAGE, FORGEBUS_LB_IMAGE, FORGEBUS_BASE_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
SUITE=${DEBIAN_SUITE:-bookworm}
CADDY_VERSION=${CADDY_VERSION:-v2.11.9}
CACHE=${FORGEBUS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forgebus}
IMG_FORGEBUS=${FORGEBUS_IMAGE:-forgebus:latest}
IMG_TOOLS=${FORGEBUS_TOOLS_IMAGE:-forgebus-tools:latest}
IMG_NATS=${FORGEBUS_NATS_IMAGE:-forgebus-nats:latest}
IMG_LB=${FORGEBUS_LB_IMAGE:-forgebus-lb:latest}
IMG_BASE=${FORGEBUS_BASE_IMAGE:-forgebus-base:$SUITE}
# What the Debian base holds: a shell (minbase), git and CA certificates.
BASE_PACKAGES=ca-certificates,git

stage=$root/bin/image
log() { printf 'images: %s\n' "$*" >&2; }

# debianMirror prints the first Debian archive URI of the apt sources
# (deb822 .sources first, then one-line sources.list), never a fixed host.
debianMirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk '
			/^URIs:/ { u = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-(security|updates|backports)$/) s = 1 }
			/^$/ { if (u != "" && s) { print u; exit } u = ""; s = 0 }
			END { if (u != "" && s) print u }' "$f" | head -n1)
		if [ -n "$uri" ]; then echo "$uri"; return; fi
	done
	if [ -r /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" && $3 !~ /-(security|updates|backports)$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
		if [ -n "$uri" ]; then echo "$uri"; return; fi
	fi
	return 1
}

# 1. The static binaries, for linux/amd64 or the host's architecture.
log "go build forgebus $VERSION, nats-server, caddy $CADDY_VERSION"
rm -rf "$stage"
mkdir -p "$stage/rootfs/etc/ssl/certs" "$stage/data/var/lib/forgebus" "$stage/data/srv/docs" \
	"$stage/data/data" "$stage/data/config"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$stage/forgebus" ./services/cmd/forgebus
# nats-server is a tool of the services module: the version its go.mod pins.
(cd services && go build -trimpath -ldflags "-s -w" -o "$stage/nats-server" github.com/nats-io/nats-server/v2)
GOBIN=$stage go install -trimpath -ldflags "-s -w" "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION"
"$stage/forgebus" version >/dev/null

# The files a scratch image needs: a non-root user (65532, as distroless's
# "nonroot") and the CA certificates of this machine.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/forgebus:/sbin/nologin\n' >"$stage/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$stage/rootfs/etc/group"
ca=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca" ] || { log "no $ca: install ca-certificates"; exit 1; }
cp "$ca" "$stage/rootfs/etc/ssl/certs/ca-certificates.crt"
cp deploy/Caddyfile "$stage/Caddyfile"

# 2. The Debian base, made once and cached as a tarball.
mirror=${DEBIAN_MIRROR:-$(debianMirror || true)}
if [ -z "$mirror" ]; then
	log "no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list: set DEBIAN_MIRROR"
	exit 1
fi
key=$(printf '%s %s %s' "$SUITE" "$BASE_PACKAGES" "$mirror" | sha256sum | cut -c1-16)
tarball=$CACHE/base-$SUITE-$key.tar
if [ "$(docker image inspect -f '{{index .Config.Labels "org.forgebus.base"}}' "$IMG_BASE" 2>/dev/null || true)" = "$key" ]; then
	log "base $IMG_BASE is current ($key)"
else
	if [ ! -s "$tarball" ]; then
		command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 1; }
		log "debootstrap $SUITE from $mirror (once; cached in $tarball)"
		mkdir -p "$CACHE"
		dir=$(mktemp -d "$CACHE/rootfs.XXXXXX")
		trap 'rm -rf "$dir"' EXIT
		debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$dir" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
			{ tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
		rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/tmp/* "$dir"/var/log/*
		tar --numeric-owner -C "$dir" -cf "$tarball.tmp" .
		mv "$tarball.tmp" "$tarball"
		rm -rf "$dir"
		trap - EXIT
	fi
	log "docker import $tarball as $IMG_BASE"
	docker import -c "LABEL org.forgebus.base=$key" -c 'CMD ["/bin/bash"]' "$tarball" "$IMG_BASE" >/dev/null
fi

# 3. The images, from the staged files only (see .dockerignore). The
# Dockerfiles need no BuildKit: the classic builder builds them.
build() {
	local tag=$1 file=$2
	shift 2
	log "docker build $tag ($file)"
	docker build -q -t "$tag" -f "$file" --build-arg "VERSION=$VERSION" "$@" . >/dev/null
}
build "$IMG_FORGEBUS" deploy/images/forgebus.Dockerfile
build "$IMG_NATS" deploy/images/nats.Dockerfile
build "$IMG_LB" deploy/images/lb.Dockerfile
build "$IMG_TOOLS" deploy/images/tools.Dockerfile --build-arg "BASE=$IMG_BASE"
log "built $IMG_FORGEBUS $IMG_TOOLS $IMG_NATS $IMG_LB"
