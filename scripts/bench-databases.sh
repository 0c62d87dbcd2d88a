#!/usr/bin/env bash
# Several databases in one backup (issue 15): how they are dumped, measured. Builds three databases of
# ~250 MB each (pgbench scale 10 plus 400k rows of jsonb/text; created once and reused), then times in
# interleaved rounds:
#   1. bare `pg_dump -Fc -Z0 > /dev/null` of the three, one after another   (the baseline)
#   2. the same three bare dumps at once                                    (what concurrency gives pg_dump)
#   3. `eternia-backup backup` with BACKUP_DATABASES: one archive, the three dumped one after another
#   4. three single-database `eternia-backup backup` runs at once, each to its own directory (the best a
#      concurrent dump of the three into archives could do, with compression competing for the cores)
# Usage: scripts/bench-databases.sh   (REPEAT=3 rounds by default). Needs PostgreSQL on 127.0.0.1:5432
# (user postgres), pgbench, GNU time. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-contrib >/dev/null; }

DBS=(eb_bench_multi_1 eb_bench_multi_2 eb_bench_multi_3)
for db in "${DBS[@]}"; do
  if [ "$(psql -d "$db" -Atc "SELECT to_regclass('documents') IS NOT NULL" 2>/dev/null)" != t ]; then
    echo "creating $db…" >&2
    dropdb --if-exists "$db"
    createdb "$db"
    pgbench -i -q -s 10 "$db" >/dev/null 2>&1
    psql -q -d "$db" -c "CREATE TABLE documents (id bigserial PRIMARY KEY, title text, body text, attrs jsonb);
      INSERT INTO documents (title, body, attrs)
      SELECT 'document ' || g, repeat(md5(g::text), 4) || ' ' || md5(random()::text),
             jsonb_build_object('n', g, 'tag', 'tag' || (g % 97), 'score', random())
      FROM generate_series(1, 400000) g;" -c "VACUUM ANALYZE"
  fi
done

cargo build --release --locked -q
BIN=$PWD/target/release/eternia-backup
WORK=$(mktemp -d /tmp/eb-bench-dbs.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
URL=postgres://postgres@127.0.0.1:5432
EB="$BIN backup --no-kubernetes --no-prune --compression zstd"
FURTHER="${DBS[1]},${DBS[2]}"
declare -A CMD=(
  [bare_seq]="for d in ${DBS[*]}; do pg_dump -d \$d -Fc -Z0 > /dev/null; done"
  [bare_par]="for d in ${DBS[*]}; do pg_dump -d \$d -Fc -Z0 > /dev/null & done; wait"
  [one]="rm -rf $WORK/one && mkdir $WORK/one && DATABASE_URL=$URL/${DBS[0]} BACKUP_DATABASES=$FURTHER $EB --backup-dir $WORK/one"
  [par]="for d in ${DBS[*]}; do rm -rf $WORK/\$d && mkdir $WORK/\$d && DATABASE_URL=$URL/\$d $EB --backup-dir $WORK/\$d & done; wait"
)
ORDER=(bare_seq bare_par one par)
REPEAT=${REPEAT:-3}
declare -A TIMES RSS
for db in "${DBS[@]}"; do psql -q -d "$db" -c "SELECT count(*) FROM documents" >/dev/null; done
for round in $(seq 1 "$REPEAT"); do
  for k in "${ORDER[@]}"; do
    /usr/bin/time -f '%e %M' -o "$WORK/time" bash -c "${CMD[$k]}" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
    read -r t m < "$WORK/time"
    TIMES[$k]="${TIMES[$k]:-} $t"
    RSS[$k]=$(( ${RSS[$k]:-0} > m ? ${RSS[$k]:-0} : m ))
  done
  echo "round $round done" >&2
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
for k in "${ORDER[@]}"; do declare "t_$k=$(median "${TIMES[$k]}")"; done
size_one=$(stat -c %s "$WORK"/one/*.tar.zst)
SIZES=$(for db in "${DBS[@]}"; do psql -Atc "SELECT pg_size_pretty(pg_database_size('$db'))"; done | paste -sd, -)
cat <<TABLE
three databases ($SIZES), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), median of $REPEAT rounds

| run | wall s | × bare pg_dump one after another |
|---|---|---|
| bare pg_dump -Fc -Z0 of the three, one after another | $t_bare_seq | 1.00 |
| bare pg_dump of the three at once | $t_bare_par | $(ratio "$t_bare_par" "$t_bare_seq") |
| eternia-backup, one archive of the three (BACKUP_DATABASES, zstd; $((size_one / 1048576)) MiB) | $t_one | $(ratio "$t_one" "$t_bare_seq") |
| three eternia-backup runs at once, one database each (zstd) | $t_par | $(ratio "$t_par" "$t_bare_seq") |
TABLE
