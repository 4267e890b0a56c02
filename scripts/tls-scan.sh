#!/usr/bin/env bash
# TLS scan of the gateway with sslyze (PyPI), asserting the TLS posture:
#
#   bash scripts/tls-scan.sh                 # build (debug), start quickstart on a free port, scan it
#   CREDGATE_BIN=target/release/credgate bash scripts/tls-scan.sh
#   TLS_SCAN_TARGET=127.0.0.1:8443 TLS_SCAN_CERTS=certs bash scripts/tls-scan.sh   # scan a running server
#
# sslyze is installed into target/sslyze-venv on first use (needs python3
# with venv/ensurepip; Debian: python3-venv). Exits non-zero if any check
# fails; prints one line per check.
#
# What is checked:
#  * protocols: SSL 2.0, SSL 3.0, TLS 1.0 and TLS 1.1 refused; TLS 1.2 and 1.3 offered.
#  * cipher suites — "weak" means anything but ECDHE key exchange with an AEAD
#    cipher. TLS 1.2 allow-list: TLS_ECDHE_{ECDSA,RSA}_WITH_{AES_128_GCM_SHA256,
#    AES_256_GCM_SHA384,CHACHA20_POLY1305_SHA256}. So no CBC (Lucky13 and
#    padding oracles; with SHA-1 MACs), no static RSA key exchange (no forward
#    secrecy, ROBOT), no DHE (custom/small groups), no 3DES/RC4/NULL/EXPORT/anon.
#    TLS 1.3: the three AEAD suites of RFC 8446. Every accepted suite has
#    >= 128-bit keys and an ECDH(E) ephemeral key of >= 253 bits (X25519,
#    P-256 or stronger); every supported curve is one of those.
#  * client certificate required: sslyze, scanning without a certificate,
#    must report REQUIRED; and explicit handshakes over TLS 1.2 and 1.3 with
#    no certificate and with a certificate from another CA must be refused,
#    while the same connection with a valid certificate gets an HTTP answer.
#  * no insecure renegotiation: no client-initiated renegotiation accepted,
#    and the RFC 5746 secure-renegotiation indication present.
#  * no TLS compression (CRIME); also not vulnerable to Heartbleed, CCS
#    injection, ROBOT; TLS_FALLBACK_SCSV and extended master secret supported.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib/gateway.sh
. "$root/scripts/lib/gateway.sh"
venv=$root/target/sslyze-venv
if ! "$venv/bin/sslyze" --help >/dev/null 2>&1; then
  echo "tls-scan: installing sslyze into $venv (PyPI, one-off)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'sslyze>=6.1,<7'
fi
py=$venv/bin/python
work=$(mktemp -d /tmp/credgate-tls-scan.XXXXXX)
gw_pid=
cleanup() {
  if [ -n "$gw_pid" ]; then
    kill "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${TLS_SCAN_TARGET:-}" ]; then
  host=${TLS_SCAN_TARGET%:*}
  port=${TLS_SCAN_TARGET##*:}
  certs=${TLS_SCAN_CERTS:?set TLS_SCAN_CERTS to a directory with ca.pem, bank.pem, bank-key.pem, foreign.pem, foreign-key.pem}
else
  start_gateway tls-scan
fi

start=$(date +%s%N)
# The server certificate is for "localhost"; connect to $host.
target="localhost:$port{$host}"
"$venv/bin/sslyze" --quiet --mozilla_config disable --json_out "$work/nocert.json" \
  --tlsv1_2 --tlsv1_3 "$target" >/dev/null
"$venv/bin/sslyze" --quiet --mozilla_config disable --json_out "$work/scan.json" \
  --cert "$certs/bank.pem" --key "$certs/bank-key.pem" \
  --sslv2 --sslv3 --tlsv1 --tlsv1_1 --tlsv1_2 --tlsv1_3 --reneg --compression \
  --heartbleed --openssl_ccs --robot --fallback --elliptic_curves --ems "$target" >/dev/null

"$py" - "$work" "$host" "$port" "$certs" <<'PY'
import json, socket, ssl, sys

work, host, port, certs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
failures = []

def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failures.append(what)

def load(name):
    r = json.load(open(f"{work}/{name}"))["server_scan_results"][0]
    if r["connectivity_status"] != "COMPLETED" or r["scan_status"] != "COMPLETED":
        sys.exit(f"tls-scan: sslyze could not scan ({name}): {r['connectivity_error_trace']}")
    return r

full, nocert = load("scan.json"), load("nocert.json")

def result(key):
    v = full["scan_result"][key]
    if v["status"] != "COMPLETED":
        check(False, f"sslyze {key}: {v['status']} {v.get('error_reason')}")
        return None
    return v["result"]

print("protocol versions")
for key, label in [("ssl_2_0_cipher_suites", "SSL 2.0"), ("ssl_3_0_cipher_suites", "SSL 3.0"),
                   ("tls_1_0_cipher_suites", "TLS 1.0"), ("tls_1_1_cipher_suites", "TLS 1.1")]:
    r = result(key)
    if r is not None:
        n = len(r["accepted_cipher_suites"])
        check(n == 0 and not r["is_tls_version_supported"], f"{label} refused ({n} suites accepted)")

print("cipher suites (allowed: ECDHE key exchange + AEAD only)")
TLS12 = {f"TLS_ECDHE_{auth}_WITH_{enc}" for auth in ("ECDSA", "RSA")
         for enc in ("AES_128_GCM_SHA256", "AES_256_GCM_SHA384", "CHACHA20_POLY1305_SHA256")}
TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
for key, label, allowed in [("tls_1_2_cipher_suites", "TLS 1.2", TLS12),
                            ("tls_1_3_cipher_suites", "TLS 1.3", TLS13)]:
    r = result(key)
    if r is None:
        continue
    accepted = r["accepted_cipher_suites"]
    names = [a["cipher_suite"]["name"] for a in accepted]
    weak = [n for n in names if n not in allowed]
    check(bool(names) and not weak,
          f"{label}: {', '.join(names) or 'none'}" + (f" — weak: {', '.join(weak)}" if weak else ""))
    small = [a["cipher_suite"]["name"] for a in accepted
             if a["cipher_suite"]["key_size"] < 128 or a["cipher_suite"]["is_anonymous"]
             or not a.get("ephemeral_key") or a["ephemeral_key"]["type_name"] != "ECDH"
             or a["ephemeral_key"]["size"] < 253]
    check(not small, f"{label}: >= 128-bit keys, ECDHE >= 253 bits" + (f" — not: {small}" if small else ""))
r = result("elliptic_curves")
if r is not None:
    curves = [c["name"] for c in r["supported_curves"] or []]
    bad = [c for c in curves if c not in ("X25519", "X448", "secp256r1", "secp384r1", "secp521r1")]
    check(curves and not bad, f"curves: {', '.join(curves)}" + (f" — weak: {bad}" if bad else ""))

print("client certificate")
req = nocert["connectivity_result"]["client_auth_requirement"]
check(req == "REQUIRED", f"sslyze without a certificate: client authentication {req}")

def attempt(version, who):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.load_verify_locations(f"{certs}/ca.pem")
    if who:
        ctx.load_cert_chain(f"{certs}/{who}.pem", f"{certs}/{who}-key.pem")
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /v1/tls-scan HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                data = s.recv(64)
                return ("answered", data[:12]) if data.startswith(b"HTTP/1.1 ") else ("refused", f"closed: {data!r}")
    except (ssl.SSLError, OSError) as e:
        return ("refused", f"{type(e).__name__}: {e}")

for version, label in [(ssl.TLSVersion.TLSv1_2, "TLS 1.2"), (ssl.TLSVersion.TLSv1_3, "TLS 1.3")]:
    for who, want in [(None, "refused"), ("foreign", "refused"), ("bank", "answered")]:
        got, how = attempt(version, who)
        check(got == want, f"{label}, {who or 'no'} certificate: {got} ({how})")

print("renegotiation, compression, known attacks")
r = result("session_renegotiation")
if r is not None:
    check(not r["is_vulnerable_to_client_renegotiation_dos"] and r["client_renegotiations_success_count"] == 0,
          f"client-initiated renegotiation refused ({r['client_renegotiations_success_count']} accepted)")
    check(r["supports_secure_renegotiation"], "secure renegotiation indication (RFC 5746): no insecure renegotiation")
for key, field, bad, label in [
        ("tls_compression", "supports_compression", True, "TLS compression (CRIME) disabled"),
        ("heartbleed", "is_vulnerable_to_heartbleed", True, "not vulnerable to Heartbleed"),
        ("openssl_ccs_injection", "is_vulnerable_to_ccs_injection", True, "not vulnerable to CCS injection"),
        ("tls_fallback_scsv", "supports_fallback_scsv", False, "TLS_FALLBACK_SCSV supported"),
        ("tls_extended_master_secret", "supports_ems_extension", False, "extended master secret supported")]:
    r = result(key)
    if r is not None:
        check(r[field] != bad, label)
r = result("robot")
if r is not None:
    check(r["robot_result"].startswith("NOT_VULNERABLE"), f"ROBOT: {r['robot_result']}")

if failures:
    print(f"tls-scan: {len(failures)} check(s) failed")
    sys.exit(1)
PY
echo "tls-scan: all checks passed (scan and checks $(( ($(date +%s%N) - start) / 1000000 )) ms)"
