#!/usr/bin/env bash
# The test suite: formatting, lints, unit and property tests, integration
# tests on SQLite and again on PostgreSQL, and the reliability drills.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
pg_url=${CREDGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}

step() { printf '\n==> %s\n' "$*"; }

step "PostgreSQL at $pg_url"
scripts/ensure-postgres.sh "$pg_url"

step "cargo fmt --check"
cargo fmt --all -- --check

step "documentation cites only what exists (paths, tests, links)"
python3 scripts/check-docs.py

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "rustdoc -D warnings (intra-doc links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "tests on SQLite (unit, property, integration)"
env -u CREDGATE_TEST_DATABASE_URL cargo test --workspace --all-targets

step "integration tests on PostgreSQL"
CREDGATE_TEST_DATABASE_URL="$pg_url" cargo test --tests

step "reliability drills (ignored by default: kill -9, slow clients, fail-closed)"
env -u CREDGATE_TEST_DATABASE_URL cargo test --tests -- --ignored

step "TLS scan (sslyze; installs into target/sslyze-venv on first run)"
CREDGATE_BIN=target/debug/credgate scripts/tls-scan.sh

step "API contract (OpenAPI 3.1 validator, schemathesis per role; installs into target/schemathesis-venv on first run)"
CREDGATE_BIN=target/debug/credgate scripts/schemathesis.sh

step "auditor console in headless Chromium (Debian chromium + playwright-core from npm; installed on first run)"
scripts/ensure-browser.sh && CREDGATE_BIN=target/debug/credgate node tests/console/browser.mjs

step "all tests passed"
