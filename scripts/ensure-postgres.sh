#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use answers on 127.0.0.1:5432 (user postgres, trust auth) and that
# the client tools (pg_dump, pg_restore, psql) are installed.
set -euo pipefail
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
if ! command -v pg_dump >/dev/null || ! command -v pg_isready >/dev/null; then
  echo "installing the PostgreSQL client tools"
  apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null
fi
if ! pg_isready -q -t 5; then
  if command -v pg_ctlcluster >/dev/null; then
    echo "starting the local PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -t 1 && break; sleep 1; done
fi
pg_isready -t 5 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432: the tests need it (user postgres, trust auth)" >&2; exit 1; }
