#!/usr/bin/env bash
# Installs Garage (a production S3-compatible object store, from crates.io) into the cache directory, once.
# Building it takes ~20-25 minutes on 2 cores; later runs reuse the binary. Prints the binary's path.
set -euo pipefail
CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
GARAGE_VERSION=2.5.0
BIN=$CACHE/garage/bin/garage
mkdir -p "$CACHE"
# One build at a time: a second caller (e.g. started early by .ci/run) waits for the first, then reuses it.
exec 9>"$CACHE/.garage.lock"
flock 9
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  echo "$BIN"
  exit 0
fi
echo "building garage $GARAGE_VERSION into $CACHE/garage (one-time, ~20-25 min on 2 cores)" >&2
mkdir -p "$CACHE"
cargo install garage --version "$GARAGE_VERSION" --locked --root "$CACHE/garage" >&2
echo "$BIN"
