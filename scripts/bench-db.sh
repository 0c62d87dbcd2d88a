#!/usr/bin/env bash
# The benchmark database eb_bench_x<FACTOR> (~1.1 GB at FACTOR=1: pgbench scale 40 plus 1.5M rows of jsonb/text),
# created once on the PostgreSQL at 127.0.0.1:5432 and reused. Used by scripts/bench-backup.sh,
# scripts/bench-restore.sh and scripts/bench-rto.sh. Usage: scripts/bench-db.sh [FACTOR]
set -euo pipefail
FACTOR=${1:-1}
DB=eb_bench_x${FACTOR}
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-contrib >/dev/null; }
if [ "$(psql -d "$DB" -Atc "SELECT to_regclass('documents') IS NOT NULL" 2>/dev/null)" != t ]; then
  echo "creating $DB (scale $((40 * FACTOR)) + $((1500000 * FACTOR)) document rows)…" >&2
  dropdb --if-exists "$DB"
  createdb "$DB"
  pgbench -i -q -s $((40 * FACTOR)) "$DB" >/dev/null 2>&1
  psql -q -d "$DB" -c "CREATE TABLE documents (id bigserial PRIMARY KEY, title text, body text, attrs jsonb);
    INSERT INTO documents (title, body, attrs)
    SELECT 'document ' || g, repeat(md5(g::text), 4) || ' ' || md5(random()::text),
           jsonb_build_object('n', g, 'tag', 'tag' || (g % 97), 'score', random(), 'flags', jsonb_build_array(g % 2 = 0, g % 3 = 0))
    FROM generate_series(1, $((1500000 * FACTOR))) g;" -c "VACUUM ANALYZE"
fi
