# mailfunnel: run `make` for the list of targets.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X main.Version=$(VERSION)
BIN      := bin/mailfunnel
FUZZTIME ?= 30s
PKGS     := ./...
BENCH_DURATION ?= 10s
BENCH_ROUNDS   ?= 3
BENCH_RESULTS  ?=
BENCH_ARGS     ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/mailfunnel with the version stamped in
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mailfunnel

run: build ## start the server on ./data, listening on 127.0.0.1:8080
	./$(BIN) serve

test: ## the whole test suite (race detector on), then the DuckDB reader test (cgo, own module)
	$(GO) test -race -count=1 -timeout 9m $(PKGS)
	cd export/duckdbtest && $(GO) test -count=1 -timeout 5m ./...

test-short: ## the quick tests only
	$(GO) test -short -count=1 $(PKGS)

bench: ## every in-package benchmark
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

bench-ingest: build ## mailfunnel vs a Benthos peer vs a bare Fiber ceiling, alternating (BENCH_DURATION, BENCH_ROUNDS; BENCH_RESULTS=benchmarks/RESULTS.md to record)
	cd benchmarks/benthos && $(GO) build -o ../../bin/benthos-peer .
	$(GO) build -o bin/ceiling ./benchmarks/cmd/ceiling
	$(GO) build -o bin/benchingest ./benchmarks/cmd/benchingest
	./bin/benchingest -duration $(BENCH_DURATION) -rounds $(BENCH_ROUNDS) -results '$(BENCH_RESULTS)' -commit '$(VERSION)' \
	  -command 'make bench-ingest$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' $(BENCH_ARGS)

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint: ## gofmt check, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

tidy-check: ## fail if go.mod/go.sum (main module and the DuckDB test module) are not tidy
	$(GO) mod tidy -diff
	cd export/duckdbtest && $(GO) mod tidy -diff

badger-check: ## third_party/badger is upstream Badger plus third_party/badger.patch only, and passes upstream's transaction tests
	third_party/check-badger.sh
	cd third_party/badger && $(GO) test -count=1 -run 'Txn|WriteBatch|Conflict' .

smoke: ## the contract smoke test against the built binary
	../shared/smoke/contract-smoke

clean: ## remove build outputs (not ./data)
	rm -rf bin

.PHONY: help build run test test-short bench bench-ingest fuzz lint fmt tidy-check badger-check smoke clean
