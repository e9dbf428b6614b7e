# leadpipe: two commands set up a fresh machine.
#   make run    set up what is missing, then run the whole pipeline with demo traffic
#   make test   set up what is missing, then run every test
SHELL := /bin/bash
GO ?= go
BIN := bin/leadpipe
DATA_DIR ?= ./data
GOTESTFLAGS ?=

.PHONY: all setup build run test vet lint fmt clean chaos bench

all: build

# Idempotent: downloads only what the cache lacks, verifies every file.
setup:
	@scripts/setup.sh

build:
	$(GO) build -o $(BIN) ./cmd/leadpipe

run: setup build
	$(BIN) serve --demo --data-dir $(DATA_DIR)

vet: setup
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# gofmt, go vet, staticcheck, go mod tidy unchanged, the import boundaries
# between the stages, no tracked file over 2 MB (scripts/lint.sh).
lint:
	@scripts/lint.sh

# Every test: unit, integration against embedded NATS JetStream and the real
# ClickHouse engine, browser tests in headless Chromium (installed here when
# missing). Test packages that start an engine share one per package.
test: vet
	@scripts/setup.sh --browser
	$(GO) test -race -timeout 30m -count=1 $(GOTESTFLAGS) ./...

# Fault injection under load (see bench/chaos): 100,000 hits while processors
# are killed -9, the ClickHouse engine restarted and killed -9, NATS restarted; the last line is
# chaos: hits=N lost=L duplicates=D kills=K. CHAOS_FLAGS=--hits=20000 for a short run.
CHAOS_FLAGS ?=
chaos: setup build
	$(GO) build -o bin/chaos ./bench/chaos
	bin/chaos --bin $(BIN) $(CHAOS_FLAGS)

# The load benchmark (see bench/README.md): every part on this machine, an
# open-loop load, baselines side by side, the highest sustained rate; a
# report and a chart in bench/results/; the last line is
# bench: e2e_hits_per_s=N collector_vs_null=R lookup_vs_cidranger=X ch_insert_vs_raw=Y lost=L.
# BENCH_FLAGS=--short for a quick check (about 3 minutes).
BENCH_FLAGS ?=
bench: setup build
	$(GO) build -o bin/bench ./bench/load
	bin/bench --bin $(BIN) $(BENCH_FLAGS)

clean:
	rm -rf bin
