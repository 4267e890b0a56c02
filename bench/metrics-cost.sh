#!/usr/bin/env bash
# Per-request cost of the metrics recording (src/metrics/hot.rs), compiled
# on its own with optimisations: no cargo build, no dependencies.
# Usage: bash bench/metrics-cost.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rustc --edition 2024 -C opt-level=3 -o "$out/metrics-cost" bench/metrics-cost.rs
"$out/metrics-cost" "${1:-50}"
