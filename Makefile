# forgebus: build, run, test and lint every module of the Go workspace.
# The root is not a module: package patterns are each module's directory.

SHELL       := /bin/bash
MODULES     := schemas natstest ingest workers services
MODDIRS     := $(shell go list -m -f '{{.Dir}}')
PKGS        := $(addsuffix /...,$(MODDIRS))
VERSION     := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
# staticcheck pinned; resolved through the module proxy by go run.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# An execution count, not a duration: with a duration, Go 1.26's fuzz
# coordinator can fail a target at the deadline with "context deadline
# exceeded" and no crasher (golang/go#75804, fixed in Go 1.27).
FUZZTIME    ?= 2000x

.PHONY: all build run test test-unit test-race fuzz-short lint fmt-check vet staticcheck bench check-modules clean

all: build

## build: the forgebus binary into bin/forgebus, version from git describe
build:
	go build -ldflags "$(LDFLAGS)" -o bin/forgebus ./services/cmd/forgebus

## run: build, then run everything in one process (embedded NATS, ingest, workers)
run: build
	FORGEBUS_CONFIG="$${FORGEBUS_CONFIG:-examples/forgebus.yaml}" FORGEBUS_GOGS_URL="$${FORGEBUS_GOGS_URL:-http://127.0.0.1:3000}" bin/forgebus dev

## test: every module's tests, then a short run of every fuzz target
test: test-unit fuzz-short

test-unit:
	go test $(PKGS)

## test-race: the tests under the race detector (slow on 2 cores; not part of test)
test-race:
	go test -race $(PKGS)

## fuzz-short: every Fuzz target for $(FUZZTIME) each
fuzz-short:
	@set -euo pipefail; \
	for f in $$(grep -rlE --include='*_test.go' --exclude-dir=testdata '^func Fuzz[A-Za-z0-9_]*\(' $(MODDIRS)); do \
		dir=$$(dirname "$$f"); \
		for name in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$f"); do \
			echo "fuzz $${dir#$(CURDIR)/} $$name ($(FUZZTIME))"; \
			(cd "$$dir" && go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) .); \
		done; \
	done

## lint: go vet and staticcheck on every module
lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $(MODDIRS)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	go vet $(PKGS)

staticcheck:
	go run $(STATICCHECK) $(PKGS)

## bench: the load benchmark (one process), the three-node cluster benchmark, then
## audit verify of a 100,000-record log
bench: build
	go run ./services/test/forgebus-bench
	go run ./services/test/forgebus-faults -bin bin/forgebus -bench
	cd workers && go test -run '^$$' -bench BenchmarkVerifyStream100k -benchtime 1x ./audit/

## check-modules: every module builds on its own go.mod (no go.work)
check-modules:
	@failed=""; for m in $(MODULES); do \
		echo "GOWORK=off go build ./... in $$m"; \
		(cd $$m && GOWORK=off go build ./...) || failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "check-modules: go.mod/go.sum incomplete in:$$failed"; exit 1; fi

clean:
	rm -rf bin

.PHONY: test-faults

## test-faults: fault test on a local three-node cluster: 5,000 signed webhooks
## while a worker replica, a NATS node and an ingest are SIGKILLed and restarted
## (about 2 minutes; see scripts/faults/README.md)
test-faults: build
	go run ./services/test/forgebus-faults -bin bin/forgebus

.PHONY: images test-compose

## images: every image docker-compose.yml uses, with nothing pulled: static
## binaries built here, a Debian base made with debootstrap (cached)
## (see docs/deploy.md)
images:
	VERSION=$(VERSION) deploy/images/build.sh

## test-compose: the compose stack for real: three NATS nodes, two ingest,
## every worker; scale-up, a NATS node killed, a NATS node partitioned,
## a rolling restart of ingest, down/up; counts every delivery (docs/deploy.md)
test-compose: images
	go run ./services/test/composetest
