# Sourced by the test scripts (schemathesis.sh, tls-scan.sh): start a
# quickstart gateway on two free loopback ports and wait until it is ready.
#
#   start_gateway NAME
#
# Needs $root (the repository), $work (a scratch directory) and $py (a
# Python interpreter); uses $CREDGATE_BIN if set, else builds the debug
# binary. Sets host, port, admin, certs (the quickstart's certificates in
# $work/certs) and gw_pid (the caller's cleanup trap stops it). NAME prefixes
# the message if the gateway exits during start-up.
start_gateway() {
  local name=$1 bin=${CREDGATE_BIN:-}
  if [ -z "$bin" ]; then
    cargo build --quiet
    bin=$root/target/debug/credgate
  fi
  read -r port admin < <("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  host=127.0.0.1
  certs=$work/certs
  "$bin" quickstart --certs "$certs" --data "$work/data" --policies "$root/policies" \
    --listen "$host:$port" --admin-listen "$host:$admin" >"$work/gateway.log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 1 300); do
    if ! kill -0 "$gw_pid" 2>/dev/null; then
      echo "$name: gateway exited:" >&2; cat "$work/gateway.log" >&2; exit 1
    fi
    "$py" -c "import urllib.request,sys; urllib.request.urlopen('http://$host:$admin/readyz', timeout=1)" 2>/dev/null && break
    sleep 0.2
  done
}
