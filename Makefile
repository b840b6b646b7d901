# ecto-tunnel. `make test` is what CI runs (.ci/run).
#   make deps    install the Debian packages the build, tests and demo need (scripts/install-deps.sh)
#   make build   build everything (CONFIGURATION=release for an optimized build; add
#                RELEASE_FLAGS=--static-swift-stdlib for 3 MiB less resident memory, see docs/performance.md)
#   make test    deps, then build, then run all tests, one at a time
#   make demo    a throwaway sshd + the daemon forwarding one request (scripts/demo.sh)
#   make man     the man page, generated from the command definitions by swift-argument-parser's
#                GenerateManual plugin (offline; builds the product in release mode first):
#                .build/plugins/GenerateManual/outputs/EctoTunnelCLI/ecto-tunnel.1
#   make completions   install shell completions + man page for this user (scripts/install-completions.sh)
#   make bench   builds release ecto-tunnel + bench/c tools, runs bench/run.py (BENCH_ARGS=--quick; docs/performance.md)

SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT ?= swift
CONFIGURATION ?= debug
# Tests start real sshd instances and bulk transfers; run one at a time (Swift Testing would
# otherwise run them in parallel inside the test process).
SWIFT_TEST_FLAGS ?= --no-parallel

.PHONY: all deps build test demo man completions bench bench-build clean

all: build

deps:
	@./scripts/install-deps.sh

# Extra flags for release builds (and the bench build). --static-swift-stdlib links the Swift runtime
# and FoundationEssentials in: 3 MiB less idle RSS, but crash and SIGABRT backtraces then need
# swift-backtrace-static (docs/performance.md, "Memory"). Off by default.
RELEASE_FLAGS ?=

build:
	$(SWIFT) build -c $(CONFIGURATION) $(if $(filter release,$(CONFIGURATION)),$(RELEASE_FLAGS))

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build $(SWIFT_TEST_FLAGS)

demo: deps
	./scripts/demo.sh

man:
	$(SWIFT) package --disable-sandbox plugin generate-manual
	@echo "man page: .build/plugins/GenerateManual/outputs/EctoTunnelCLI/ecto-tunnel.1 (view: man -l that-file)"

completions: build
	./scripts/install-completions.sh --bin .build/$(CONFIGURATION)/ecto-tunnel

# The benchmark (docs/performance.md). Its own scratch path, so it never disturbs the debug build.
BENCH_SCRATCH ?= .build-bench
BENCH_ARGS ?=
BENCH_CFLAGS ?= -O2 -g -Wall -Wextra

bench-build:
	$(SWIFT) build -c release $(RELEASE_FLAGS) --scratch-path $(BENCH_SCRATCH) --product ecto-tunnel
	mkdir -p $(BENCH_SCRATCH)/c
	gcc $(BENCH_CFLAGS) -o $(BENCH_SCRATCH)/c/loadgen bench/c/loadgen.c -lpthread
	gcc $(BENCH_CFLAGS) -o $(BENCH_SCRATCH)/c/bareforward bench/c/bareforward.c -lssh2

bench: bench-build
	python3 bench/run.py $(BENCH_ARGS)

clean:
	$(SWIFT) package clean
