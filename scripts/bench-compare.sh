#!/usr/bin/env bash
# "No slower than before": the backup (zstd), the default restore (into a new database, --no-safety-backup)
# and a swap restore over a copy of the database (--no-safety-backup) of the benchmark database, with this
# tree's release binary and with the one built from REV, in interleaved rounds (median; which side runs
# first alternates), beside bare `pg_dump -Fc -Z0` for scale. The archive both restore is written by REV's
# binary, so an older archive format is what both read.
# Usage: scripts/bench-compare.sh REV [ROUNDS]   e.g. scripts/bench-compare.sh c44f872 5
# Needs what scripts/bench-backup.sh needs; builds REV in a worktree under /tmp (a release build: minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: scripts/bench-compare.sh REV [ROUNDS]}
ROUNDS=${2:-5}
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

WORK=$(mktemp -d /var/tmp/eb-compare.XXXXXX)
trap 'git worktree remove --force "$WORK/tree" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git worktree add -f -q "$WORK/tree" "$REV"
(cd "$WORK/tree" && CARGO_TARGET_DIR=${OLD_TARGET:-/tmp/eb-compare-target} cargo build --release --locked -q)
OLD=${OLD_TARGET:-/tmp/eb-compare-target}/release/eternia-backup
cargo build --release --locked -q
NEW=$PWD/target/release/eternia-backup
scripts/bench-db.sh 1
DB=eb_bench_x1
URL="postgres://postgres@127.0.0.1:5432"

timed() { # name command…: appends the wall time to T[name]
  local name=$1; shift
  /usr/bin/time -f '%e' -o "$WORK/t" "$@" >/dev/null 2>"$WORK/err" || { tail "$WORK/err" >&2; exit 1; }
  T[$name]="${T[$name]:-} $(cat "$WORK/t")"
}
declare -A T
drop_swapped() {
  psql -Atd postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'eb\_compare\_s%'" |
    while read -r d; do dropdb --force "$d"; done
}
mkdir "$WORK/archive"
DATABASE_URL=$URL/$DB "$OLD" --backup-dir "$WORK/archive" backup --no-kubernetes --no-prune --compression zstd >/dev/null 2>&1
for round in $(seq 1 "$ROUNDS"); do
  timed bare sh -c "pg_dump -d $DB -Fc -Z0 > /dev/null"
  # Which side goes first alternates: the second run of a pair pays for the first's files being freed.
  sides="old new"; ((round % 2 == 0)) && sides="new old"
  for side in $sides; do
    bin=$OLD; [[ $side == new ]] && bin=$NEW
    rm -rf "$WORK/b" && mkdir "$WORK/b"
    timed "backup_$side" env DATABASE_URL="$URL/$DB" "$bin" --backup-dir "$WORK/b" backup --no-kubernetes --no-prune --compression zstd
    psql -qd postgres -c "DROP DATABASE IF EXISTS eb_compare_r WITH (FORCE)" -c CHECKPOINT 2>/dev/null
    sync
    timed "restore_$side" env DATABASE_URL="$URL/eb_compare_r" "$bin" --backup-dir "$WORK/archive" restore latest --no-kubernetes --no-safety-backup
    # Swap mode over an existing copy of the database (the scratch database loaded while verifying).
    drop_swapped
    createdb -T "$DB" eb_compare_s
    psql -qd postgres -c CHECKPOINT 2>/dev/null
    sync
    timed "swap_$side" env DATABASE_URL="$URL/eb_compare_s" "$bin" --backup-dir "$WORK/archive" restore latest --no-kubernetes --no-safety-backup --mode swap
  done
  echo "round $round done" >&2
done
psql -qd postgres -c "DROP DATABASE IF EXISTS eb_compare_r WITH (FORCE)" 2>/dev/null
drop_swapped
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
bare=$(median "${T[bare]}")
cat <<TABLE
$DB, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), median of $ROUNDS interleaved rounds; before = $REV

| run | before s | after s | after / before | after × bare pg_dump |
|---|---|---|---|---|
TABLE
for op in backup restore swap; do
  o=$(median "${T[${op}_old]}"); n=$(median "${T[${op}_new]}")
  scale=$(ratio "$n" "$bare"); [[ $op != backup ]] && scale="(see bench-restore.sh)"
  label=$op; [[ $op == swap ]] && label="restore --mode swap over a copy"
  echo "| $label | $o | $n | $(ratio "$n" "$o") | $scale |"
done
echo "(bare pg_dump -Fc -Z0: $bare s)"
