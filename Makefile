# The two commands of the README come first; everything else after them.
.PHONY: dev test lint fmt release bench fuzz e2e lambda-functions

# This file's folder: `sam build` runs it from other folders too.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

## Run the whole local stack and serve the API on http://127.0.0.1:3000 (PORT overrides).
dev:
	@bash local/dev.sh

## Start PostgreSQL and moto on free ports and run every test.
test:
	@bash local/test.sh $(ARGS)

## Formatting, clippy and `sam validate --lint`, as CI checks them.
lint:
	@bash local/lint.sh

fmt:
	cargo fmt --all

## Every function's arm64 release zip, with sizes (cargo-lambda + zig, no Docker).
release:
	@bash local/release.sh

## Latency, CPU, throughput, memory, start-up and size against a throwaway local stack.
bench:
	@bash local/bench.sh

## Soak: the property tests with FUZZ_CASES per property (default 1,000,000) and schemathesis
## with FUZZ_EXAMPLES per operation (default 2,000) against a throwaway stack.
fuzz:
	@FUZZ_CASES=$${FUZZ_CASES:-1000000} bash local/test.sh -p shared --test properties
	@FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} bash local/test.sh -p integration-tests -- openapi::schemathesis

## Opt-in end to end: the real Claude Code CLI (npm, pinned) offline against a stand-in model API,
## its HTTP hooks and OTLP export sent to the local stack; then checks what landed. Not in `make test`.
e2e:
	@bash local/e2e.sh

## `sam build` (every function's `BuildMethod: makefile`): one cargo run builds every function's
## arm64 release binary, then each function's `build-<LogicalId>` only copies its own `bootstrap`
## into SAM's ARTIFACTS_DIR. A second function's cargo run finds everything fresh in seconds.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(ROOT)/target)

lambda-functions:
	cd "$(ROOT)" && PATH="$(ROOT)/.local/venv/bin:$$PATH" cargo lambda build --release --arm64 \
	  $(addprefix --package ,$(notdir $(wildcard $(ROOT)/functions/*)))

# A function's crate from its logical id, e.g. LiveConnectionFunction -> live-connection (the
# template test checks that every function's `BuildProperties.Binary` follows this).
kebab = $(shell printf '%s' '$(1)' | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr '[:upper:]' '[:lower:]')

build-%Function: lambda-functions
	cp "$(TARGET_DIR)/lambda/$(call kebab,$*)/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"
