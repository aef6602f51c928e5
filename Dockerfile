# syntax=docker/dockerfile:1
#
# The online build of the forgebus images, for hosts with a registry: it
# pulls golang, distroless and alpine, and needs BuildKit. Without a
# registry, `make images` builds the same images from deploy/images/ with
# nothing pulled (docs/deploy.md). deploy/compose.online.yml builds from
# this file; by hand, from the repository root:
#
#   docker build -t forgebus:latest --build-arg VERSION=$(git describe --always --dirty) .
#   docker build -t forgebus-tools:latest --target tools .
#
# The default image (last stage) is the static forgebus binary on distroless
# "static" as a non-root user: CA certificates and /etc/passwd, no shell, no
# package manager. It runs ingest, the envsync and audit workers, and every
# operator command (dlq, events, audit).
#
# The docs and models workers run git and the operator's build commands, so
# they need an image with those tools: the "tools" target (Alpine, git, the
# same binary and user) is the base for that; add your build tools in an
# image derived from it (deploy/README.md has an example).

ARG GO_VERSION=1.26

# --- build: the static binary ---------------------------------------------
FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Never fetch another toolchain: the image's Go is the one named above.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

# Dependencies first, so a source change does not download them again.
COPY go.work go.work.sum ./
COPY schemas/go.mod schemas/go.sum schemas/
COPY ingest/go.mod ingest/go.sum ingest/
COPY workers/go.mod workers/go.sum workers/
COPY services/go.mod services/go.sum services/
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY schemas/ schemas/
COPY ingest/ ingest/
COPY workers/ workers/
COPY services/ services/

ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/forgebus ./services/cmd/forgebus \
 && /out/forgebus version

# The directories the non-root user writes to: created here, because the
# runtime image has no shell to create them. A named volume mounted on one
# of them starts with this owner.
RUN mkdir -p /out/rootfs/var/lib/forgebus /out/rootfs/srv/docs

# --- tools: the binary with git, for the docs and models workers -----------
FROM alpine:3.22 AS tools
RUN apk add --no-cache ca-certificates git tzdata \
 && addgroup -S -g 65532 nonroot \
 && adduser -S -D -H -u 65532 -G nonroot -h /var/lib/forgebus -s /sbin/nologin nonroot
COPY --from=build --chown=65532:65532 /out/rootfs/ /
COPY --from=build /out/forgebus /usr/local/bin/forgebus
ENV HOME=/var/lib/forgebus \
    FORGEBUS_DATA_DIR=/var/lib/forgebus \
    FORGEBUS_HTTP_ADDR=:8080 \
    FORGEBUS_LOG_FORMAT=json
WORKDIR /var/lib/forgebus
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/forgebus"]
CMD ["worker", "docs"]

# --- runtime: the default image ---------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build --chown=65532:65532 /out/rootfs/ /
COPY --from=build /out/forgebus /usr/local/bin/forgebus
ENV HOME=/var/lib/forgebus \
    FORGEBUS_DATA_DIR=/var/lib/forgebus \
    FORGEBUS_HTTP_ADDR=:8080 \
    FORGEBUS_LOG_FORMAT=json
WORKDIR /var/lib/forgebus
# nonroot (65532) in distroless; numeric so that runAsNonRoot checks pass.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/forgebus"]
CMD ["ingest"]
