#!/usr/bin/env bash
# Restore benchmark (issue: restore). Uses the ~1 GB database of scripts/bench-backup.sh (created if
# missing), backs it up once (zstd), then times in the same run, restoring into fresh databases:
#   1. bare `pg_restore -j2` from a local dump file          (the baseline)
#   2. `eternia-backup restore --no-safety-backup --target-database …` as it runs by default (pg_restore -j
#      from the dump written to the volume during verification: 2 jobs on 2 CPUs) and streamed (--jobs 1)
#   3. the seed's `gunzip | psql` of a plain SQL dump
# eternia-backup's time includes verifying every checksum first. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=eb_bench_x1
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
if [ "$(psql -d "$DB" -Atc "SELECT to_regclass('documents') IS NOT NULL" 2>/dev/null)" != t ]; then
  echo "the benchmark database is missing: run scripts/bench-backup.sh first" >&2; exit 1
fi
cargo build --release --locked -q
BIN=$PWD/target/release/eternia-backup
WORK=$(mktemp -d /tmp/eb-rbench.XXXXXX)
cleanup() {
  rm -rf "$WORK"
  for d in r_bare r_eb1 r_eb2 r_seed; do dropdb --if-exists "${DB}_$d"; done
}
trap cleanup EXIT
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
"$BIN" --backup-dir "$WORK" backup --no-kubernetes --no-prune --compression zstd >/dev/null 2>&1
pg_dump -d "$DB" -Fc -Z0 -f "$WORK/db.dump"
pg_dump -d "$DB" | gzip -1 > "$WORK/db.sql.gz"
ARCHIVE=$(cd "$WORK" && ls eternia-backup-*.tar.zst)

measure() { /usr/bin/time -f '%e %M' -o "$WORK/time" sh -c "$1" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }; cat "$WORK/time"; }
fresh() { dropdb --if-exists "$1"; createdb "$1"; }
# Each run starts from the same state: the previous restore's dirty pages flushed (CHECKPOINT + sync), so
# no run pays for the one before it. The order rotates every round; the table reports medians.
settle() { psql -qAtc CHECKPOINT >/dev/null; sync; sleep 1; }
ROUNDS=${ROUNDS:-3}
declare -A T M
run_one() {
  case $1 in
    bare) cmd="pg_restore -j2 -d ${DB}_r_bare $WORK/db.dump" ;;
    eb1) cmd="$BIN --backup-dir $WORK restore $ARCHIVE --no-kubernetes --no-safety-backup --jobs 1 --target-database ${DB}_r_eb1" ;;
    eb2) cmd="$BIN --backup-dir $WORK restore $ARCHIVE --no-kubernetes --no-safety-backup --target-database ${DB}_r_eb2" ;;
    seed) cmd="gunzip -c $WORK/db.sql.gz | psql -q -d ${DB}_r_seed" ;;
  esac
  fresh "${DB}_r_$1"; settle
  read -r t m < <(measure "$cmd")
  T[$1]="${T[$1]:-} $t"; M[$1]="${M[$1]:-} $m"
  dropdb --if-exists "${DB}_r_$1"
}
order=(bare eb1 eb2 seed)
for round in $(seq "$ROUNDS"); do
  for i in 0 1 2 3; do run_one "${order[$(( (i + round - 1) % 4 ))]}"; done
  echo "round $round:$(for k in bare eb1 eb2 seed; do printf ' %s=%s' "$k" "$(echo "${T[$k]}" | awk '{print $NF}')"; done)" >&2
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
t_bare=$(echo "${T[bare]}" | median); t_eb1=$(echo "${T[eb1]}" | median); t_eb2=$(echo "${T[eb2]}" | median); t_seed=$(echo "${T[seed]}" | median)
m_eb1=$(echo "${M[eb1]}" | median); m_eb2=$(echo "${M[eb2]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cat <<TABLE
restore of $DB ($(psql -Atc "SELECT pg_size_pretty(pg_database_size('$DB'))")), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), median of $ROUNDS rounds (rotating order)

| run | wall s | × pg_restore -j2 | peak RSS MiB |
|---|---|---|---|
| bare pg_restore -j2 from a local dump file | $t_bare | 1.00 | |
| eternia-backup restore, default: verify + dump file + pg_restore -j$(nproc | awk '{print ($1 < 2 ? 2 : ($1 > 4 ? 4 : $1))}') | $t_eb2 | $(ratio "$t_eb2" "$t_bare") | $((m_eb2 / 1024)) |
| eternia-backup restore --jobs 1: verify + streamed pg_restore | $t_eb1 | $(ratio "$t_eb1" "$t_bare") | $((m_eb1 / 1024)) |
| seed: gunzip \| psql | $t_seed | $(ratio "$t_seed" "$t_bare") | |
TABLE
