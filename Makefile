# ecto-tunnel. `make test` is what CI runs (.ci/run).
#   make deps    install the Debian packages the build, tests and demo need (scripts/install-deps.sh)
#   make build   build everything (CONFIGURATION=release for an optimized build)
#   make test    deps, then build, then run all tests, one at a time
#   make demo    a throwaway sshd + the daemon forwarding one request (scripts/demo.sh)

SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT ?= swift
CONFIGURATION ?= debug
# Tests start real sshd instances and bulk transfers; run one at a time (Swift Testing would
# otherwise run them in parallel inside the test process).
SWIFT_TEST_FLAGS ?= --no-parallel

.PHONY: all deps build test demo clean

all: build

deps:
	@./scripts/install-deps.sh

build:
	$(SWIFT) build -c $(CONFIGURATION)

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build $(SWIFT_TEST_FLAGS)

demo: deps
	./scripts/demo.sh

clean:
	$(SWIFT) package clean
