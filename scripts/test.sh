#!/usr/bin/env bash
# The project's one test command (README "Tests"): Rust unit and integration tests against the local
# PostgreSQL and a real S3 server, the chart checks, then the product on a real Kubernetes control plane.
# Installs what it needs (the first run builds Garage and the control plane into ~/.cache/eternia-backup);
# safe to run again. Every stage runs; the exit code is non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
mkdir -p target

# The one-time installs (each reused from ~/.cache/eternia-backup once done, each behind a lock so the stage
# that needs it waits for it) start now, beside the project's own build: on a fresh machine that overlaps
# ~25 min of Garage, ~16 min of control plane and ~20 min of cargo on 2 cores instead of queueing them.
scripts/install-garage.sh >target/install-garage.log 2>&1 &
scripts/install-k8s.sh >target/install-k8s.log 2>&1 &
scripts/install-tools.sh >target/install-tools.log 2>&1 &
echo "==> cargo build (tests)"
cargo test --locked --all-targets --no-run

# A real S3 server (Garage) for the off-site tests; built once into the cache, started here, stopped on exit.
GARAGE_STATE=$(mktemp -d /tmp/eternia-garage.XXXXXX)
trap 'scripts/garage.sh stop "$GARAGE_STATE"; rm -rf "$GARAGE_STATE"' EXIT
scripts/garage.sh start "$GARAGE_STATE" "${GARAGE_PORT:-3900}"
# shellcheck disable=SC1091
source "$GARAGE_STATE/env"
export ETERNIA_REQUIRE_S3=1

echo "==> cargo test"
cargo test --locked --all-targets 2>&1 | tee target/cargo-test.log
# cargo's own summary lines are printed above; keep a plain total for CI readers.
passed=$(grep -Eo '[0-9]+ passed' target/cargo-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/cargo-test.log | awk '{s+=$1} END {print s+0}')

stages_failed=()
echo "==> chart, manifests and image checks"
scripts/test-chart.sh 2>&1 | tee target/chart-test.log || stages_failed+=("chart checks")
chart_passed=$(grep -Eo '[0-9]+ passed' target/chart-test.log | tail -n1 | awk '{print $1+0}' || true)
chart_failed=$(grep -Eo '[0-9]+ failed' target/chart-test.log | tail -n1 | awk '{print $1+0}' || true)

echo "==> the product on a real Kubernetes control plane"
scripts/test-cluster.sh 2>&1 | tee target/cluster-test.log || stages_failed+=("cluster tests")
cluster_passed=$(grep -Eo '[0-9]+ passed' target/cluster-test.log | tail -n1 | awk '{print $1+0}' || true)
cluster_failed=$(grep -Eo '[0-9]+ (failed|error)' target/cluster-test.log | tail -n1 | awk '{print $1+0}' || true)

echo "rust: ${passed} passed, ${failed} failed; chart: ${chart_passed:-0} passed, ${chart_failed:-0} failed;" \
  "cluster: ${cluster_passed:-0} passed, ${cluster_failed:-0} failed"
if ((${#stages_failed[@]})); then
  echo "FAILED: ${stages_failed[*]}" >&2
  exit 1
fi
echo "$((passed + ${chart_passed:-0} + ${cluster_passed:-0})) passed, $((failed + ${chart_failed:-0} + ${cluster_failed:-0})) failed"
