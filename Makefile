# Troupe — build, run and test.
GO       ?= go
BIN      := bin
NODES    ?= 3
PKGS     := ./...
# RACE=1 also builds the kvnode that tests start with the race detector
# (bin/kvnode-race), e.g. make integration RACE=1.
RACE     ?=

# The version stamped into every binary (internal/version): git describe,
# else "dev"; the commit likewise.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VERSION_PKG := github.com/troupe-kv/troupe/internal/version
STAMP    := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Commit=$(COMMIT)
# Release binaries: stamped, without symbol tables and debug info.
LDFLAGS  := -s -w $(STAMP)

.PHONY: all build test-bin test-deps run test vet fmt-check unit integration bench bench-etcd bench-coordination clean

all: build

build:
	$(GO) build -ldflags "$(STAMP)" -o $(BIN)/kvnode ./cmd/kvnode
	@if [ -d cmd/kvctl ]; then $(GO) build -ldflags "$(STAMP)" -o $(BIN)/kvctl ./cmd/kvctl; fi

# A local cluster on loopback, data under ./data; Ctrl-C stops every node.
run: build
	NODES=$(NODES) ./deploy/local/run-cluster.sh

# Tests start real kvnode processes; they take the binary from
# TROUPE_KVNODE and never build it themselves.
TEST_ENV := TROUPE_KVNODE=$(abspath $(BIN)/kvnode$(if $(filter 1,$(RACE)),-race))

test-bin: build
ifeq ($(RACE),1)
	$(GO) build -race -o $(BIN)/kvnode-race ./cmd/kvnode
endif

# What the suite needs beyond Go: Chromium for the console's browser
# tests (integration/console_test.go), ip and iptables for the chaos
# suite's partitions between network namespaces. Installed with apt-get
# where missing when run as root; otherwise named here, and the tests
# that need them fail (never skip) saying so.
TEST_TOOLS := chromium:chromium ip:iproute2 iptables:iptables
test-deps:
	@missing=""; for t in $(TEST_TOOLS); do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make test: missing$$missing; install them (Debian: apt-get install$$missing)" >&2; fi

# The whole suite, as CI runs it.
test: test-deps fmt-check vet test-bin
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 30m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit: test-bin
	$(TEST_ENV) $(GO) test -race -count=1 ./storage/... ./cluster/... ./actors/... ./api/... ./cmd/...

integration: test-bin
	$(TEST_ENV) $(GO) test -count=1 -timeout 20m ./integration/...

# Go micro-benchmarks of the hot pieces, then the cluster benchmark: a
# table of throughput and latency on 3 local nodes, unavailability after
# kill -9 of the leader, catch-up of a node that missed 100k writes, and
# memory and disk at 100k and 1M keys. BENCH_ARGS adds troupe-bench flags.
BENCH_ARGS ?= --failover 5 --catch-up 100000 --footprint 100000,1000000
# troupe-bench runs the bin/kvnode beside it.
bench: build
	$(GO) build -o $(BIN)/troupe-bench ./cmd/troupe-bench
	$(GO) test -run '^$$' -bench . -benchmem ./storage/... ./api/...
	$(BIN)/troupe-bench $(BENCH_ARGS)

# The same load table beside etcd (built from the Go module proxy into
# bin/etcd): both clusters run, and each row alternates which store goes
# first, with a sync between.
bench-etcd: build
	$(GO) build -o $(BIN)/troupe-bench ./cmd/troupe-bench
	test -x $(BIN)/etcd || ./bench/build-etcd.sh
	$(BIN)/troupe-bench --stores troupe,etcd --etcd $(BIN)/etcd $(BENCH_ARGS)

# Coordination: transactions of 4 sets at 16 and 64 clients beside etcd's
# /v3/kv/txn (alternating), lock hand-off latency, and 10,000 sessions
# renewed every TTL/2 (leader CPU and memory, writes at 64 clients with
# and without them).
COORD_ARGS ?= --kinds txn-4 --clients 16,64 --duration 20s --lock-handoffs 500 --sessions 10000
bench-coordination: build
	$(GO) build -o $(BIN)/troupe-bench ./cmd/troupe-bench
	test -x $(BIN)/etcd || ./bench/build-etcd.sh
	$(BIN)/troupe-bench --stores troupe,etcd --etcd $(BIN)/etcd $(COORD_ARGS)

clean:
	rm -rf $(BIN) ./data ./dist ./build

# Static, stamped kvnode and kvctl for each of PLATFORMS, one tarball each
# with the unit file and the example config, and dist/SHA256SUMS.
PLATFORMS ?= linux/amd64 linux/arm64
DIST      ?= dist
.PHONY: release
release:
	GO="$(GO)" VERSION="$(VERSION)" COMMIT="$(COMMIT)" LDFLAGS="$(LDFLAGS)" \
	PLATFORMS="$(PLATFORMS)" DIST="$(DIST)" ./deploy/release.sh

# The container image, FROM scratch: the static binaries are built here,
# into build/docker with deploy/docker/Dockerfile, and the image tagged
# troupe/kvnode:$(VERSION) and :latest.
IMAGE     ?= troupe/kvnode
DOCKER_CTX := build/docker
.PHONY: docker
docker:
	rm -rf $(DOCKER_CTX)
	mkdir -p $(DOCKER_CTX)/data
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DOCKER_CTX)/ ./cmd/kvnode ./cmd/kvctl
	cp deploy/docker/Dockerfile $(DOCKER_CTX)/
	docker build -q -t $(IMAGE):$(VERSION) -t $(IMAGE):latest $(DOCKER_CTX)
	@docker image ls $(IMAGE):$(VERSION)

# A cluster in containers (deploy/docker): NODES=3 or 5, CHAOS=1 adds the
# override that turns on the fault-injection endpoints. HTTP is published
# on 127.0.0.1:8501.. (one port per node). compose-down removes the
# containers, the network and the volumes (the data).
COMPOSE_PROJECT ?= troupe
COMPOSE_FILES = -f deploy/docker/docker-compose$(if $(filter 5,$(NODES)),.5).yml \
	$(if $(filter 1,$(CHAOS)),-f deploy/docker/docker-compose$(if $(filter 5,$(NODES)),.5).chaos.yml)
COMPOSE = docker-compose -p $(COMPOSE_PROJECT) $(COMPOSE_FILES)
.PHONY: compose-up compose-down compose-test
compose-up: docker
	@case "$(NODES)" in 3|5) ;; *) echo "compose-up: NODES must be 3 or 5" >&2; exit 2;; esac
	TROUPE_IMAGE=$(IMAGE):$(VERSION) $(COMPOSE) up -d
	TROUPE_IMAGE=$(IMAGE):$(VERSION) $(COMPOSE) ps

compose-down:
	TROUPE_IMAGE=$(IMAGE):$(VERSION) docker-compose -p $(COMPOSE_PROJECT) -f deploy/docker/docker-compose.5.yml down -v --remove-orphans

# The compose test (deploy/docker): builds the image, runs 3 nodes under
# docker-compose, kills the leader's container and cuts a node off the
# network under a writer, and checks that no acknowledged write is lost.
# Fails, never skips, when Docker is not reachable.
compose-test: docker
	TROUPE_COMPOSE_TEST=1 TROUPE_IMAGE=$(IMAGE):$(VERSION) \
	$(GO) test -count=1 -timeout 8m -v -run 'TestCompose' ./deploy/docker/

# The stand-in VM test (deploy/vm): Debian containers with systemd as PID
# 1 (the image troupe/vm-base:bookworm, built once with debootstrap by
# deploy/vm/base-image.sh and then reused), the release installed with
# install.sh on 3 and on 5 of them; SIGKILL of the leader's unit, and a
# rolling upgrade to a tarball stamped $(VERSION)-next under a writer.
# Needs root (for debootstrap, the first time) and Docker; fails, never
# skips, without them.
VM_IMAGE ?= troupe/vm-base:bookworm
VM_DIST  := build/vm
.PHONY: vm-test
vm-test:
	VM_IMAGE=$(VM_IMAGE) ./deploy/vm/base-image.sh
	$(MAKE) --no-print-directory release PLATFORMS=linux/amd64 DIST=$(VM_DIST)/old VERSION=$(VERSION) >/dev/null
	$(MAKE) --no-print-directory release PLATFORMS=linux/amd64 DIST=$(VM_DIST)/new VERSION=$(VERSION)-next >/dev/null
	TROUPE_VM_TEST=1 TROUPE_VM_IMAGE=$(VM_IMAGE) \
	TROUPE_VM_TARBALL=$(abspath $(VM_DIST)/old/troupe-$(VERSION)-linux-amd64.tar.gz) \
	TROUPE_VM_UPGRADE_TARBALL=$(abspath $(VM_DIST)/new/troupe-$(VERSION)-next-linux-amd64.tar.gz) \
	$(GO) test -count=1 -timeout 15m -v -run 'TestVM' ./deploy/vm/

# The chaos suite against a fresh local cluster (docs/chaos.md); exits 1 on
# a violation. make chaos NODES=5 DURATION=30m NEMESIS=kill,partition-half
# SEED=42 NETNS=1 OUT=dir CHAOS_ARGS='--clients 20'
.PHONY: chaos
chaos: build
	$(GO) build -o $(BIN)/troupe-chaos ./cmd/troupe-chaos
	GO="$(GO)" NODES="$(NODES)" DURATION="$(DURATION)" NEMESIS="$(NEMESIS)" SEED="$(SEED)" \
	NETNS="$(NETNS)" OUT="$(OUT)" CHAOS_ARGS="$(CHAOS_ARGS)" ./chaos/run.sh

# Every fuzz target in turn, FUZZTIME each (go test -fuzz takes one target
# per run). New inputs that fail land in testdata/fuzz/ of their package.
FUZZTIME ?= 30s
.PHONY: fuzz
fuzz:
	@set -e; for f in $$(grep -l '^func Fuzz' $$(git ls-files '*_test.go')); do \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "== $$t ($$(dirname $$f), $(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f); \
	  done; \
	done
