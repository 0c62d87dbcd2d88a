#!/usr/bin/env bash
# Backup benchmark (issue: backup engine). Builds a ~1 GB database (pgbench scale 40 plus 1.5M rows of
# jsonb/text), then times in the same run:
#   1. bare `pg_dump -Fc -Z0 > /dev/null`           (the baseline)
#   2. `eternia-backup backup` with gzip and with zstd (wall time and peak RSS)
#   3. the seed runbook's pipeline: pg_dump | gzip > db.sql.gz; tar czf archive.tar.gz …
#   4. `eternia-backup backup --store both` (zstd) to the volume and a local Garage S3 server, against the
#      seed pipeline followed by `aws s3 cp` (awscli from PyPI) to the same server
# Usage: scripts/bench-backup.sh [FACTOR]   FACTOR=2 doubles the data (for the memory-at-2x figure).
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres), pgbench, GNU time. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
FACTOR=${1:-1}
DB=eb_bench_x${FACTOR}
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

cargo build --release --locked -q
BIN=$PWD/target/release/eternia-backup
WORK=$(mktemp -d /tmp/eb-bench.XXXXXX)
CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
trap 'scripts/garage.sh stop "$WORK/garage"; rm -rf "$WORK"' EXIT
scripts/garage.sh start "$WORK/garage" 3920
# shellcheck disable=SC1091
source "$WORK/garage/env"
if [ ! -x "$CACHE/awscli/bin/aws" ]; then
  python3 -m venv "$CACHE/awscli" && "$CACHE/awscli/bin/pip" install -q 'awscli==1.*'
fi
export AWS_ACCESS_KEY_ID=$S3_TEST_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_TEST_SECRET_KEY AWS_REGION=$S3_TEST_REGION AWS_DEFAULT_REGION=$S3_TEST_REGION

scripts/bench-db.sh "$FACTOR"
SIZE=$(psql -Atc "SELECT pg_size_pretty(pg_database_size('$DB'))")

# runs "$@" under GNU time; prints "seconds max_rss_kib"
measure() {
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  cat "$WORK/time"
}

psql -q -d "$DB" -c "SELECT count(*) FROM documents" >/dev/null   # warm the cache
URL="postgres://postgres@127.0.0.1:5432/$DB"
EB=(env DATABASE_URL="$URL" "$BIN")
S3ENV=(S3_ENDPOINT="$S3_TEST_ENDPOINT" S3_BUCKET="$S3_TEST_BUCKET" S3_FORCE_PATH_STYLE=true S3_PREFIX=bench)
declare -A CMD=(
  [bare]="pg_dump -d $DB -Fc -Z0 > /dev/null"
  [gz]="rm -rf $WORK/gz && mkdir $WORK/gz && ${EB[*]} --backup-dir $WORK/gz backup --no-kubernetes --no-prune --compression gzip"
  [zst]="rm -rf $WORK/zst && mkdir $WORK/zst && ${EB[*]} --backup-dir $WORK/zst backup --no-kubernetes --no-prune --compression zstd"
  [both]="rm -rf $WORK/both && mkdir $WORK/both && env ${S3ENV[*]} ${EB[*]} --backup-dir $WORK/both backup --no-kubernetes --no-prune --compression zstd --store both"
  [seed]="rm -rf $WORK/seed && mkdir -p $WORK/seed/configs && cd $WORK/seed && pg_dump -d $DB | gzip > db.sql.gz && tar czf archive.tar.gz db.sql.gz configs"
  [seeds3]="rm -rf $WORK/seeds3 && mkdir -p $WORK/seeds3/configs && cd $WORK/seeds3 && pg_dump -d $DB | gzip > db.sql.gz && tar czf archive.tar.gz db.sql.gz configs && $CACHE/awscli/bin/aws --endpoint-url $S3_TEST_ENDPOINT s3 cp archive.tar.gz s3://$S3_TEST_BUCKET/seed/archive.tar.gz --only-show-errors"
)
ORDER=(bare gz zst both seed seeds3)
REPEAT=${REPEAT:-3}
declare -A TIMES RSS
# Rounds interleave the runs so that drift (page cache, CPU frequency) hits every variant alike.
for round in $(seq 1 "$REPEAT"); do
  for k in "${ORDER[@]}"; do
    /usr/bin/time -f '%e %M' -o "$WORK/time" sh -c "${CMD[$k]}" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
    read -r t m < "$WORK/time"
    TIMES[$k]="${TIMES[$k]:-} $t"
    RSS[$k]=$(( ${RSS[$k]:-0} > m ? ${RSS[$k]:-0} : m ))
  done
  echo "round $round done" >&2
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in "${ORDER[@]}"; do declare "t_$k=$(median "${TIMES[$k]}")"; done
size_gz=$(stat -c %s "$WORK"/gz/*.tar.gz)
size_zst=$(stat -c %s "$WORK"/zst/*.tar.zst)
size_seed=$(stat -c %s "$WORK"/seed/archive.tar.gz)
rss() { echo $(( RSS[$1] / 1024 )); }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cat <<TABLE
database $DB: $SIZE (factor $FACTOR), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)

| run | wall s | × bare pg_dump | peak RSS MiB | archive MiB |
|---|---|---|---|---|
| bare pg_dump -Fc -Z0 > /dev/null | $t_bare | 1.00 | | |
| eternia-backup gzip (level 1) | $t_gz | $(ratio "$t_gz" "$t_bare") | $(rss gz) | $((size_gz / 1048576)) |
| eternia-backup zstd (level 1) | $t_zst | $(ratio "$t_zst" "$t_bare") | $(rss zst) | $((size_zst / 1048576)) |
| seed pipeline (pg_dump \| gzip; tar czf) | $t_seed | $(ratio "$t_seed" "$t_bare") | | $((size_seed / 1048576)) |
| eternia-backup zstd --store both (volume + Garage S3) | $t_both | $(ratio "$t_both" "$t_bare") | $(rss both) | |
| seed pipeline + aws s3 cp to Garage | $t_seeds3 | $(ratio "$t_seeds3" "$t_bare") | | |

median of $REPEAT interleaved rounds; both vs seed pipeline + upload: $(ratio "$t_seeds3" "$t_both")x faster
TABLE
