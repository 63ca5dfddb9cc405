#!/usr/bin/env bash
# `make test`: starts its own PostgreSQL and moto on free ports (beside any `make dev`), runs
# every test of the workspace against them, and removes them afterwards.
# Extra arguments go to `cargo test` (e.g. `make test ARGS="-p shared"`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_postgres
ensure_venv

RUN_DIR=$(pg_data_dir "test-$$")
PG_DIR="$RUN_DIR/pg"
PG_PORT=$(free_port)
MOTO_PORT=$(free_port)
moto_pid=""
cleanup() {
  trap - INT TERM EXIT
  set +e
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null
  "$ROOT/local/pg.sh" stop "$PG_DIR" 2>/dev/null || true
  rm -rf "$RUN_DIR"
}
trap cleanup INT TERM EXIT
mkdir -p "$RUN_DIR"

log "starting PostgreSQL on 127.0.0.1:$PG_PORT and moto on 127.0.0.1:$MOTO_PORT"
PG_EXTRA_OPTIONS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
  "$ROOT/local/pg.sh" start "$PG_DIR" "$PG_PORT"
moto_pid=$(start_moto "$MOTO_PORT" "$RUN_DIR/moto.log")

set -a
eval "$(aws_local_env "http://127.0.0.1:$MOTO_PORT")"
set +a
# Each test makes its own database from this server, and its own DynamoDB table and queues.
export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export TEST_SCRATCH_DIR="$RUN_DIR"

log "running the tests"
cargo test --workspace "$@"
