#!/usr/bin/env bash
# A throwaway PostgreSQL cluster in a folder, on 127.0.0.1 only, run as a non-root user.
#   pg.sh start DIR PORT   initdb if needed, then start (waits until ready)
#   pg.sh stop DIR         fast shutdown
#   pg.sh kill DIR         immediate shutdown (as in a crash)
#   pg.sh status DIR       exit 0 when running
# Used by dev.sh and test.sh, and by the tests that stop and restart a database.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd=${1:?usage: pg.sh start|stop|kill|status DIR [PORT]}
dir=${2:?usage: pg.sh start|stop|kill|status DIR [PORT]}
ensure_postgres
mkdir -p "$(dirname "$dir")"
dir="$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")"
# The server's user may not be able to read the caller's working directory.
cd /

case "$cmd" in
  start)
    port=${3:?pg.sh start needs a PORT}
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      if [ "$(id -u)" = 0 ]; then pg_as_owner true; chown postgres "$dir"; fi
      chmod 700 "$dir"
      pg_as_owner "$PG_BIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 --no-sync >/dev/null
    fi
    if pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then exit 0; fi
    # No Unix socket: the folder's path may be too long for one, and TCP is all we use.
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' ${PG_EXTRA_OPTIONS:-}" \
      start >/dev/null || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    ;;
  stop) pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null ;;
  kill) pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null ;;
  status) pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1 ;;
  *) die "unknown command $cmd" ;;
esac
