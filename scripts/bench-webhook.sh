#!/usr/bin/env bash
# Restore webhook under load on loopback (issue 5 targets, 2 cores: >= 20,000 rejected req/s; p99 of a valid
# signed accept <= 5 ms; issue 14: under a flood of distinct sources the rate limiter's memory stays bounded
# and its work per request constant, so the rejected rate holds and the peak RSS stays flat). Drives benches/webhook_server.rs (the real actix app and auth path; restore Jobs go
# to an in-memory Kubernetes API) with wrk. Prints one line per scenario; run on a quiet machine.
#   scripts/bench-webhook.sh            DURATION=10s REJECT_CONNECTIONS=64 ACCEPT_CONNECTIONS=1 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }; }

cargo bench --bench webhook_server --no-run >&2
BIN=$(find target/release/deps -maxdepth 1 -type f -executable -name 'webhook_server-*' -printf '%T@ %p\n' | sort -rn | head -1 | cut -d' ' -f2)
WORK=$(mktemp -d /tmp/eternia-bench-webhook.XXXXXX)
BENCH_HS256_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_HS256_SECRET
SERVER=
trap 'kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
# A fresh server per scenario: the in-memory API keeps every Job created, and a store of tens of thousands
# of Jobs would measure the fake API, not the webhook.
start_server() {
  [ -z "$SERVER" ] || { echo "server peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$SERVER/status")"; kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }
  : >"$WORK/server.out"
  "$BIN" serve >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q LISTENING "$WORK/server.out" && break; sleep 0.1; done
  ADDR=$(awk '/LISTENING/ {print $2}' "$WORK/server.out")
  [ -n "$ADDR" ] || { cat "$WORK/server.err" >&2; exit 1; }
}
start_server

# Tokens: a valid HS256 token, and the same claims signed with another secret (the rejected case).
read -r VALID FORGED < <(python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": "bench", "aud": "eternia-backup", "sub": "ci:bench", "iat": now, "exp": now + 3000}
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
sign = lambda key: head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())
print(sign(os.environ["BENCH_HS256_SECRET"].encode()), sign(b"not-the-secret-not-the-secret-xx"))
PY
)

lua() { # $1 token, $2 expected status class
  cat <<LUA
wrk.method = "POST"
wrk.body = '{"backup":"latest","dryRun":true,"reason":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $1"
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
}
lua "$FORGED" >"$WORK/reject.lua"
lua "$VALID" >"$WORK/accept.lua"

# Sanity: the forged token is refused with 401, the valid one accepted with 202.
test "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $FORGED" -H 'Content-Type: application/json' -d '{"backup":"latest","dryRun":true}' "http://$ADDR/v1/restores")" = 401
test "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $VALID" -H 'Content-Type: application/json' -d '{"backup":"latest","dryRun":true}' "http://$ADDR/v1/restores")" = 202

for round in $(seq "$ROUNDS"); do
  start_server
  r=$(wrk -t2 -c"${REJECT_CONNECTIONS:-64}" -d"$DURATION" -s "$WORK/reject.lua" "http://$ADDR/v1/restores" | grep RESULT)
  echo "round $round rejected (forged signature, 401): ${r#RESULT }"
  start_server
  a=$(wrk -t1 -c"${ACCEPT_CONNECTIONS:-1}" -d"$DURATION" -s "$WORK/accept.lua" "http://$ADDR/v1/restores" | grep RESULT)
  echo "round $round accepted (valid token, 202, Job created): ${a#RESULT }"
done

# The flood: every request from another source (X-Forwarded-For, trusted here), the rate limit on. Over a
# round this is far more distinct sources than the limiter keeps (100,000): its state must rotate, not grow.
cat >"$WORK/flood.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"backup":"latest","dryRun":true,"reason":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $FORGED"
local n = 0
request = function()
  n = n + 1
  wrk.headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format()
end
$(lua "$FORGED" | sed -n '/^done = /,$p')
LUA
export BENCH_RATE_LIMIT=60 BENCH_TRUST_FORWARDED_FOR=1
for round in $(seq "$ROUNDS"); do
  start_server
  f=$(wrk -t2 -c"${REJECT_CONNECTIONS:-64}" -d"$DURATION" -s "$WORK/flood.lua" "http://$ADDR/v1/restores" | grep RESULT)
  echo "round $round flood of distinct sources (rate limit on, 401): ${f#RESULT }"
done
start_server
