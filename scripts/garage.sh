#!/usr/bin/env bash
# Starts or stops a single-node Garage S3 server on 127.0.0.1 for the tests.
#   scripts/garage.sh start DIR [PORT]   writes DIR/env with S3_TEST_* variables to source
#   scripts/garage.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?state directory}; port=${3:-3900}
case "$cmd" in
start)
  bin=$("$(dirname "$0")/install-garage.sh")
  mkdir -p "$dir"
  rpc=$((port + 1))
  # The credentials are test-only values for a server bound to loopback.
  access=GK0123456789abcdef01234567
  secret=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(printf '%064d' 0 | tr 0 a)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
TOML
  GARAGE_DEFAULT_ACCESS_KEY=$access GARAGE_DEFAULT_SECRET_KEY=$secret GARAGE_DEFAULT_BUCKET=eternia-test \
    RUST_LOG=warn nohup "$bin" -c "$dir/garage.toml" server --single-node --default-bucket >"$dir/garage.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then break; fi
    sleep 0.2
  done
  # The default bucket and key are created shortly after the port opens.
  sleep 2
  cat > "$dir/env" <<ENV
export GARAGE_BIN=$bin
export S3_TEST_ENDPOINT=http://127.0.0.1:$port
export S3_TEST_BUCKET=eternia-test
export S3_TEST_REGION=garage
export S3_TEST_ACCESS_KEY=$access
export S3_TEST_SECRET_KEY=$secret
ENV
  echo "garage listening on 127.0.0.1:$port (log $dir/garage.log)" >&2
  ;;
stop)
  if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; rm -f "$dir/pid"; fi
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
