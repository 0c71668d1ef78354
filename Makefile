# Troupe — build, run and test.
GO       ?= go
BIN      := bin
NODES    ?= 3
PKGS     := ./...
# RACE=1 also builds the kvnode that tests start with the race detector
# (bin/kvnode-race), e.g. make integration RACE=1.
RACE     ?=

.PHONY: all build test-bin run test vet fmt-check unit integration bench bench-etcd clean

all: build

build:
	$(GO) build -o $(BIN)/kvnode ./cmd/kvnode
	@if [ -d cmd/kvctl ]; then $(GO) build -o $(BIN)/kvctl ./cmd/kvctl; fi

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

# The whole suite, as CI runs it.
test: fmt-check vet test-bin
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

# The same load table against etcd (built from the Go module proxy into
# bin/etcd) right after Troupe's, on the same machine.
bench-etcd: build
	$(GO) build -o $(BIN)/troupe-bench ./cmd/troupe-bench
	test -x $(BIN)/etcd || ./bench/build-etcd.sh
	$(BIN)/troupe-bench --etcd $(BIN)/etcd $(BENCH_ARGS)

clean:
	rm -rf $(BIN) ./data

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
