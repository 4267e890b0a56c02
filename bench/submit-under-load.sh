#!/usr/bin/env bash
# How long a department's submission waits while banks' queries load the
# gateway: the write path's latency under read load (on SQLite, writers
# share one write lock with the search indexer).
#
#   bash bench/submit-under-load.sh [BIN]
#
# Starts the gateway (SQLite, the bench's synthetic subjects), runs `oha`
# with CONC (default 1000) concurrent keep-alive queries for 14 s, and from
# the third second on posts SUBMISSIONS (default 40) one-record submissions
# with the department's certificate, one every 200 ms. Prints the query
# rate, the submissions' p50, p90 and maximum latency and status codes, and
# how many "slow statement" warnings (over 1 s) the gateway logged.
# BIN defaults to the release build (built if missing). Needs oha
# (crates.io; installed if missing, like bench/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${1:-${CARGO_TARGET_DIR:-$root/target}/release/credgate}
conc=${CONC:-1000}
n=${SUBMISSIONS:-40}
work=$(mktemp -d /tmp/credgate-submit.XXXXXX)
port=38443
admin=39090

command -v oha >/dev/null 2>&1 || cargo install oha --locked
if [ ! -x "$bin" ]; then
  echo "submit-under-load: building credgate (release)" >&2
  cargo build --release --quiet
fi
"$bin" quickstart --certs "$work/certs" --data "$work/data" --policies "$root/policies" \
  --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin --no-serve >/dev/null 2>&1
"$bin" seed --config "$work/data/credgate.toml" --subjects 10000 >/dev/null 2>&1
RUST_LOG=warn "$bin" serve --config "$work/data/credgate.toml" 2>"$work/gateway.log" &
gp=$!
trap 'kill $gp 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done

c=$work/certs
body='{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":["enterprise_name","business_status","registered_capital","penalty_content","penalty_date","tax_paid_annual"]}'
oha --no-tui --cacert "$c/ca.pem" --cert "$c/bank.pem" --key "$c/bank-key.pem" -m POST \
  -H 'content-type: application/json' -d "$body" -z 14s -c "$conc" \
  "https://localhost:$port/v1/query" >"$work/oha.txt" &
op=$!
sleep 3
for i in $(seq 1 "$n"); do
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --cacert "$c/ca.pem" \
    --cert "$c/department.pem" --key "$c/department-key.pem" \
    --resolve "localhost:$port:127.0.0.1" -H 'content-type: application/json' \
    "https://localhost:$port/v1/records" \
    -d '{"records": [{"subject": {"type": "legal_person", "id": "91370300MA3DFR002A"}, "item": "admin_licence", "fields": {"licence_no": "JY1370303'"$(printf %04d "$i")"'", "licence_name": "食品经营许可"}}]}' \
    >>"$work/submissions.txt"
  sleep 0.2
done
wait "$op"
awk '/Requests\/sec/ {print "queries: " $2 " req/s at c='"$conc"'"}' "$work/oha.txt"
sort -k2 -n "$work/submissions.txt" | awk '{t[NR] = $2; codes[$1]++}
  END {printf "submissions: %d, p50 %.3f s, p90 %.3f s, max %.3f s; status", NR, t[int(NR / 2)], t[int(NR * 0.9)], t[NR]
       for (k in codes) printf " %s×%d", k, codes[k]; print ""}'
echo "slow statements logged (over 1 s): $(grep -c 'slow statement' "$work/gateway.log" || true)"
