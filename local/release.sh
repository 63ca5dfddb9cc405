#!/usr/bin/env bash
# `make release`: every function's arm64 release zip (target/lambda/<function>/bootstrap.zip),
# cross-compiled by cargo-lambda with zig, and each zip's size.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_venv
export PATH="$VENV/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu

functions=()
for manifest in functions/*/Cargo.toml; do
  functions+=("$(basename "$(dirname "$manifest")")")
done
packages=()
for f in "${functions[@]}"; do packages+=(--package "$f"); done

log "building ${#functions[@]} functions (release, arm64)"
start=$(date +%s)
cargo lambda build --release --arm64 --output-format zip "${packages[@]}"
log "built in $(( $(date +%s) - start )) s"

printf '\n%-20s %12s %12s\n' function "zip bytes" "binary bytes"
for f in "${functions[@]}"; do
  zip="target/lambda/$f/bootstrap.zip"
  binary_size=$(python3 -c "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo('bootstrap').file_size)" "$zip")
  printf '%-20s %12s %12s\n' "$f" "$(stat -c %s "$zip")" "$binary_size"
done
