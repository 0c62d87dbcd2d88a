#!/usr/bin/env bash
# Restore benchmark (issue 16: restore at the floor). Uses the ~1 GB database of scripts/bench-db.sh, backs
# it up once (zstd), then times in the same run, as medians of rounds in rotating order:
#   bare      `pg_restore -j2` from a local dump file into a fresh database          (the baseline)
#   swap+     `eternia-backup restore --mode swap` over an existing database, safety backup on (as the
#             chart runs it; without Kubernetes a swap restore's safety backup is empty: the replaced
#             database is the way back, and the ConfigMaps/Secrets it would hold are not there)
#   swap      the same with --no-safety-backup
#   clean+    `--mode clean` over an existing database, safety backup on (a full backup of it first)
#   clean     the same with --no-safety-backup
#   stream1   `--jobs 1` (one streamed pg_restore), --no-safety-backup, into a fresh database
#   seed      the seed's `gunzip | psql` of a plain SQL dump
# Every eternia-backup run loads with the default --jobs (2 on 2 cores) and verifies every checksum. The
# peak RSS of each, the phases of one swap restore (from its log), and whether anything but a safety
# backup was written to the volume are printed too. Usage: [ROUNDS=3] scripts/bench-restore.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DB=eb_bench_x1
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
scripts/bench-db.sh 1
cargo build --release --locked -q
BIN=$PWD/target/release/eternia-backup
WORK=$(mktemp -d /tmp/eb-rbench.XXXXXX)
VARIANTS=(bare swap+ swap clean+ clean stream1 seed)
target_of() { echo "${DB}_r_$(tr -d '+' <<<"$1")$([[ $1 == *+ ]] && echo _s || true)"; }
cleanup() {
  rm -rf "$WORK"
  for v in "${VARIANTS[@]}"; do dropdb --if-exists "$(target_of "$v")"; done
  psql -Atc "SELECT datname FROM pg_database WHERE datname LIKE '${DB}\_r\_%'" | while read -r d; do dropdb --if-exists "$d"; done
}
trap cleanup EXIT
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
VOL=$WORK/volume   # the backup volume: only archives, sidecars and safety backups may appear there
mkdir "$VOL"
"$BIN" --backup-dir "$VOL" backup --no-kubernetes --no-prune --compression zstd >/dev/null 2>&1
pg_dump -d "$DB" -Fc -Z0 -f "$WORK/db.dump"
pg_dump -d "$DB" | gzip -1 > "$WORK/db.sql.gz"
ARCHIVE=$(cd "$VOL" && ls eternia-backup-*.tar.zst)
EB="$BIN --backup-dir $VOL restore $ARCHIVE --no-kubernetes"

# Each run starts from the same state: the previous run's dirty pages flushed (CHECKPOINT + sync), so no
# run pays for the one before it.
settle() { psql -qAtc CHECKPOINT >/dev/null; sync; sleep 1; }
ROUNDS=${ROUNDS:-3}
declare -A T M
volume_files() { (cd "$VOL" && ls -A | grep -v -e '-safety-' -e '^\.eternia-backup\.lock$' | sort); }
BEFORE=$(volume_files)
EXTRA=""
run_one() {
  local v=$1 into
  into=$(target_of "$v")
  dropdb --if-exists "$into"
  case $v in
    # Over an existing database: the restore replaces it (and, with the safety backup, keeps it first).
    swap+|swap|clean+|clean) createdb -T "$DB" "$into" ;;
    *) createdb "$into" ;;
  esac
  case $v in
    bare) cmd="pg_restore -j2 -d $into $WORK/db.dump" ;;
    swap+) cmd="$EB --mode swap --target-database $into" ;;
    swap) cmd="$EB --mode swap --no-safety-backup --target-database $into" ;;
    clean+) cmd="$EB --mode clean --target-database $into" ;;
    clean) cmd="$EB --mode clean --no-safety-backup --target-database $into" ;;
    stream1) cmd="$EB --jobs 1 --no-safety-backup --target-database $into" ;;
    seed) cmd="gunzip -c $WORK/db.sql.gz | psql -q -d $into" ;;
  esac
  settle
  /usr/bin/time -f '%e %M' -o "$WORK/time" sh -c "$cmd" >/dev/null 2>"$WORK/stderr-$v" || { cat "$WORK/stderr-$v" >&2; exit 1; }
  read -r t m < "$WORK/time"
  T[$v]="${T[$v]:-} $t"; M[$v]="${M[$v]:-} $m"
  psql -Atc "SELECT datname FROM pg_database WHERE datname LIKE '${into}\_%'" | while read -r d; do dropdb "$d"; done
  dropdb --if-exists "$into"
  [[ "$(volume_files)" == "$BEFORE" ]] || EXTRA="${EXTRA:+$EXTRA, }$v"
  rm -f "$VOL"/*-safety-*
}
n=${#VARIANTS[@]}
for round in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do run_one "${VARIANTS[$(( (i + round - 1) % n ))]}"; done
  echo "round $round:$(for k in "${VARIANTS[@]}"; do printf ' %s=%s' "$k" "$(echo "${T[$k]}" | awk '{print $NF}')"; done)" >&2
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
declare -A MED RSS
for k in "${VARIANTS[@]}"; do MED[$k]=$(echo "${T[$k]}" | median); RSS[$k]=$(( $(echo "${M[$k]}" | median) / 1024 )); done
label() {
  case $1 in
    bare) echo "bare pg_restore -j2 from a local dump file" ;;
    swap+) echo "eternia-backup restore --mode swap, safety backup on (none without Kubernetes)" ;;
    swap) echo "eternia-backup restore --mode swap --no-safety-backup" ;;
    clean+) echo "eternia-backup restore --mode clean, safety backup on (a full backup first)" ;;
    clean) echo "eternia-backup restore --mode clean --no-safety-backup" ;;
    stream1) echo "eternia-backup restore --jobs 1 (one streamed pg_restore)" ;;
    seed) echo "seed: gunzip | psql" ;;
  esac
}
echo "restore of $DB ($(psql -Atc "SELECT pg_size_pretty(pg_database_size('$DB'))")), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), median of $ROUNDS rounds (rotating order)"
echo
echo "| run | wall s | × pg_restore -j2 | peak RSS MiB |"
echo "|---|---|---|---|"
for k in "${VARIANTS[@]}"; do
  rss=${RSS[$k]}; [[ $k == bare || $k == seed ]] && rss=""
  echo "| $(label "$k") | ${MED[$k]} | $(ratio "${MED[$k]}" "${MED[bare]}") | $rss |"
done
echo
echo "written to the volume beyond a safety backup: ${EXTRA:-nothing}"
echo
# The phases of the last swap restore, from its log's timestamps: each line starts a phase.
echo "phases of one swap restore (--no-safety-backup), s:"
awk '
  function t(s) { split(substr(s, 12, 15), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
  /restoring/ && !start { start = t($1); prev = start; name = "versions, objects and globals" }
  /pre-data: the schema/ { printf "  %-42s %6.2f\n", name, t($1) - prev; prev = t($1); name = "pre-data (pg_restore)" }
  /data: streamed into/ { printf "  %-42s %6.2f\n", name, t($1) - prev; prev = t($1); name = "data (verify + COPY)" }
  /built while the rest loads/ && !early { early = t($1) - prev }
  /post-data: indexes, constraints/ { printf "  %-42s %6.2f\n", name, t($1) - prev; prev = t($1); name = "post-data left (pg_restore -j)" }
  /row counts match/ { printf "  %-42s %6.2f\n", name, t($1) - prev; prev = t($1); name = "row counts, rename" }
  /^[0-9][0-9][0-9][0-9]-/ { last = t($1) }
  END { if (start) printf "  %-42s %6.2f\n", name, last - prev; if (early) printf "  (the first indexes began building %.2f s into the data)\n", early }
' "$WORK/stderr-swap"
