#!/usr/bin/env bash
# Dependency audit with cargo-deny (installed from crates.io into the cache once): every dependency's
# license is on the allow list in .ci/deny.toml, no wildcard versions, crates.io only. Runs offline.
# Advisories need the RustSec database from GitHub (unreachable from CI here): where GitHub is reachable,
#   scripts/audit.sh advisories
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
DENY=$CACHE/cargo-deny/bin/cargo-deny
mkdir -p "$CACHE"
exec 9>"$CACHE/.cargo-deny.lock"
flock 9
if ! [ -x "$DENY" ]; then
  echo "installing cargo-deny into $CACHE/cargo-deny (one-time, ~10 min on 2 cores)" >&2
  cargo install cargo-deny --version 0.20.2 --locked --root "$CACHE/cargo-deny" >&2
fi
[ "${1:-}" = --install-only ] && exit 0
# cargo-deny reads `cargo metadata` offline, which needs every crate of the lockfile on disk, including
# those for other platforms that a build here never downloads: fetch them (from crates.io) first.
cargo fetch --locked >/dev/null
if [ "${1:-}" = advisories ]; then
  exec "$DENY" deny --config .ci/deny.toml --locked check advisories
fi
exec "$DENY" deny --config .ci/deny.toml --offline --locked check licenses bans sources
