#!/usr/bin/env bash
# Recovery-time benchmark on the real control plane (tests/cluster/bench_rto.py): a signed restore request to
# the webhook -> restore Job -> verify, safety backup, database, ConfigMaps/Secrets, rollout -> Job Complete
# and the rollout done, for a copy of the ~1.1 GB benchmark database, against bare `pg_restore -j2` from a
# local file in the same run. Creates the benchmark database once (scripts/bench-db.sh). ROUNDS=3 by default.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export ETERNIA_CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup} PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
scripts/bench-db.sh 1
scripts/install-tools.sh
cargo build --release --locked -q
export ETERNIA_BIN=$ROOT/target/release/eternia-backup
if [[ -z ${K8S_ENV:-} ]]; then
  state=$(mktemp -d /tmp/eternia-k8s.XXXXXX)
  trap 'scripts/k8s.sh stop "$state"; rm -rf "$state"' EXIT
  scripts/k8s.sh start "$state"
  export K8S_ENV=$state/env
fi
"$ETERNIA_CACHE/venv/bin/python" tests/cluster/bench_rto.py
