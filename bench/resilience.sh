#!/usr/bin/env bash
# resilience.sh - what upstream resilience costs on the healthy path, and what it saves when an endpoint fails.
#
#   bench/resilience.sh                       healthy path: 5 interleaved rounds of 8 s per route (wrk)
#   MODE=callgrind bench/resilience.sh        instructions per request of each route (valgrind; repeatable)
#   MODE=fault bench/resilience.sh            one of three endpoints answers 503 for 10 s of a 20 s run
#   ROUNDS=3 DURATION=6 RESULTS_DIR=/tmp/r bench/resilience.sh
#
# Healthy path: one Turnpike process (one worker, pinned to core 0, no access log), two routes to the same backend:
#   /plain       the core issue's forward path: round robin, no outlier detection, no health check, no breaker,
#                no retry block (a connect failure is still retried: that costs nothing until it happens)
#   /resilient   EWMA balancing, outlier detection with an error-rate window, an active HTTP health check every
#                second, a circuit breaker, a concurrency limit and retries (`retry: {}`: a copy of each request
#                head is kept so a 502/503/504 or a reset can be retried), plus the retry budget's counters
# wrk (core 1, with the backend) sends both the same request; rounds interleave; ratios are paired per round.
#
# Fault: three endpoints (two rig backends and `fault_backend`, which answers 503 from 5 s to 15 s after it starts),
# wrk for 20 s at 64 connections, once per configuration: no retries and no outlier detection; outlier detection
# only (the default); retries and outlier detection. Reports client-visible non-2xx answers and latency percentiles.
# Loopback only; every wrk run is bounded (-d plus `timeout`); everything started is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
RIG=${RIG:-$(cd "$HERE/../../shared/bench" 2>/dev/null && pwd || true)}
BACKEND_BIN=${BACKEND_BIN:-$RIG/target/release/bench-backend}
FAULT_BIN=$HERE/../target/release/examples/fault_backend
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-8090}
MODE=${MODE:-healthy}
OUT=${RESULTS_DIR:-$HERE/results/resilience-$MODE-$(date +%Y%m%d-%H%M%S)}

log() { printf '[resilience.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null || { log "wrk not found (apt-get install wrk)"; exit 2; }
prepare_run
(cd "$HERE/.." && cargo build --release -p turnpike-test --example fault_backend)

start_turnpike() { # <config> [valgrind]
    if [[ ${2:-} == valgrind ]]; then
        valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.%p" \
            "$HERE/../target/release/turnpike" run -c "$1" --no-control-socket >"$OUT/turnpike.out" 2>&1 &
    else
        taskset -c "$PROXY_CPU" "$HERE/../target/release/turnpike" run -c "$1" --no-control-socket \
            >"$OUT/turnpike.out" 2>&1 &
    fi
    TPID=$!
    PIDS+=($TPID)
    wait_for "http://127.0.0.1:$PORT/plain"
}

run_wrk() { # <path> <seconds> <out>
    timeout $(($2 + 15)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2s" --latency \
        "http://127.0.0.1:$PORT/$1" >"$3" 2>&1 || log "wrk exited non-zero ($1)"
}

if [[ $MODE == fault ]]; then
    taskset -c "$LOAD_CPU" "$BACKEND_BIN" --listen 127.0.0.1:9001 >/dev/null 2>&1 & PIDS+=($!)
    taskset -c "$LOAD_CPU" "$BACKEND_BIN" --listen 127.0.0.1:9002 >/dev/null 2>&1 & PIDS+=($!)
    printf 'scenario\trequests\tnon2xx\trps\tp50\tp90\tp99\tmax\n' >"$OUT/results.tsv"
    for scenario in plain outlier retries; do
        case $scenario in
            plain) extra='    outlier_detection: { enabled: false }' ;;
            outlier) extra='' ;;
            retries) extra='    retry: { attempts: 3 }' ;;
        esac
        cat >"$TMP/fault.yaml" <<EOF
server: { workers: 1, access_log: { enabled: false }, watch: false }
listeners: [{ name: bench, address: "127.0.0.1:$PORT" }]
upstreams:
  three:
    endpoints: ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
$extra
routes:
  - { id: plain, match: { prefix: /plain }, upstream: three }
EOF
        cp "$TMP/fault.yaml" "$OUT/fault-$scenario.yaml"
        # The fault starts 5 s after the faulty endpoint does and lasts 10 s: inside the 20 s wrk run below.
        taskset -c "$LOAD_CPU" "$FAULT_BIN" --listen 127.0.0.1:9003 --fail-from 5 --fail-until 15 >/dev/null 2>&1 &
        FPID=$!
        PIDS+=($FPID)
        start_turnpike "$TMP/fault.yaml"
        run_wrk plain 20 "$OUT/wrk-fault-$scenario.txt"
        f="$OUT/wrk-fault-$scenario.txt"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" \
            "$(awk '/requests in/ {print $1}' "$f")" "$(awk '/Non-2xx/ {print $NF}' "$f" | grep . || echo 0)" \
            "$(awk '/Requests\/sec/ {print $2}' "$f")" "$(awk '$1=="50%" {print $2}' "$f")" \
            "$(awk '$1=="90%" {print $2}' "$f")" "$(awk '$1=="99%" {print $2}' "$f")" \
            "$(awk '/Latency/ {print $4; exit}' "$f")" >>"$OUT/results.tsv"
        log "$scenario: $(tail -1 "$OUT/results.tsv")"
        kill -TERM "$TPID" "$FPID" 2>/dev/null || true
        wait "$TPID" "$FPID" 2>/dev/null || true
    done
    column -t -s $'\t' "$OUT/results.tsv" | tee "$OUT/summary.txt"
    log "raw results in $OUT"
    exit 0
fi

cat >"$TMP/turnpike.yaml" <<EOF
server: { workers: 1, access_log: { enabled: false }, watch: false }
listeners: [{ name: bench, address: "127.0.0.1:$PORT" }]
upstreams:
  plain:
    endpoints: ["127.0.0.1:9000"]
    balance: round_robin
    outlier_detection: { enabled: false }
  resilient:
    endpoints: ["127.0.0.1:9000"]
    balance: ewma
    outlier_detection: { error_rate: { percent: 50, min_requests: 20, window: 10s } }
    health_check: { path: /health, interval: 1s }
    circuit_breaker: { failure_percent: 50, min_requests: 20 }
    concurrency_limit: { max_in_flight: 10000, max_queued: 100 }
    retry: {}
routes:
  - { id: plain, match: { prefix: /plain }, upstream: plain }
  - { id: resilient, match: { prefix: /resilient }, upstream: resilient }
EOF
cp "$TMP/turnpike.yaml" "$OUT/turnpike.yaml"
taskset -c "$LOAD_CPU" "$BACKEND_BIN" >"$OUT/backend.out" 2>&1 & PIDS+=($!)
ROUTES=(plain resilient)

if [[ $MODE == callgrind ]]; then
    start_turnpike "$TMP/turnpike.yaml" valgrind
    CONNS=16 callgrind_per_route "$TPID" "$OUT" "${ROUTES[@]}"
    log "raw results in $OUT"
    exit 0
fi

start_turnpike "$TMP/turnpike.yaml"
interleaved_rounds "${ROUTES[@]}"

python3 "$HERE/paired.py" "$RESULTS" | tee "$OUT/summary.txt"
log "raw results in $OUT"
