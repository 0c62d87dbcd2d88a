#!/usr/bin/env bash
# The project's one test command (README "Tests"): Rust unit and integration tests against the local
# PostgreSQL, then the chart checks. Installs what it needs; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh

echo "==> cargo test"
cargo test --locked --all-targets 2>&1 | tee target/cargo-test.log
# cargo's own summary lines are printed above; keep a plain total for CI readers.
passed=$(grep -Eo '[0-9]+ passed' target/cargo-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/cargo-test.log | awk '{s+=$1} END {print s+0}')

if [ -x scripts/test-chart.sh ]; then
  echo "==> chart, manifests and image checks"
  scripts/test-chart.sh
fi
echo "rust: ${passed} passed, ${failed} failed"
