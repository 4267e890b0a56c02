#!/usr/bin/env bash
# Where a request's CPU goes: the measurements behind bench/RESULTS.md's
# profiling sections, on one gateway serving the bench's query.
#
#   bash bench/profile.sh instr   [BIN]   # callgrind: instructions per query (repeatable under any load)
#   bash bench/profile.sh cpu     [BIN]   # req/s and CPU µs per request at CONC (default 64)
#   bash bench/profile.sh perf    [BIN]   # the same, plus `perf record` call graphs (perf.data in the work dir)
#   bash bench/profile.sh switches [BIN]  # context switches per request, per thread name
#   bash bench/profile.sh io      [BIN]   # bytes written per request, per thread name
#   bash bench/profile.sh commits [BIN]   # at a fixed RATE (2000/s, c=16): block I/O requests
#                                         # per group commit, mean commit time, p99 latency
#   bash bench/profile.sh stalls [BIN]    # at a fixed RATE (7000/s, c=64) for DUR (15 s), past
#                                         # a WAL snapshot: commits over 5/10/25 ms, p99/p99.9/max
#
# BIN defaults to the release build (built if missing). Environment: CONC
# (concurrency, 64), DUR (seconds measured, 5), WORK (work directory; a new
# temporary one by default), SUBJECTS (seeded synthetic subjects, 10000).
# Compare two builds by alternating them (A B A B): single runs on a shared
# machine differ by as much as most changes do.
#
# Needs oha (crates.io), and per mode valgrind or perf (Debian: valgrind,
# linux-perf); installs what is missing, like bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:?usage: bench/profile.sh instr|cpu|perf|switches|io [BIN]}
bin=${2:-${CARGO_TARGET_DIR:-$root/target}/release/credgate}
conc=${CONC:-64}
dur=${DUR:-5}
subjects=${SUBJECTS:-10000}
work=${WORK:-$(mktemp -d /tmp/credgate-profile.XXXXXX)}
port=28443
admin=29090

need() { command -v "$1" >/dev/null 2>&1; }
if ! need oha; then
  echo "profile: installing oha from crates.io (one-off, a few minutes)" >&2
  cargo install oha --locked
fi
case $mode in
  instr) need valgrind || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null ;;
  perf|commits) need perf || DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-perf >/dev/null ;;
  cpu|switches|io|stalls) ;;
  *) echo "profile: unknown mode $mode" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
  echo "profile: building credgate (release)" >&2
  cargo build --release --quiet
fi

rm -rf "$work/certs" "$work/data"
mkdir -p "$work"
"$bin" quickstart --certs "$work/certs" --data "$work/data" --policies "$root/policies" \
  --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin --no-serve >/dev/null
"$bin" seed --config "$work/data/credgate.toml" --subjects "$subjects" >/dev/null 2>&1

gw=()
if [ "$mode" = instr ]; then
  gw=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" --dump-line=no)
fi
RUST_LOG=warn "${gw[@]}" "$bin" serve --config "$work/data/credgate.toml" 2>"$work/gateway.log" &
gp=$!
trap 'kill $gp 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
  sleep 0.2
done

c=$work/certs
body='{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":["enterprise_name","business_status","registered_capital","penalty_content","penalty_date","tax_paid_annual"]}'
load=(oha --no-tui --cacert "$c/ca.pem" --cert "$c/bank.pem" --key "$c/bank-key.pem"
  -m POST -H 'content-type: application/json' -d "$body")
url=https://localhost:$port/v1/query

# Per-thread-name sums of two fields of /proc/<pid>/task/*/<file>.
per_thread() {
  local file=$1 a=$2 b=$3
  for t in /proc/$gp/task/*; do
    printf '%s %s %s\n' "$(cat "$t/comm")" \
      "$(awk -v k="$a" '$1 == k":" {print $2}' "$t/$file")" \
      "$(awk -v k="$b" '$1 == k":" {print $2}' "$t/$file")"
  done | awk '{x[$1]+=$2; y[$1]+=$3} END {for (k in x) print k, x[k], y[k]}' | sort
}
rps_of() { awk '/Requests\/sec/ {print $2}' "$1"; }

if [ "$mode" = instr ]; then
  # Warm up (connections, statement caches), zero the counters, measure a
  # fixed number of queries; the gateway's every thread counts.
  n=${QUERIES:-3000}
  "${load[@]}" -n 2000 -c 16 "$url" >/dev/null
  sleep 2
  callgrind_control -z "$gp" >/dev/null 2>&1
  "${load[@]}" -n "$n" -c 16 "$url" >"$work/oha.txt"
  sleep 3
  callgrind_control -d "$gp" >/dev/null 2>&1
  sleep 2
  total=$(callgrind_annotate "$work/callgrind.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  echo "instructions per query: $((total / n)) ($total over $n queries, oha -c 16)"
  echo "inclusive costs: callgrind_annotate --inclusive=yes $work/callgrind.out.1"
  exit 0
fi

"${load[@]}" -z 2s -c "$conc" "$url" >/dev/null
metric() { curl -sf "http://127.0.0.1:$admin/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
if [ "$mode" = commits ]; then
  # Device requests the gateway's threads issue (the WAL's data, its
  # flush, an inode write if one is due), per group commit, at a rate the
  # machine sustains easily: figures that do not depend on its load.
  rate=${RATE:-2000}
  b0=$(metric credgate_audit_batches_total)
  s0=$(metric credgate_audit_commit_duration_seconds_sum)
  perf stat -e block:block_rq_issue -x, -p "$gp" -o "$work/blk.txt" -- sleep "$dur" &
  ps=$!
  "${load[@]}" -z "${dur}s" -c 16 -q "$rate" "$url" >"$work/oha.txt"
  wait "$ps" || true
  b1=$(metric credgate_audit_batches_total)
  s1=$(metric credgate_audit_commit_duration_seconds_sum)
  rq=$(awk -F, '/block_rq_issue/ {print $1}' "$work/blk.txt")
  python3 - "$b0" "$b1" "$s0" "$s1" "$rq" "$work/oha.txt" "$rate" <<'PY'
import re, sys
b0, b1, s0, s1, rq = (float(x) for x in sys.argv[1:6])
p99 = re.search(r"99\.00% in ([0-9.]+) (\w+)", open(sys.argv[6]).read())
n = b1 - b0
print(f"@{sys.argv[7]}/s c=16: {rq / n:.2f} block requests per group commit ({int(rq)} in {int(n)}), "
      f"mean commit {(s1 - s0) / n * 1e6:.0f} µs, p99 {p99.group(1)} {p99.group(2)}")
PY
  exit 0
fi
if [ "$mode" = stalls ]; then
  # Long commits hold every request waiting for them; at this rate and
  # duration the log passes its 64 MiB snapshot threshold at least once.
  rate=${RATE:-7000}
  sdur=${DUR_STALLS:-15}
  hist() { curl -sf "http://127.0.0.1:$admin/metrics" | awk -v le="$1" \
    '$1 == "credgate_audit_commit_duration_seconds_bucket{le=\""le"\"}" {print $2}'; }
  total0=$(hist +Inf); b5=$(hist 0.005); b10=$(hist 0.01); b25=$(hist 0.025)
  "${load[@]}" -z "${sdur}s" -c 64 -q "$rate" "$url" >"$work/oha.txt"
  total1=$(hist +Inf); a5=$(hist 0.005); a10=$(hist 0.01); a25=$(hist 0.025)
  n=$((total1 - total0))
  over() { echo $(( (total1 - $2) - (total0 - $1) )); }
  q() { awk -v k="$1" '$1 == k {print $3, $4}' "$work/oha.txt"; }
  echo "@$rate/s c=64 ${sdur}s: $n commits, over 5 ms $(over "$b5" "$a5"), over 10 ms $(over "$b10" "$a10"), over 25 ms $(over "$b25" "$a25"); p99 $(q 99.00%), p99.9 $(q 99.90%), slowest $(awk '/Slowest/ {print $2, $3}' "$work/oha.txt")"
  exit 0
fi
case $mode in
  switches) per_thread status voluntary_ctxt_switches nonvoluntary_ctxt_switches >"$work/before" ;;
  io) per_thread io write_bytes wchar >"$work/before" ;;
esac
cpu0=$(awk '{print $14 + $15}' "/proc/$gp/stat")
if [ "$mode" = perf ]; then
  perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$gp" -o "$work/perf.data" \
    -- sleep $((dur - 1)) 2>/dev/null &
  pp=$!
fi
"${load[@]}" -z "${dur}s" -c "$conc" "$url" >"$work/oha.txt"
cpu1=$(awk '{print $14 + $15}' "/proc/$gp/stat")
[ "$mode" = perf ] && wait "$pp"
rps=$(rps_of "$work/oha.txt")
n=$(python3 -c "print(int(float('$rps') * $dur))")
ticks=$(getconf CLK_TCK)
# Entries per group commit over the whole run (warm-up included): the
# sequencer's cost per request falls as batches grow.
per_commit=$(curl -sf "http://127.0.0.1:$admin/metrics" | awk '
  $1 == "credgate_audit_entries_total" {e = $2} $1 == "credgate_audit_batches_total" {b = $2}
  END {if (b > 0) printf "%.1f", e / b; else print "?"}')
echo "c=$conc: $rps req/s, $(python3 -c "print(round(($cpu1 - $cpu0) / $ticks * 1e6 / $n, 1))") µs CPU per request, $per_commit entries per commit"
case $mode in
  switches)
    per_thread status voluntary_ctxt_switches nonvoluntary_ctxt_switches >"$work/after"
    join "$work/before" "$work/after" | awk -v n="$n" \
      '{printf "%-18s voluntary %.3f  involuntary %.3f  per request\n", $1, ($4-$2)/n, ($5-$3)/n}'
    ;;
  io)
    sleep 0.5
    per_thread io write_bytes wchar >"$work/after"
    join "$work/before" "$work/after" | awk -v n="$n" \
      '{printf "%-18s to disk %6.0f B  written %6.0f B  per request\n", $1, ($4-$2)/n, ($5-$3)/n}'
    ;;
  perf)
    echo "per thread: perf report -i $work/perf.data --no-children --sort comm -g none"
    echo "hot spots:  perf report -i $work/perf.data --no-children --sort comm,dso,sym -g none"
    ;;
esac
