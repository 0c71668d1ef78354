# Troupe — build, run and test.
GO       ?= go
BIN      := bin
NODES    ?= 3
PKGS     := ./...

.PHONY: all build run test vet fmt-check unit integration bench clean

all: build

build:
	$(GO) build -o $(BIN)/kvnode ./cmd/kvnode
	@if [ -d cmd/kvctl ]; then $(GO) build -o $(BIN)/kvctl ./cmd/kvctl; fi

# A local cluster on loopback, data under ./data; Ctrl-C stops every node.
run: build
	NODES=$(NODES) ./deploy/local/run-cluster.sh

# The whole suite, as CI runs it.
test: fmt-check vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 ./storage/... ./cluster/... ./actors/... ./api/... ./cmd/...

integration:
	$(GO) test -count=1 -timeout 20m ./integration/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./storage/... ./api/...

clean:
	rm -rf $(BIN) ./data
