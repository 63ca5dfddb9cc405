#!/usr/bin/env bash
# `make dev`: the whole local stack, then the API on http://127.0.0.1:${PORT:-3000}.
# Installs what is missing, reuses what is already there, and on Ctrl-C stops what it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${PORT:-3000}
PG_PORT=${DEV_PG_PORT:-55432}
MOTO_PORT=${DEV_MOTO_PORT:-55500}
STATE="$LOCAL_DIR/dev"
mkdir -p "$STATE"

ensure_postgres
ensure_venv

started_pg=""
started_moto=""
front_pid=""
cleanup() {
  trap - INT TERM EXIT
  set +e
  if [ -n "$front_pid" ]; then kill "$front_pid" 2>/dev/null; wait "$front_pid" 2>/dev/null; fi
  if [ -n "$started_moto" ]; then log "stopping moto"; kill "$started_moto" 2>/dev/null || true; fi
  if [ -n "$started_pg" ]; then log "stopping PostgreSQL"; "$ROOT/local/pg.sh" stop "$started_pg" || true; fi
}
trap cleanup INT TERM EXIT

PG_DIR=$(pg_data_dir dev-pg)
if "$ROOT/local/pg.sh" status "$PG_DIR"; then
  log "PostgreSQL already running on port $PG_PORT (reusing it)"
else
  port_open "$PG_PORT" && die "port $PG_PORT is taken by another program; set DEV_PG_PORT"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (data in $PG_DIR)"
  # Durable by default: a 201 must survive a crash of PostgreSQL (synchronous_commit stays on).
  "$ROOT/local/pg.sh" start "$PG_DIR" "$PG_PORT"
  started_pg="$PG_DIR"
fi
if ! "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'metrics'" postgres | grep -q 1; then
  "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE metrics" postgres
fi

if port_open "$MOTO_PORT"; then
  curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 \
    || die "port $MOTO_PORT is taken by something that is not moto; set DEV_MOTO_PORT"
  log "moto already running on port $MOTO_PORT (reusing it)"
else
  log "starting moto (DynamoDB + SQS) on 127.0.0.1:$MOTO_PORT"
  started_moto=$(start_moto "$MOTO_PORT" "$STATE/moto.log")
fi

{
  echo "# Written by make dev: the local stack's settings. Use with: set -a; . .local/stack.env; set +a"
  echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/metrics"
  echo "JWT_SECRET=${JWT_SECRET:-local-dev-secret}"
  # The local stage: the only one that accepts the public development secret (also when a
  # binary runs under `cargo lambda watch`, which sets AWS_LAMBDA_FUNCTION_NAME).
  echo "STAGE=local"
  aws_local_env "http://127.0.0.1:$MOTO_PORT"
  echo "RATE_LIMIT_TABLE_NAME=metrics-rate-limits-local"
  echo "API_KEYS_TABLE_NAME=metrics-api-keys-local"
  echo "BATCH_QUEUE_URL=http://127.0.0.1:$MOTO_PORT/123456789012/metrics-batch-local"
  echo "DEAD_LETTER_QUEUE_URL=http://127.0.0.1:$MOTO_PORT/123456789012/metrics-batch-local-dlq"
  echo "CONNECTIONS_TABLE_NAME=metrics-live-connections-local"
  # The local front is the WebSocket API's management endpoint.
  echo "LIVE_UPDATES_ENDPOINT=http://127.0.0.1:$PORT"
  echo "PORT=$PORT"
  # Alerts may be tried against a receiver on this machine (http://127.0.0.1:9099/...).
  echo "WEBHOOK_ALLOW_LOOPBACK=true"
  # Other origins whose pages may read the API (CORS); none unless set when starting make dev.
  [ -n "${ALLOWED_ORIGINS:-}" ] && echo "ALLOWED_ORIGINS=$ALLOWED_ORIGINS"
} >"$LOCAL_DIR/stack.env"
set -a
# shellcheck disable=SC1091
. "$LOCAL_DIR/stack.env"
set +a

log "building the local front"
cargo build --quiet -p local-front
FRONT="$ROOT/target/debug/local-front"
port_open "$PORT" && die "port $PORT is taken; set PORT"
"$FRONT" serve &
front_pid=$!
until port_open "$PORT"; do
  kill -0 "$front_pid" 2>/dev/null || die "the local front did not start (see above)"
  sleep 0.2
done

TOKEN=$("$FRONT" token --org demo --user dev-user --hours 24)
DASHBOARD_TOKEN=$("$FRONT" token --org demo --user dev-admin --role admin --hours 24)
cat <<MSG

Local stack ready. Settings: .local/stack.env
API: http://127.0.0.1:$PORT   (routes of template.yaml)
Live updates: ws://127.0.0.1:$PORT/live?token=\$METRICS_TOKEN   (metric_update messages of your organization)
Dashboard (signed in as demo's admin dev-admin for 24 h; the token stays in the tab, see docs/dashboard.md):

  http://127.0.0.1:$PORT/dashboard#token=$DASHBOARD_TOKEN

Dev token (org "demo", user "dev-user", 24 h; another: target/debug/local-front token --org ORG --user USER [--role admin]):

  export METRICS_TOKEN=$TOKEN

An API key instead (what hooks and OTLP use; shown once, revocable; --role admin to manage keys):

  export METRICS_TOKEN=\$(set -a; . .local/stack.env; set +a; target/debug/local-front key create --org demo --user dev-user --name laptop)

  curl -sS -X POST http://127.0.0.1:$PORT/api/v1/metrics/command-execution \\
    -H "Authorization: Bearer \$METRICS_TOKEN" -H 'Content-Type: application/json' \\
    -d '{"command_name":"claude_code_generate","execution_time_ms":1250,"status":"success","command_args":{"language":"typescript"},"context":{"project_type":"web_service"}}'

Ctrl-C stops what this command started.
MSG

wait "$front_pid"
