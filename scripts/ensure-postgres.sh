#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use answers on 127.0.0.1:5432 as user postgres without a password, and
# that the client tools (pg_dump, pg_restore, psql) are installed.
#
# On a fresh Debian/Ubuntu machine PostgreSQL is installed but not started, with Debian's default
# authentication (peer on the socket, scram-sha-256 on 127.0.0.1). This script then starts the newest
# cluster (pg_ctlcluster) and, when the password-less connection the tests use is refused, puts one line
# at the top of that cluster's pg_hba.conf: `host all postgres 127.0.0.1/32 trust` (marked, added once), and
# reloads. That is for a throwaway test machine: run it on a server you care about only if you mean it.
set -euo pipefail
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
unset PGPASSWORD
log() { printf 'ensure-postgres: %s\n' "$*" >&2; }

if ! command -v pg_dump >/dev/null || ! command -v pg_isready >/dev/null; then
  log "installing the PostgreSQL client tools"
  apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null
fi

cluster_version() { find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1; }

if ! pg_isready -q -t 5; then
  if command -v pg_ctlcluster >/dev/null && [[ -n $(cluster_version) ]]; then
    log "starting the local PostgreSQL $(cluster_version) cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(cluster_version)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -t 1 && break; sleep 1; done
fi
pg_isready -t 5 >/dev/null || {
  log "PostgreSQL is not reachable on 127.0.0.1:5432: the tests need it (user postgres, no password)"
  exit 1
}

connects() { psql -w -d postgres -qAtc 'SELECT 1' >/dev/null 2>&1; }
if ! connects; then
  version=$(cluster_version)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  marker='# eternia-backup tests: password-less postgres on 127.0.0.1'
  if [[ -n $version && -w $hba ]] && ! grep -qF "$marker" "$hba"; then
    log "allowing user postgres on 127.0.0.1 without a password in $hba (test machine)"
    { echo "$marker"; echo "host all postgres 127.0.0.1/32 trust"; cat "$hba"; } >"$hba.new"
    chown --reference="$hba" "$hba.new" && chmod --reference="$hba" "$hba.new"
    mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    for _ in $(seq 1 20); do connects && break; sleep 0.5; done
  fi
fi
connects || {
  log "cannot connect to 127.0.0.1:5432 as postgres without a password:"
  psql -w -d postgres -qAtc 'SELECT 1' >&2 || true
  log "allow it (pg_hba.conf: 'host all postgres 127.0.0.1/32 trust') or start a server that does"
  exit 1
}
log "PostgreSQL $(psql -w -d postgres -qAtc 'SHOW server_version') ready on 127.0.0.1:5432"
