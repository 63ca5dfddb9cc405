# Shared by dev.sh, test.sh and pg.sh: finding or installing what the local stack needs.
# Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL_DIR="$ROOT/.local"
VENV="$LOCAL_DIR/venv"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Newest PostgreSQL server binaries from the Debian packages.
pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

ensure_postgres() {
  if PG_BIN=$(pg_bindir); then export PG_BIN; return 0; fi
  log "installing PostgreSQL (Debian package postgresql)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(pg_bindir) || die "PostgreSQL server binaries not found after installing the package"
  export PG_BIN
}

# Debian's Chromium and its WebDriver, for the dashboard's browser test (no browser download:
# the packages only). Without them that test fails under CI and explains itself elsewhere.
ensure_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return 0; fi
  log "installing Chromium and ChromeDriver (Debian packages chromium, chromium-driver) for the dashboard test"
  if ! { as_root apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    [ -n "${CI:-}" ] && die "could not install chromium and chromium-driver"
    log "could not install Chromium: the dashboard's browser test will say it did not run"
  fi
}

# PostgreSQL refuses to run as root: as root, its commands run as the postgres user.
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A folder for a PostgreSQL cluster: under .local/ when the server's user can reach it,
# else under /tmp (a checkout inside /root is not reachable by the postgres user).
pg_data_dir() {
  local name=$1 dir="$LOCAL_DIR/$1"
  mkdir -p "$LOCAL_DIR"
  if [ "$(id -u)" = 0 ] && ! pg_as_owner test -x "$LOCAL_DIR" 2>/dev/null; then
    dir="/tmp/metrics-collection-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)/$name"
  fi
  echo "$dir"
}

ensure_venv() {
  local stamp="$VENV/.requirements" wanted
  wanted=$(cat "$ROOT/local/requirements.txt")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then return 0; fi
  log "installing moto, cargo-lambda and schemathesis into .local/venv (once)"
  command -v python3 >/dev/null || die "python3 is required"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/local/requirements.txt"
  printf '%s' "$wanted" >"$stamp"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_port() {
  local port=$1 what=$2 tries=0
  until port_open "$port"; do
    tries=$((tries + 1))
    [ $tries -le 300 ] || die "$what did not open port $port within 30 s"
    sleep 0.1
  done
}

# Starts the moto server (DynamoDB + SQS) on 127.0.0.1:$1 in the background, logging to $2;
# prints its pid.
start_moto() {
  local port=$1 logfile=$2
  "$VENV/bin/python" "$ROOT/local/moto_server.py" 127.0.0.1 "$port" >"$logfile" 2>&1 &
  local pid=$!
  wait_for_port "$port" "moto"
  echo "$pid"
}

# Dummy credentials and a region: the AWS SDK needs them, moto ignores them.
aws_local_env() {
  local endpoint=$1
  cat <<ENV
AWS_ENDPOINT_URL=$endpoint
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
ENV
}

# Starts a throwaway PostgreSQL and a moto server on free ports under a new run folder, and
# stops and removes them when the calling script exits. Exports the AWS variables for moto,
# STACK_DATABASE_URL (the server's `postgres` database) and STACK_RUN_DIR.
start_throwaway_stack() {
  local name=$1
  STACK_RUN_DIR=$(pg_data_dir "$name-$$")
  STACK_PG_DIR="$STACK_RUN_DIR/pg"
  local pg_port moto_port
  pg_port=$(free_port)
  moto_port=$(free_port)
  STACK_MOTO_PID=""
  trap stop_throwaway_stack INT TERM EXIT
  mkdir -p "$STACK_RUN_DIR"
  log "starting PostgreSQL on 127.0.0.1:$pg_port and moto on 127.0.0.1:$moto_port"
  # STACK_CPUS (e.g. "1") pins PostgreSQL and moto to those CPUs, away from a benchmark.
  local pin=()
  [ -n "${STACK_CPUS:-}" ] && pin=(taskset -c "$STACK_CPUS")
  # Commits are synchronous (an acknowledged write survives PostgreSQL crashing, as the fault
  # tests prove); for tests, only what protects against the machine itself crashing (fsync, full
  # pages) is off, for speed. STACK_PG_DURABLE=1 (the benchmark) keeps the server's durable
  # defaults, as a managed PostgreSQL runs.
  local options="-c max_connections=400"
  [ -z "${STACK_PG_DURABLE:-}" ] && options="-c fsync=off -c full_page_writes=off $options"
  PG_EXTRA_OPTIONS="$options" "${pin[@]}" "$ROOT/local/pg.sh" start "$STACK_PG_DIR" "$pg_port"
  STACK_MOTO_PID=$("${pin[@]}" bash -c "$(declare -f log die wait_for_port port_open start_moto); VENV='$VENV' ROOT='$ROOT' start_moto $moto_port '$STACK_RUN_DIR/moto.log'")
  set -a
  eval "$(aws_local_env "http://127.0.0.1:$moto_port")"
  set +a
  export STACK_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
  export STACK_RUN_DIR
}

stop_throwaway_stack() {
  trap - INT TERM EXIT
  set +e
  [ -n "${STACK_MOTO_PID:-}" ] && kill "$STACK_MOTO_PID" 2>/dev/null
  "$ROOT/local/pg.sh" stop "$STACK_PG_DIR" 2>/dev/null
  rm -rf "$STACK_RUN_DIR"
}
