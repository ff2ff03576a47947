#!/usr/bin/env bash
# auth.sh - what edge authentication costs, side by side with the plain proxy, in one run.
#
#   bench/auth.sh                      3 interleaved rounds of 8 s per route
#   ROUNDS=5 DURATION=10 bench/auth.sh
#   MODE=callgrind bench/auth.sh       instructions per request of each route, counted by valgrind (repeatable on
#                                      a noisy machine; the same binary and requests under callgrind)
#
# One Turnpike process (one worker thread, pinned to core 0, no access log) with five routes to the same backend:
#   /plain          no authentication (the plain-proxy figure)
#   /jwt            RS256 JWT, static public key, verified-token cache on (the default)
#   /jwt-uncached   the same policy with `cache: { max_entries: 0 }`: a signature check on every request
#   /key            API key of a consumer (SHA-256 + constant-time compare)
#   /jwt-key        JWT and API key, both required (`require: all`)
# wrk (core 1, with the backend) sends every route the same request: `Authorization: Bearer <RS256 JWT>` and
# `x-api-key`, so the bytes on the wire are the same everywhere (the plain route forwards both headers; the
# others remove them). Rounds interleave the routes; ratios are paired per round (route / plain of the same round).
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
ROUTES=(plain jwt jwt-uncached key jwt-key)
OUT=${RESULTS_DIR:-$HERE/results/auth-$(date +%Y%m%d-%H%M%S)}

log() { printf '[auth.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null || { log "wrk not found (apt-get install wrk)"; exit 2; }
prepare_run

# An RSA key pair and an RS256 token signed with it (what an identity provider would issue).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/rsa.key" 2>/dev/null
openssl pkey -in "$TMP/rsa.key" -pubout -out "$TMP/rsa.pub"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
head=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
exp=$(($(date +%s) + 86400))
body=$(printf '{"iss":"https://idp.bench","aud":"bench","sub":"u-1001","roles":["reader"],"scope":"read write","exp":%d}' "$exp" | b64url)
sig=$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -sign "$TMP/rsa.key" | b64url)
TOKEN="$head.$body.$sig"
KEY=bench-key-7f3a9c1e5b2d4f6a8c0e

cat >"$TMP/turnpike.yaml" <<EOF
server: { workers: 1, access_log: { enabled: false }, watch: false }
listeners: [{ name: bench, address: "127.0.0.1:$PORT" }]
upstreams: { backend: { endpoints: ["127.0.0.1:9000"] } }
auth_policies:
  jwt:
    jwt: { algorithms: [RS256], keys: [{ kid: bench, pem_file: rsa.pub }], issuer: "https://idp.bench", audiences: [bench] }
  jwt-uncached:
    jwt: { algorithms: [RS256], keys: [{ kid: bench, pem_file: rsa.pub }], issuer: "https://idp.bench", audiences: [bench],
           cache: { max_entries: 0 } }
  key:
    api_key: { header: x-api-key }
consumers:
  - { id: bench, plan: gold, roles: [reader], keys: [{ key: "$KEY" }] }
routes:
  - { id: plain, match: { prefix: /plain }, upstream: backend }
  - { id: jwt, match: { prefix: /jwt }, upstream: backend, auth: { policies: [jwt] } }
  - { id: jwt-uncached, match: { prefix: /jwt-uncached }, upstream: backend, auth: { policies: [jwt-uncached] } }
  - { id: key, match: { prefix: /key }, upstream: backend, auth: { policies: [key] } }
  - { id: jwt-key, match: { prefix: /jwt-key }, upstream: backend, auth: { policies: [jwt, key], require: all } }
EOF
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

# Every authenticated route must refuse a request without credentials and accept the bench request.
for r in "${ROUTES[@]}"; do
    ok=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" -H "x-api-key: $KEY" \
        "http://127.0.0.1:$PORT/$r")
    bare=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/$r")
    log "$r: with credentials $ok, without $bare"
    [[ $ok == 200 ]] || { log "$r does not accept the bench credentials"; exit 1; }
    [[ $r == plain || $bare == 401 ]] || { log "$r lets a request without credentials through"; exit 1; }
done

run_wrk() { # <route> <seconds> <out>
    timeout $(($2 + 15)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2s" --latency \
        -H "authorization: Bearer $TOKEN" -H "x-api-key: $KEY" "http://127.0.0.1:$PORT/$1" >"$3" 2>&1 \
        || log "wrk exited non-zero ($1)"
}

if [[ ${MODE:-wrk} == callgrind ]]; then
    callgrind_per_route "$TPID" "$OUT" "${ROUTES[@]}"
    log "raw results in $OUT"
    exit 0
fi

interleaved_rounds "${ROUTES[@]}"

python3 "$HERE/paired.py" "$RESULTS" | tee "$OUT/summary.txt"
log "raw results in $OUT"
