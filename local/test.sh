#!/usr/bin/env bash
# `make test`: starts its own PostgreSQL and moto on free ports (beside any `make dev`), runs
# every test of the workspace against them, and removes them afterwards.
# Extra arguments go to `cargo test` (e.g. `make test ARGS="-p shared"`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_postgres
ensure_venv
# Only runs that include the integration tests need a browser.
case " $* " in
  *" -p "* | *" --package "* | *" -p="* | *" --package="*)
    case " $* " in *integration-tests*) ensure_chromium ;; esac ;;
  *) ensure_chromium ;;
esac
start_throwaway_stack test

# Each test makes its own database from this server, and its own DynamoDB table and queues.
export TEST_DATABASE_URL="$STACK_DATABASE_URL"
export TEST_SCRATCH_DIR="$STACK_RUN_DIR"

log "running the tests"
# With `-p`/`--package` the arguments choose the crates (cargo ignores `-p` beside --workspace).
case " $* " in
  *" -p "* | *" --package "* | *" -p="* | *" --package="*) cargo test "$@" ;;
  *) cargo test --workspace "$@" ;;
esac
