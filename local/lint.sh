#!/usr/bin/env bash
# `make lint`: formatting, clippy with warnings as errors, and `sam validate --lint`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_venv
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "sam validate --lint"
SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" validate --lint --region us-east-1 --template-file template.yaml
