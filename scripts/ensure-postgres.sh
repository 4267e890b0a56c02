#!/usr/bin/env bash
# Make sure the PostgreSQL the test suite needs is reachable; start the local
# cluster if it is installed but stopped. Never skips silently: if PostgreSQL
# cannot be reached, this says so loudly and fails.
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/test}
hostport=${url#*@}; hostport=${hostport%%/*}
host=${hostport%%:*}; port=${hostport##*:}

reachable() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$host" -p "$port"
  else
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

if reachable; then exit 0; fi
echo "ensure-postgres: PostgreSQL not reachable at $host:$port; trying to start the local cluster" >&2
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for v in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$v" main start >&2 || true
  done
  for _ in $(seq 1 30); do reachable && exit 0; sleep 1; done
fi
cat >&2 <<MSG

  ************************************************************************
  *  PostgreSQL is MISSING at $host:$port.                                
  *  The test suite runs every integration test against SQLite AND      *
  *  PostgreSQL; it will not skip the PostgreSQL half silently.         *
  *  Install and start it (Debian: apt-get install postgresql), allow   *
  *  trust auth for 127.0.0.1, create database 'test', or point         *
  *  CREDGATE_TEST_DATABASE_URL at a server you have.                   *
  ************************************************************************

MSG
exit 1
