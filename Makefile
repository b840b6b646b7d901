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
#   make deb     ecto-tunnel_VERSION_ARCH.deb: the release binary with the Swift runtime linked in, units,
#                man page, completions, docs (scripts/deb.sh; Version from Sources/EctoPlatform/Version.swift)
#   make install PREFIX=~/.local   the same files without a package, no root for a PREFIX you own
#                (DESTDIR= stages them); make uninstall PREFIX=... removes them (scripts/install.sh)
#   make units   re-renders units/ from Sources/EctoOperator/UnitTemplates.swift (their one source)
#   make format        rewrites Sources/, Tests/ and Package.swift with swift-format (.swift-format: 4 spaces,
#                      120 columns, as swift-nio keeps one); make format-check fails on any difference (CI runs it)

SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT ?= swift
CONFIGURATION ?= debug
# Tests start real sshd instances and bulk transfers; run one at a time (Swift Testing would
# otherwise run them in parallel inside the test process).
SWIFT_TEST_FLAGS ?= --no-parallel

.PHONY: all deps build test test-deb demo man completions bench bench-build clean dist-build deb install uninstall units format format-check

all: build

deps:
	@./scripts/install-deps.sh

# Extra flags for release builds (and the bench build). --static-swift-stdlib links the Swift runtime
# and FoundationEssentials in: 3 MiB less idle RSS, but crash and SIGABRT backtraces then need
# swift-backtrace-static (docs/performance.md, "Memory"). Off by default here; `make deb` and
# `make install` always link it in and ship that backtracer (docs/packaging.md).
RELEASE_FLAGS ?=

build:
	$(SWIFT) build -c $(CONFIGURATION) $(if $(filter release,$(CONFIGURATION)),$(RELEASE_FLAGS))

# The package tests (Tests/IntegrationTests/PackageTests.swift) run against the .deb that `deb`
# builds; they install it with apt-get, run it without the toolchain, and purge it.
test: deps
	$(SWIFT) build --build-tests
	$(MAKE) --no-print-directory deb
	ECTO_TEST_DEB=$(abspath $(DEB)) $(SWIFT) test --skip-build $(SWIFT_TEST_FLAGS)

# Only the package tests (after `make deb`).
test-deb: deb
	$(SWIFT) build --build-tests
	ECTO_TEST_DEB=$(abspath $(DEB)) $(SWIFT) test --skip-build $(SWIFT_TEST_FLAGS) --filter PackageTests

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

# Distribution: a release build with the Swift runtime linked in (no toolchain needed where it
# runs), in its own scratch path so that it never disturbs the debug build; built once, reused by
# deb, install and the package tests. The man page comes from the same generator as `make man`
# (swift-argument-parser's generate-manual), run on this binary, dated by debian/changelog.
DIST_SCRATCH ?= .build-dist
DIST_FLAGS = -c release --static-swift-stdlib --scratch-path $(DIST_SCRATCH)
DIST_BIN = $(DIST_SCRATCH)/release/ecto-tunnel
DIST_MAN = $(DIST_SCRATCH)/man/ecto-tunnel.1
SWIFT_BACKTRACER ?= $(dir $(shell command -v $(SWIFT) 2>/dev/null || echo /opt/swift/usr/bin/swift))../libexec/swift/linux/swift-backtrace-static
VERSION = $(shell scripts/version.sh)
DEB = ecto-tunnel_$(VERSION)_$(shell dpkg --print-architecture).deb
PREFIX ?= /usr/local
# `make install PREFIX=~/.local` from a shell that leaves ~ after = alone (zsh): expand it here.
override PREFIX := $(patsubst ~/%,$(HOME)/%,$(PREFIX))
DESTDIR ?=

dist-build:
	$(SWIFT) build $(DIST_FLAGS) --product ecto-tunnel
	$(SWIFT) build $(DIST_FLAGS) --product generate-manual
	mkdir -p $(dir $(DIST_MAN))
	$(DIST_SCRATCH)/release/generate-manual $(DIST_BIN) --output-directory $(dir $(DIST_MAN)) \
	    --date $$(date -u -d @$$(dpkg-parsechangelog -l debian/changelog -S Timestamp) +%Y-%m-%d)

deb: dist-build
	./scripts/deb.sh --bin $(DIST_BIN) --man $(DIST_MAN) --backtracer $(SWIFT_BACKTRACER)

# PREFIX=~/.local: ~/.local/bin/ecto-tunnel, units in ~/.local/share/systemd/user (a user manager
# reads them), man page, completions; then `ecto-tunnel install` enables that unit.
install: dist-build
	./scripts/install.sh --bin $(DIST_BIN) --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR)) \
	    --man $(DIST_MAN) --backtracer $(SWIFT_BACKTRACER) --strip

uninstall:
	./scripts/install.sh --uninstall --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR))

SWIFT_FORMAT ?= swift-format
FORMAT_PATHS = Sources Tests Package.swift

format:
	$(SWIFT_FORMAT) format --configuration .swift-format --in-place --recursive --parallel $(FORMAT_PATHS)

format-check:
	$(SWIFT_FORMAT) lint --configuration .swift-format --strict --recursive --parallel $(FORMAT_PATHS)

units: build
	for unit in ecto-tunnel.service ecto-tunnel@.service; do \
	    .build/$(CONFIGURATION)/ecto-tunnel unit-file $$unit > units/$$unit; done

clean:
	$(SWIFT) package clean
	rm -rf $(DIST_SCRATCH)
