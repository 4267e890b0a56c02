#!/usr/bin/env bash
# The API contract, checked against a live gateway:
#
#   bash scripts/schemathesis.sh                  # build (debug), start quickstart on free ports, run
#   CREDGATE_BIN=target/release/credgate bash scripts/schemathesis.sh
#   SCHEMATHESIS_MAX_EXAMPLES=25 bash scripts/schemathesis.sh   # a longer run
#
# openapi-spec-validator and schemathesis (PyPI) are installed into
# target/schemathesis-venv on first use (needs python3 with venv/ensurepip;
# Debian: python3-venv). Exits non-zero if any check fails.
#
# What is checked:
#  * docs/openapi.json is a valid OpenAPI 3.1 document (openapi-spec-validator),
#    every example in it is valid against its schema, and the gateway serves
#    exactly that document at GET /v1/openapi.json.
#  * schemathesis, once per role with that role's client certificate
#    (department, bank, credit_agency, auditor, portal), runs every operation
#    of the document (examples, coverage, fuzzing and stateful phases, bounded by
#    --max-examples): no 5xx, every status, content type, header and body
#    conforms to the document, undocumented methods get 405 with the Allow
#    the document implies, and requests the document calls invalid are refused.
#  * every request is audited: between two marker requests of this script
#    (GET /v1/audit/checkpoint with the auditor certificate) the audit log
#    grows by exactly the number of requests schemathesis sent (those in its
#    cassettes plus its capability probes), each recorded response carries
#    its own x-audit-seq between the markers, and the signed checkpoint
#    catches up to the last marker.
#
# On failure the gateway log and the cassettes are kept in
# target/schemathesis-report/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib/gateway.sh
. "$root/scripts/lib/gateway.sh"
venv=$root/target/schemathesis-venv
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-8}
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1 ||
   ! "$venv/bin/openapi-spec-validator" --help >/dev/null 2>&1; then
  echo "schemathesis: installing schemathesis and openapi-spec-validator into $venv (PyPI, one-off)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'schemathesis==4.32.5' 'openapi-spec-validator==0.7.2'
fi
py=$venv/bin/python
work=$(mktemp -d /tmp/credgate-schemathesis.XXXXXX)
gw_pid=
cleanup() {
  if [ -n "$gw_pid" ]; then
    kill "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "openapi-spec-validator docs/openapi.json"
"$venv/bin/openapi-spec-validator" docs/openapi.json
"$py" -c 'import json,sys; v=json.load(open(sys.argv[1]))["openapi"]; sys.exit(0 if v.startswith("3.1.") else f"not OpenAPI 3.1: {v}")' docs/openapi.json
echo "every example in docs/openapi.json against its schema (JSON Schema 2020-12)"
"$py" - docs/openapi.json <<'PY'
import json, sys
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
doc = json.load(open(sys.argv[1]))
uri = "urn:credgate:openapi"
registry = Registry().with_resource(uri, Resource(contents=doc, specification=DRAFT202012))
def esc(s): return s.replace("~", "~0").replace("/", "~1")
bad = n = 0
def check(ptr, instance, what):
    global bad, n
    n += 1
    v = Draft202012Validator({"$ref": f"{uri}#{ptr}"}, registry=registry)
    errs = list(v.iter_errors(instance))
    for e in errs[:3]:
        print(f"  FAIL  {what}: {e.message} at {list(e.absolute_path)}")
    bad += bool(errs)
def walk_content(base, content, what):
    for ctype, media in content.items():
        sp = f"{base}/content/{esc(ctype)}/schema"
        if "example" in media:
            check(sp, media["example"], f"{what} {ctype} example")
        for name, ex in media.get("examples", {}).items():
            check(sp, ex["value"], f"{what} {ctype} example {name}")
for path, item in doc["paths"].items():
    for method, op in item.items():
        base = f"/paths/{esc(path)}/{method}"
        what = f"{method.upper()} {path}"
        if "requestBody" in op:
            walk_content(f"{base}/requestBody", op["requestBody"]["content"], what + " request")
        for status, r in op["responses"].items():
            if "content" in r:
                walk_content(f"{base}/responses/{status}", r["content"], f"{what} {status}")
        for i, p in enumerate(op.get("parameters", [])):
            if "example" in p:
                check(f"{base}/parameters/{i}/schema", p["example"], f"{what} parameter {p['name']}")
for name, r in doc["components"].get("responses", {}).items():
    walk_content(f"/components/responses/{name}", r["content"], f"response {name}")
print(f"{n} examples checked, {bad} invalid")
sys.exit(1 if bad else 0)
PY

start_gateway schemathesis
# The server certificate is for "localhost".
base=https://localhost:$port

# GET $1 with role $2's certificate: prints "<x-audit-seq> <body>".
probe() {
  "$py" - "$base$1" "$certs" "$2" <<'PY'
import json, ssl, sys, urllib.request
url, certs, who = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
ctx.load_cert_chain(f"{certs}/{who}.pem", f"{certs}/{who}-key.pem")
with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
    print(r.headers["x-audit-seq"], r.read().decode())
PY
}

probe /v1/openapi.json bank | cut -d' ' -f2- >"$work/served.json"
if ! cmp -s <("$py" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True))' "$work/served.json") \
           <("$py" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True))' docs/openapi.json); then
  echo "schemathesis: GET /v1/openapi.json differs from docs/openapi.json (rebuild the binary)" >&2
  exit 1
fi
read -r seq_before _ < <(probe /v1/audit/checkpoint auditor)

# Operations by role, from the document's x-credgate-roles (kept equal to
# policies/access.toml by tests/openapi.rs): each role runs its own
# operations through every phase, and the others (which answer 403
# role_not_permitted) through the examples and a few fuzzed cases.
ops_of() {
  "$py" - "$1" "$2" <<'PY'
import json, sys
role, want = sys.argv[1], sys.argv[2] == "permitted"
doc = json.load(open("docs/openapi.json"))
for item in doc["paths"].values():
    for op in item.values():
        if (role in op["x-credgate-roles"]) == want:
            print("--include-operation-id", op["operationId"])
PY
}
# Whether the document links two operations of this role (then the
# stateful phase follows those links).
links_within() {
  "$py" - "$1" <<'PY'
import json, sys
role = sys.argv[1]
doc = json.load(open("docs/openapi.json"))
ops = [op for item in doc["paths"].values() for op in item.values() if role in op["x-credgate-roles"]]
ids = {op["operationId"] for op in ops}
targets = {l["operationId"] for op in ops for r in op["responses"].values() for l in r.get("links", {}).values()}
sys.exit(0 if targets & ids else 1)
PY
}
run() {
  local role=$1 cert=$2 which=$3 phases=$4 n=$5
  local filter
  filter=$(ops_of "$role" "$which")
  [ -n "$filter" ] || return 0
  runs=$((runs + 1))
  echo
  echo "==> schemathesis as $role ($cert.pem): $which operations, phases $phases, --max-examples $n"
  # Run from the scratch directory: schemathesis keeps its example cache in
  # the working directory.
  # shellcheck disable=SC2086 # $filter is a list of options
  (cd "$work" && "$venv/bin/schemathesis" run "$root/docs/openapi.json" --url "$base" $filter \
    --request-cert "$certs/$cert.pem" --request-cert-key "$certs/$cert-key.pem" --tls-verify "$certs/ca.pem" \
    --checks "$checks" \
    --phases "$phases" --max-examples "$n" --seed 20261123 --workers 1 \
    --suppress-health-check all --no-color \
    --report vcr --report-vcr-path "$work/cassette-$runs.yaml") || status=1
}

# No 5xx; status, content type, headers and body as documented; 405 with the
# right Allow for undocumented methods; schema-invalid requests refused.
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance
checks=$checks,response_schema_conformance,unsupported_method,allow_header_conformance,negative_data_rejection
start=$(date +%s)
status=0
runs=0
for role in department bank credit_agency auditor portal; do
  cert=$role
  [ "$role" = credit_agency ] && cert=agency
  phases=examples,coverage,fuzzing
  links_within "$role" && phases=$phases,stateful
  run "$role" "$cert" permitted "$phases" "$max_examples"
  run "$role" "$cert" other examples,fuzzing 2
done
elapsed=$(( $(date +%s) - start ))

read -r seq_after _ < <(probe /v1/audit/checkpoint auditor)
# Before its tests, each schemathesis run sends a few capability probes that
# its cassette does not record; they are audited too.
probes=$("$py" -c 'from schemathesis.engine.run.probes import PROBES; print(len(PROBES))')
read -r sent distinct inside < <("$py" - "$seq_before" "$seq_after" "$work"/cassette-*.yaml <<'PY'
import re, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
seqs = []
for path in sys.argv[3:]:
    text = open(path, encoding="utf-8").read()
    n = len(re.findall(r"^- id: ", text, re.M))
    got = [int(s) for s in re.findall(r'^\s+"x-audit-seq":\s*\n\s+- "(\d+)"', text, re.M)]
    if len(got) != n:
        sys.exit(f"{path}: {n} interactions but {len(got)} x-audit-seq headers")
    seqs += got
print(len(seqs), len(set(seqs)), sum(lo < s < hi for s in seqs))
PY
)
# The markers are seq_before and seq_after: the entries strictly between
# them are every request sent meanwhile.
audited=$(( seq_after - seq_before - 1 ))
expected=$(( sent + runs * probes ))
echo
echo "schemathesis: $runs runs in ${elapsed}s: $sent requests recorded (+ $runs x $probes probes = $expected);" \
  "$audited audit entries between the markers (seq $seq_before .. $seq_after)"
if [ "$sent" -eq 0 ] || [ "$audited" -ne "$expected" ] || [ "$distinct" -ne "$sent" ] || [ "$inside" -ne "$sent" ]; then
  echo "schemathesis: FAIL: every request must have its own audit entry" \
    "(sent $expected, audited $audited; recorded responses with distinct x-audit-seq $distinct, between the markers $inside)" >&2
  status=1
fi
# The signed checkpoint covers them all once the next one is written.
covered=
for _ in $(seq 1 60); do
  read -r _ body < <(probe /v1/audit/checkpoint auditor)
  size=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["tree_size"] or 0)' "$body")
  if [ "$size" -gt "$seq_after" ]; then covered=$size; break; fi
  sleep 0.5
done
if [ -z "$covered" ]; then
  echo "schemathesis: FAIL: no signed checkpoint covers seq $seq_after" >&2
  status=1
else
  echo "schemathesis: signed checkpoint tree_size $covered covers every entry up to seq $seq_after"
fi
if [ "$status" -ne 0 ]; then
  mkdir -p "$root/target/schemathesis-report"
  cp "$work"/gateway.log "$work"/cassette-*.yaml "$root/target/schemathesis-report/" 2>/dev/null || true
  echo "schemathesis: FAILED (gateway log and cassettes in target/schemathesis-report/)" >&2
  exit 1
fi
echo "schemathesis: all checks passed"
