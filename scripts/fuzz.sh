#!/usr/bin/env bash
# libFuzzer runs of tests/fuzz (cargo-fuzz). Installs cargo-fuzz into the cache once; builds the targets with
# AddressSanitizer (stable toolchain with RUSTC_BOOTSTRAP=1, as cargo-fuzz needs -Z flags).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default 60 s each, all targets
#   scripts/fuzz.sh --build-only                         install cargo-fuzz and build the targets, run nothing
# A crash is saved under tests/fuzz/artifacts/<target>/; turn it into a regression test in
# tests/backup/fuzz_inputs.rs and commit the input to tests/fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(archive_walk webhook_auth config_parse dump_stream)
mkdir -p "$CACHE"
exec 9>"$CACHE/.cargo-fuzz.lock"
flock 9
if ! [ -x "$CACHE/cargo-fuzz/bin/cargo-fuzz" ]; then
  echo "installing cargo-fuzz into $CACHE/cargo-fuzz (one-time)" >&2
  cargo install cargo-fuzz --version 0.13.1 --locked --root "$CACHE/cargo-fuzz" >&2
fi
export PATH="$CACHE/cargo-fuzz/bin:$PATH" RUSTC_BOOTSTRAP=1
if [ "$SECONDS_PER_TARGET" = --build-only ]; then
  # Build the instrumented targets now (as `cargo fuzz run` would), e.g. beside other builds on a cold machine.
  exec cargo fuzz build --fuzz-dir tests/fuzz --target-dir target/fuzz
fi
for t in "${TARGETS[@]}"; do
  mkdir -p "tests/fuzz/corpus/$t" "target/fuzz-corpus/$t"
  echo "==> fuzz $t for ${SECONDS_PER_TARGET}s"
  # New inputs go to target/ (not committed); the committed seeds are read-only inputs.
  status=0
  cargo fuzz run --fuzz-dir tests/fuzz --target-dir target/fuzz "$t" "target/fuzz-corpus/$t" "tests/fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
    >"target/fuzz-$t.log" 2>&1 || status=$?
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|Test unit written)" "target/fuzz-$t.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "target/fuzz-$t.log" >&2
    echo "fuzz target $t failed (exit $status): see target/fuzz-$t.log and tests/fuzz/artifacts/$t" >&2
    exit 1
  fi
done
