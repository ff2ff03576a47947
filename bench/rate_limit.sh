#!/usr/bin/env bash
# rate_limit.sh - what rate limiting costs, side by side with the same route without it, in one run.
#
#   bench/rate_limit.sh                      3 interleaved rounds of 8 s per route
#   ROUNDS=5 DURATION=10 bench/rate_limit.sh
#   MODE=callgrind bench/rate_limit.sh       instructions per request of each route, counted by valgrind
#
# One Turnpike process (one worker thread, pinned to core 0, no access log) with routes to the same backend:
#   /plain          no authentication, no limit (the plain-proxy figure)
#   /key-plain      API key of a consumer, no limit (what keying by consumer needs before any limit; its path is
#                   as long as the limited routes', so path handling costs the same)
#   /key-local      API key + a local token bucket keyed by consumer (the issue's target: <= 3 % of /key-plain)
#   /key-quiet      the same without the RateLimit headers (`headers: { ietf: false }`): the decision alone
#   /key-redis      API key + the same token bucket in Redis, exact: one round trip per request (<= 15 %)
#   /key-hybrid     API key + the same token bucket in Redis, taken in batches of 100 per instance (<= 5 %)
# The Redis routes are left out when no Redis answers on 127.0.0.1:6379 (REDIS=0 leaves them out too).
# The limits are far above what the machine can send, so every request is allowed: the cost measured is the
# decision on the path every request takes. wrk (core 1, with the backend) sends the same request everywhere.
# Rounds interleave the routes; ratios are paired per round (route / plain of the same round).
# Loopback only; every wrk run is bounded (-d plus `timeout`); everything started is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
RIG=${RIG:-$(cd "$HERE/../../shared/bench" 2>/dev/null && pwd || true)}
BACKEND_BIN=${BACKEND_BIN:-$RIG/target/release/bench-backend}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-8090}
ROUTES=(plain key-plain key-local key-quiet)
if [[ ${REDIS:-1} == 1 ]] && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    ROUTES+=(key-redis key-hybrid)
fi
OUT=${RESULTS_DIR:-$HERE/results/rate-limit-$(date +%Y%m%d-%H%M%S)}

log() { printf '[rate_limit.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null || { log "wrk not found (apt-get install wrk)"; exit 2; }
prepare_run
KEY=bench-key-7f3a9c1e5b2d4f6a8c0e
PREFIX="turnpike:bench:$$:"

cat >"$TMP/turnpike.yaml" <<YAML
server: { workers: 1, access_log: { enabled: false }, watch: false, redis: { url: "redis://127.0.0.1:6379", key_prefix: "$PREFIX" } }
listeners: [{ name: bench, address: "127.0.0.1:$PORT" }]
upstreams: { backend: { endpoints: ["127.0.0.1:9000"] } }
auth_policies:
  key: { api_key: { header: x-api-key } }
consumers:
  - { id: bench, plan: gold, keys: [{ key: "$KEY" }] }
rate_limits:
  local:
    limits: [{ name: per-consumer, key: consumer, algorithm: token_bucket, limit: 1000000000, per: 1s }]
  quiet:
    headers: { ietf: false }
    limits: [{ name: per-consumer, key: consumer, algorithm: token_bucket, limit: 1000000000, per: 1s }]
  redis:
    store: redis
    limits: [{ name: per-consumer, key: consumer, algorithm: token_bucket, limit: 1000000000, per: 1s }]
  hybrid:
    store: hybrid
    batch: 100
    limits: [{ name: per-consumer, key: consumer, algorithm: token_bucket, limit: 1000000000, per: 1s }]
routes:
  - { id: plain, match: { prefix: /plain }, upstream: backend }
  - { id: key-plain, match: { prefix: /key-plain }, upstream: backend, auth: { policies: [key] } }
  - { id: key-local, match: { prefix: /key-local }, upstream: backend, auth: { policies: [key] }, rate_limit: { policies: [local] } }
  - { id: key-quiet, match: { prefix: /key-quiet }, upstream: backend, auth: { policies: [key] }, rate_limit: { policies: [quiet] } }
  - { id: key-redis, match: { prefix: /key-redis }, upstream: backend, auth: { policies: [key] }, rate_limit: { policies: [redis] } }
  - { id: key-hybrid, match: { prefix: /key-hybrid }, upstream: backend, auth: { policies: [key] }, rate_limit: { policies: [hybrid] } }
YAML
if [[ ! " ${ROUTES[*]} " =~ " key-redis " ]]; then
    # Without Redis: no Redis policies or routes (the config must not need a server that is not there).
    python3 - "$TMP/turnpike.yaml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r', redis: \{[^}]*\} \}', ' }', s, count=1)
s = re.sub(r'  redis:\n(    .*\n)+', '', s)
s = re.sub(r'  hybrid:\n(    .*\n)+', '', s)
s = "\n".join(l for l in s.split("\n") if "key-redis" not in l and "key-hybrid" not in l)
open(p, "w").write(s)
PY
fi
cp "$TMP/turnpike.yaml" "$OUT/turnpike.yaml"

taskset -c "$LOAD_CPU" "$BACKEND_BIN" >"$OUT/backend.out" 2>&1 &
PIDS+=($!)
if [[ ${MODE:-wrk} == callgrind ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.%p" \
        "$HERE/../target/release/turnpike" run -c "$TMP/turnpike.yaml" --no-control-socket >"$OUT/turnpike.out" 2>&1 &
else
    taskset -c "$PROXY_CPU" "$HERE/../target/release/turnpike" run -c "$TMP/turnpike.yaml" --no-control-socket \
        >"$OUT/turnpike.out" 2>&1 &
fi
TPID=$!
PIDS+=($TPID)
for _ in $(seq 1 300); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/plain" && break
    sleep 0.1
done

# Every limited route must answer with the rate-limit headers.
for r in "${ROUTES[@]}"; do
    headers=$(curl -s -o /dev/null -D - -H "x-api-key: $KEY" "http://127.0.0.1:$PORT/$r")
    grep -q '^HTTP/1.1 200' <<<"$headers" || { log "$r: not 200"; echo "$headers" >&2; exit 1; }
    if [[ $r == key-* && $r != key-plain && $r != key-quiet ]] && ! grep -qi '^ratelimit:' <<<"$headers"; then
        log "$r: no RateLimit header"
        exit 1
    fi
done

run_wrk() { # <route> <seconds> <out>
    timeout $(($2 + 15)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2s" --latency \
        -H "x-api-key: $KEY" "http://127.0.0.1:$PORT/$1" >"$3" 2>&1 || log "wrk exited non-zero ($1)"
}

if [[ ${MODE:-wrk} == callgrind ]]; then
    callgrind_per_route "$TPID" "$OUT" "${ROUTES[@]}"
    log "raw results in $OUT"
    exit 0
fi

interleaved_rounds "${ROUTES[@]}"

python3 "$HERE/paired.py" "$RESULTS" | tee "$OUT/summary.txt"
# The issue's figures are relative to the route with the same authentication and no limit.
python3 "$HERE/paired.py" "$RESULTS" key-plain | tee -a "$OUT/summary.txt"
redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "${PREFIX}*" 2>/dev/null | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1 || true
log "raw results in $OUT"
