#!/usr/bin/env bash
# One command on a fresh machine: install what is missing, then build and run the whole
# test suite once (unit, integration with real WebRTC peers, headless Chromium, catalog
# tests on SQLite and on a local PostgreSQL that deps.sh installs and starts when missing,
# and `systemd-analyze verify` of the shipped unit in tests/deploy.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
FEIYAN_WANT_CHROMIUM=1 FEIYAN_WANT_POSTGRES=1 FEIYAN_WANT_SYSTEMD=1 ./scripts/deps.sh
if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
export RUST_BACKTRACE=1
cargo nextest run --no-fail-fast --test-threads 2 "$@"
