#!/usr/bin/env bash
# `make bench`: release builds, a throwaway PostgreSQL and moto, then every measurement of
# tools/bench in one run. The table goes to the terminal, the figures to .local/bench/results.json.
# BENCH_SCALE=0.2 makes a quick run; BENCH_SKIP_ZIPS=1 skips the arm64 zips (sizes then missing);
# BENCH_FAST_DATABASE=1 runs PostgreSQL without fsync (not durable: figures of another system).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_postgres
ensure_venv
if [ -z "${BENCH_SKIP_ZIPS:-}" ]; then
  bash "$ROOT/local/release.sh"
fi

packages=(--package metrics-bench)
# The functions' own binaries are only needed to run them (the functions and cost sections).
sections=",${BENCH_SECTIONS:-functions,cost},"
if [[ $sections == *",functions,"* || $sections == *",cost,"* ]]; then
  for manifest in functions/*/Cargo.toml; do
    packages+=(--package "$(basename "$(dirname "$manifest")")")
  done
fi
log "building the benchmark and the functions (release, this machine's architecture)"
cargo build --release --quiet "${packages[@]}"

# PostgreSQL and moto on the last CPU, the benchmark on the first, so that the emulators' work
# does not land on the measured thread (on a one-CPU machine nothing is pinned).
cpus=$(nproc)
if [ "$cpus" -ge 2 ]; then export STACK_CPUS=$((cpus - 1)); pin=(taskset -c 0); else pin=(); fi
# PostgreSQL with its durable defaults (fsync, full-page writes, synchronous commits), as a
# managed server runs; BENCH_FAST_DATABASE=1 turns fsync and full-page writes off for a quick
# look, and the report says so.
[ -z "${BENCH_FAST_DATABASE:-}" ] && export STACK_PG_DURABLE=1
start_throwaway_stack bench
export BENCH_DATABASE_URL="$STACK_DATABASE_URL"
export BENCH_RELEASE_DIR="$ROOT/target/release"
export BENCH_ZIP_DIR="$ROOT/target/lambda"
export BENCH_OUTPUT="${BENCH_OUTPUT:-$ROOT/.local/bench/results.json}"
export RUST_LOG=warn
# stdout carries the service's own log and metric lines; the report is on stderr.
"${pin[@]}" "$ROOT/target/release/metrics-bench" >/dev/null
