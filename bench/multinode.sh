#!/usr/bin/env bash
# One credgate node against two on one PostgreSQL database, same machine.
#
#   bash bench/multinode.sh        # DURATION=6 CONC=128 by default
#   CREDGATE_BIN=/path/to/credgate bash bench/multinode.sh   # no build
#
# Builds the release binary, creates a fresh database `credgate_bench` on
# the local PostgreSQL (CREDGATE_BENCH_PG, default
# postgres://postgres@127.0.0.1:5432), seeds it, and drives the same query
# as bench/run.sh with oha: first CONC connections against one node, then
# CONC/2 against each of two nodes at once (two oha processes). Prints the
# request rate of each run and the sum, and the audit batches per node.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dur=${DURATION:-6}
conc=${CONC:-128}
pg=${CREDGATE_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
work=${BENCH_DIR:-$(mktemp -d /tmp/credgate-multinode.XXXXXX)}
command -v oha >/dev/null || cargo install oha --locked
# CREDGATE_BIN: an already built binary (e.g. to compare two commits);
# otherwise the release build, in CARGO_TARGET_DIR if set.
if [ -n "${CREDGATE_BIN:-}" ]; then
  bin=$CREDGATE_BIN
else
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-$root/target}/release/credgate
fi
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS credgate_bench" >/dev/null
psql "$pg/postgres" -qc "CREATE DATABASE credgate_bench" >/dev/null
"$bin" quickstart --certs "$work/certs" --data "$work/data" --policies "$root/policies" \
  --listen 127.0.0.1:18543 --admin-listen 127.0.0.1:19190 --no-serve >/dev/null
base=$work/data/credgate.toml
# Node configs: the quickstart's, on PostgreSQL, with their own ports and ids.
node_config() { # n port admin
  sed -e "s|^url = .*|url = \"$pg/credgate_bench\"|" \
      -e "s|^listen = .*|listen = \"127.0.0.1:$2\"|" \
      -e "s|^admin_listen = .*|admin_listen = \"127.0.0.1:$3\"|" \
      -e "s|^gateway_id = .*|gateway_id = \"credgate-dev\"\nnode_id = \"node-$1\"|" \
      "$base" > "$work/data/node$1.toml"
}
node_config 1 18543 19190
node_config 2 18544 19191
"$bin" seed --config "$work/data/node1.toml" --subjects 2000 >/dev/null 2>&1

start() { # n admin
  RUST_LOG=warn "$bin" serve --config "$work/data/node$1.toml" > "$work/node$1.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && return; sleep 0.1; done
  echo "node $1 did not become ready" >&2; cat "$work/node$1.log" >&2; exit 1
}
c=$work/certs
tls=(--cacert "$c/ca.pem" --cert "$c/bank.pem" --key "$c/bank-key.pem")
body='{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":["enterprise_name","business_status","registered_capital","penalty_content","penalty_date","tax_paid_annual"]}'
load() { # port conc out
  oha --no-tui -z "${dur}s" -c "$2" -m POST -H 'content-type: application/json' -d "$body" \
    "${tls[@]}" --output-format json "https://localhost:$1/v1/query" > "$3" 2>/dev/null
}
rate() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['summary']['requestsPerSec']:.0f} req/s, p99 {d['latencyPercentiles']['p99']*1000:.1f} ms, codes {d['statusCodeDistribution']}\")" "$1"; }
rps() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['summary']['requestsPerSec'])" "$1"; }
# Entries and batches so far, and the mean group commit (one PostgreSQL
# transaction, tree-head lock included).
batches() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '
    /^credgate_audit_(entries|batches)_total/ {printf "%s=%s ", $1, $2}
    /^credgate_audit_commit_duration_seconds_sum/ {s=$2}
    /^credgate_audit_commit_duration_seconds_count/ {n=$2}
    END {if (n > 0) printf "commit mean %.2f ms", 1000 * s / n}'
}
# Rows and blocks (heap + TOAST, hit or read) of the log tables since the
# database was created: what the batches wrote and read.
tables() {
  psql "$pg/credgate_bench" -Atc "SELECT s.relname || ': ' || n_tup_ins || ' ins, ' || n_tup_upd || ' upd, ' || n_tup_del || ' del, ' ||
    (coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0) + coalesce(toast_blks_hit, 0) + coalesce(toast_blks_read, 0)) || ' blocks'
    FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid)
    WHERE s.relname LIKE 'tlog%' ORDER BY 1" | sed 's/^/  /'
}

echo "binary: $bin; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start 1 19190
load 18543 "$conc" "$work/one.json"
echo "one node, c=$conc: $(rate "$work/one.json")"
echo "  node 1: $(batches 19190)"
start 2 19191
load 18543 $((conc / 2)) "$work/two-a.json" & a=$!
load 18544 $((conc / 2)) "$work/two-b.json" & b=$!
wait "$a" "$b"
echo "two nodes, c=$((conc / 2)) each: $(rate "$work/two-a.json") | $(rate "$work/two-b.json")"
sum=$(echo "$(rps "$work/two-a.json") + $(rps "$work/two-b.json")" | bc)
printf 'two nodes, sum: %.0f req/s (one node: %.0f)\n' "$sum" "$(rps "$work/one.json")"
echo "  node 1: $(batches 19190)"
echo "  node 2: $(batches 19191)"
sleep 1.5
echo "log tables (seed, one node, two nodes):"
tables
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw results: $work"
