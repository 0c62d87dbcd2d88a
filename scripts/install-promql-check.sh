#!/usr/bin/env bash
# Builds tests/dashboard/promql-check (the Grafana dashboard's PromQL parsed with Prometheus' own Go parser,
# github.com/prometheus/prometheus/promql/parser, pinned by its go.mod/go.sum) into the tools' cache, once per
# source: $CACHE/promql-check/<sha256 of go.mod, go.sum, main.go and the Go version>/promql-check. Prints the
# binary's path. Cold: ~1 minute on 2 cores (module download and compile); warm: instant.
# Needs the Go toolchain and the Go module proxy. scripts/install-tools.sh runs it; so does the chart test
# (tests/dashboard/dashboard_queries.py) when run on its own.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
SRC=$ROOT/tests/dashboard/promql-check
log() { printf 'install-promql-check: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "go not found: install the Go toolchain (the version tests/dashboard/promql-check/go.mod names, or newer)"
  exit 1
fi
key=$({ cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go"; go env GOVERSION; } | sha256sum | cut -d' ' -f1)
DEST=$CACHE/promql-check/$key
BIN=$DEST/promql-check
if [[ -x $BIN ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE"
# One build at a time: a second caller (install-tools.sh beside a test run) waits for the first.
exec 9>"$CACHE/.promql-check.lock"
flock 9
if [[ ! -x $BIN ]]; then
  start=$SECONDS
  log "building promql-check ($(awk '$1 == "require" && $2 ~ /prometheus\/prometheus$/ {print $2, $3}' "$SRC/go.mod"))"
  # Builds of older sources are of no further use.
  rm -rf "$CACHE/promql-check"
  mkdir -p "$DEST"
  (cd "$SRC" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$DEST/promql-check.tmp" .)
  mv "$DEST/promql-check.tmp" "$BIN"
  log "promql-check built in $((SECONDS - start)) s"
fi
echo "$BIN"
