#!/usr/bin/env bash
# credgate vs nginx, same machine, same certificates, same load generator.
#
#   bash bench/run.sh                 # full run (keep-alive at several concurrencies + new-connection mode)
#   QUICK=1 bash bench/run.sh         # short run (CI smoke: seconds, not minutes)
#   CREDGATE_BIN=/path/credgate bash bench/run.sh   # an already built binary, no build
#
# Builds credgate in release mode, generates certificates, seeds synthetic
# subjects, starts the gateway (SQLite, durable group commit) and nginx
# (Debian's nginx-light) serving a static JSON body of the same size over
# mTLS with the same certificates, and drives both with oha (crates.io),
# which presents a client certificate. Prints requests/s, p50/p99/p99.9,
# CPU seconds and RSS for both, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
root=$PWD
quick=${QUICK:-0}
dur=${DURATION:-10}
concurrencies=${CONCURRENCIES:-"16 64 256"}
subjects=${SUBJECTS:-10000}
if [ "$quick" = 1 ]; then dur=2; concurrencies="32"; subjects=500; fi
work=${BENCH_DIR:-$(mktemp -d /tmp/credgate-bench.XXXXXX)}
gw_port=18443; gw_admin=19090; nginx_port=18444

need() { command -v "$1" >/dev/null 2>&1; }
if ! need oha; then
  echo "bench: installing oha from crates.io (one-off, a few minutes)" >&2
  cargo install oha --locked
fi
if ! need nginx && [ ! -x /usr/sbin/nginx ]; then
  echo "bench: installing nginx-light from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

# CREDGATE_BIN: an already built binary (e.g. to compare two commits);
# otherwise the release build, in CARGO_TARGET_DIR if set.
if [ -n "${CREDGATE_BIN:-}" ]; then
  bin=$CREDGATE_BIN
else
  echo "bench: building credgate (release)" >&2
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-$root/target}/release/credgate
fi

pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$bin" quickstart --certs "$work/certs" --data "$work/data" --policies "$root/policies" \
  --listen 127.0.0.1:$gw_port --admin-listen 127.0.0.1:$gw_admin --no-serve >/dev/null
"$bin" seed --config "$work/data/credgate.toml" --subjects "$subjects" >&2
RUST_LOG=warn "$bin" serve --config "$work/data/credgate.toml" &
gw_pid=$!; pids+=("$gw_pid")
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$gw_admin/readyz" >/dev/null && break; sleep 0.1; done

c=$work/certs
tls=(--cacert "$c/ca.pem" --cert "$c/bank.pem" --key "$c/bank-key.pem")
body='{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":["enterprise_name","business_status","registered_capital","penalty_content","penalty_date","tax_paid_annual"]}'
url_gw="https://localhost:$gw_port/v1/query"

# The gateway's real response, served verbatim by nginx.
curl -s "${tls[@]}" --resolve "localhost:$gw_port:127.0.0.1" -H 'content-type: application/json' -d "$body" "$url_gw" \
  | sed 's/"x-audit-seq":[0-9]*//' > "$work/response.json"
size=$(wc -c < "$work/response.json")
mkdir -p "$work/nginx/logs"
python3 - "$work" "$nginx_port" <<'PY'
import json, sys
work, port = sys.argv[1], sys.argv[2]
body = open(f"{work}/response.json").read().strip()
assert "'" not in body and "\\" not in body
conf = f"""
worker_processes 2;
error_log {work}/nginx/logs/error.log warn;
pid {work}/nginx/nginx.pid;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {work}/certs/server.pem;
    ssl_certificate_key {work}/certs/server-key.pem;
    ssl_client_certificate {work}/certs/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      default_type application/json;
      return 200 '{body}';
    }}
  }}
}}
"""
open(f"{work}/nginx/nginx.conf", "w").write(conf)
PY
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
ng_pid=$!; pids+=("$ng_pid")
sleep 0.5
url_ng="https://localhost:$nginx_port/v1/query"

cpu_of() { # total utime+stime seconds of a process and its children threads/workers
  local total=0
  for p in "$@"; do
    for q in $p $(pgrep -P "$p" || true); do
      [ -r /proc/$q/stat ] || continue
      read -r -a f < /proc/$q/stat
      total=$((total + f[13] + f[14]))
    done
  done
  echo "scale=2; $total / $(getconf CLK_TCK)" | bc
}
rss_of() { # summed VmRSS in MB
  local total=0
  for p in "$@"; do
    for q in $p $(pgrep -P "$p" || true); do
      local kb; kb=$(awk '/VmRSS/ {print $2}' /proc/$q/status 2>/dev/null || echo 0)
      total=$((total + kb))
    done
  done
  echo $((total / 1024))
}

busy_ticks() { # "busy total" jiffies of all CPUs (/proc/stat; idle and iowait are not busy)
  awk '$1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
busy_pct() { # percent of all CPUs busy between two busy_ticks readings
  echo "$1 $2" | awk '{d = $4 - $2; printf "%.0f", (d > 0 ? 100 * ($3 - $1) / d : 0)}'
}
# Run a command; write the CPU seconds it and its children used to $1.
# The load generator shares the cores: its share bounds what is left.
cpu_timed() {
  local out=$1; shift
  python3 -c 'import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(str(r.ru_utime + r.ru_stime))
sys.exit(rc)' "$out" "$@"
}

run() { # name url pid keepalive concurrency
  local name=$1 url=$2 pid=$3 ka=$4 conc=$5 extra=()
  [ "$ka" = no ] && extra+=(--disable-keepalive)
  local cpu0; cpu0=$(cpu_of "$pid")
  local b0; b0=$(busy_ticks)
  cpu_timed "$work/load-cpu" oha --no-tui -z "${dur}s" -c "$conc" -m POST -H 'content-type: application/json' -d "$body" \
      "${tls[@]}" "${extra[@]}" --output-format json "$url" > "$work/oha-$name-$ka-$conc.json" 2>/dev/null
  local cpu1; cpu1=$(cpu_of "$pid")
  local busy; busy=$(busy_pct "$b0" "$(busy_ticks)")
  python3 - "$work/oha-$name-$ka-$conc.json" "$name" "$ka" "$conc" "$(echo "$cpu1 - $cpu0" | bc)" "$(rss_of "$pid")" "$dur" "$(cat "$work/load-cpu")" "$busy" <<'PY'
import json, sys
f, name, ka, conc, cpu, rss, dur, load, busy = sys.argv[1:]
d = json.load(open(f))
s = d["summary"]; p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
total = sum(codes.values()) or 1
ms = lambda v: f"{(v or 0) * 1000:.2f}"
print(f"{name:8} {ka:4} {conc:>5} {s['requestsPerSec']:>10.0f} {ms(p.get('p50')):>8} {ms(p.get('p99')):>8} {ms(p.get('p99.9')):>8} {float(cpu)/float(dur):>6.2f} {rss:>6}  {100*ok/total:5.1f}% {float(load)/float(dur):>6.2f} {busy:>5}%")
with open(f + ".rps", "w") as out:
    out.write(str(s["requestsPerSec"]))
PY
}

# RSS with 1,000 open (idle, keep-alive) connections, before any load run.
python3 bench/idle_connections.py "$c" "$gw_port" 1000 6 >/dev/null &
idle_pid=$!
sleep 5
idle_rss=$(awk '/VmRSS/ {print int($2/1024)}' /proc/$gw_pid/status)
wait "$idle_pid" || true

echo
echo "RSS with 1,000 open idle mTLS connections: ${idle_rss} MB"
echo "response body: $size bytes; duration ${dur}s per run; $(nproc) cores; $(uname -r)"
echo "cores: the server's CPU; load: oha's CPU (same cores); busy: all CPUs over the run"
printf '%-8s %-4s %5s %10s %8s %8s %8s %6s %6s  %6s %6s %6s\n' server keep conc req/s p50ms p99ms p99.9ms cores rssMB 2xx load busy
for conc in $concurrencies; do
  run credgate "$url_gw" "$gw_pid" yes "$conc"
  run nginx "$url_ng" "$ng_pid" yes "$conc"
done
# Latency at half of the peak rate (target: p99 ≤ 5 ms at half of peak).
peak=0
for conc in $concurrencies; do
  r=$(cat "$work/oha-credgate-yes-$conc.json.rps"); peak=$(echo "if ($r > $peak) $r else $peak" | bc)
done
half=$(echo "$peak / 2" | bc)
run_rate() { # name url pid rate
  local name=$1 url=$2 pid=$3 rate=$4
  local cpu0; cpu0=$(cpu_of "$pid")
  oha --no-tui -z "${dur}s" -c 64 -q "$rate" -m POST -H 'content-type: application/json' -d "$body" \
      "${tls[@]}" --output-format json "$url" > "$work/oha-$name-half.json" 2>/dev/null
  local cpu1; cpu1=$(cpu_of "$pid")
  python3 - "$work/oha-$name-half.json" "$name" "@${rate}/s" "64" "$(echo "$cpu1 - $cpu0" | bc)" "$(rss_of "$pid")" "$dur" <<'PY'
import json, sys
f, name, ka, conc, cpu, rss, dur = sys.argv[1:]
d = json.load(open(f)); s = d["summary"]; p = d["latencyPercentiles"]
ms = lambda v: f"{(v or 0) * 1000:.2f}"
print(f"{name:8} {ka:>10} {conc:>5} {s['requestsPerSec']:>10.0f} {ms(p.get('p50')):>8} {ms(p.get('p99')):>8} {ms(p.get('p99.9')):>8} {float(cpu)/float(dur):>6.2f} {rss:>6}")
PY
}
echo "1,000 concurrent keep-alive connections (target: RSS ≤ 150 MB):"
run credgate "$url_gw" "$gw_pid" yes 1000
echo "half of credgate's peak ($peak req/s):"
run_rate credgate "$url_gw" "$gw_pid" "$half"

conc_new=${CONC_NEW:-32}
run credgate "$url_gw" "$gw_pid" no "$conc_new"
run nginx "$url_ng" "$ng_pid" no "$conc_new"

echo
for conc in $concurrencies; do
  g=$(cat "$work/oha-credgate-yes-$conc.json.rps"); n=$(cat "$work/oha-nginx-yes-$conc.json.rps")
  printf 'ratio credgate/nginx at c=%s (keep-alive): %.2f\n' "$conc" "$(echo "$g / $n" | bc -l)"
done
g=$(cat "$work/oha-credgate-no-$conc_new.json.rps"); n=$(cat "$work/oha-nginx-no-$conc_new.json.rps")
printf 'ratio credgate/nginx at c=%s (new connection per request): %.2f\n' "$conc_new" "$(echo "$g / $n" | bc -l)"
entries=$(curl -s "http://127.0.0.1:$gw_admin/metrics" | awk '/^credgate_audit_entries_total/ {print $2}')
batches=$(curl -s "http://127.0.0.1:$gw_admin/metrics" | awk '/^credgate_audit_batches_total/ {print $2}')
echo "audit: $entries entries committed in $batches group commits"
echo "gateway peak RSS over the whole run (VmHWM): $(awk '/VmHWM/ {print int($2/1024)}' /proc/$gw_pid/status) MB"
echo "raw results: $work"
