#!/usr/bin/env bash
# The product on a real Kubernetes control plane (tests/cluster): builds the control plane once into the cache
# (scripts/install-k8s.sh), starts it (scripts/k8s.sh), runs pytest tests/cluster against it with the binary
# cargo built (target/debug/eternia-backup, or $ETERNIA_BIN), and stops it, also on failure.
# Needs PostgreSQL (scripts/ensure-postgres.sh) and the chart tools (scripts/install-tools.sh: helm, the venv).
# Usage: scripts/test-cluster.sh [pytest args]   (K8S_ENV=DIR/env reuses a control plane started by hand)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export ETERNIA_CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
export PYTHONDONTWRITEBYTECODE=1

scripts/install-tools.sh
scripts/install-k8s.sh >/dev/null
if [[ ! -x ${ETERNIA_BIN:-target/debug/eternia-backup} ]]; then
  cargo build --locked
fi

if [[ -z ${K8S_ENV:-} ]]; then
  state=$(mktemp -d /tmp/eternia-k8s.XXXXXX)
  trap 'scripts/k8s.sh stop "$state"; rm -rf "$state"' EXIT
  start=$SECONDS
  scripts/k8s.sh start "$state"
  echo "test-cluster: control plane started in $((SECONDS - start)) s"
  export K8S_ENV=$state/env
fi
"$ETERNIA_CACHE/venv/bin/python" -m pytest tests/cluster -p no:cacheprovider -q "$@"
