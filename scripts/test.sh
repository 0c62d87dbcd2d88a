#!/usr/bin/env bash
# The project's one test command (README "Tests"): Rust unit and integration tests against the local
# PostgreSQL, then the chart checks. Installs what it needs; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh

# A real S3 server (Garage) for the off-site tests; built once into the cache, started here, stopped on exit.
GARAGE_STATE=$(mktemp -d /tmp/eternia-garage.XXXXXX)
trap 'scripts/garage.sh stop "$GARAGE_STATE"; rm -rf "$GARAGE_STATE"' EXIT
scripts/garage.sh start "$GARAGE_STATE" "${GARAGE_PORT:-3900}"
# shellcheck disable=SC1091
source "$GARAGE_STATE/env"
export ETERNIA_REQUIRE_S3=1

echo "==> cargo test"
mkdir -p target
cargo test --locked --all-targets 2>&1 | tee target/cargo-test.log
# cargo's own summary lines are printed above; keep a plain total for CI readers.
passed=$(grep -Eo '[0-9]+ passed' target/cargo-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/cargo-test.log | awk '{s+=$1} END {print s+0}')

if [ -x scripts/test-chart.sh ]; then
  echo "==> chart, manifests and image checks"
  scripts/test-chart.sh
fi
echo "rust: ${passed} passed, ${failed} failed"
