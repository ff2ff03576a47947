#!/usr/bin/env bash
# observability.sh - what metrics, the access log and tracing cost on the plain proxy route, in one run.
#
#   bench/observability.sh                     3 interleaved rounds of 8 s per setup
#   ROUNDS=6 DURATION=6 bench/observability.sh
#   MODE=callgrind bench/observability.sh      instructions per request of each setup, counted by valgrind
#   SETUPS="off tracing" SAMPLE_RATIO=1 MODE=callgrind bench/observability.sh
#                                              some setups only; tracing sampling every trace instead of 1 %
#   CALLGRIND_OPTS=--cache-sim=yes MODE=callgrind bench/observability.sh
#                                              with valgrind's simulated caches (misses per request)
#
# Five Turnpike processes (one worker each, all pinned to core 0; only the one under load works), the same route to
# the same backend, with:
#   off       no admin listener (no metrics recorded), no access log, no tracing: the baseline
#   metrics   the admin listener on: every request recorded into its route's counters and histograms
#   log       the access log written to a file (every field but the query)
#   tracing   tracing on, 1 % of new traces sampled, spans exported over OTLP/HTTP to the rig's backend
#   all       the three together (the issue's target: at most 5 % below `off`)
# wrk (core 1, with the backend) sends the same request to each; rounds interleave the setups; ratios are paired
# per round. Loopback only; every wrk run is bounded (-d plus `timeout`); everything started is stopped on exit.
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
read -r -a SETUPS <<<"${SETUPS:-off metrics log tracing all}"
SAMPLE_RATIO=${SAMPLE_RATIO:-0.01}
declare -A PORTS=([off]=8091 [metrics]=8092 [log]=8093 [tracing]=8094 [all]=8095)
declare -A TPIDS=()
OUT=${RESULTS_DIR:-$HERE/results/observability-$(date +%Y%m%d-%H%M%S)}

log() { printf '[observability.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null || { log "wrk not found (apt-get install wrk)"; exit 2; }
prepare_run

"$BACKEND_BIN" --listen 127.0.0.1:9000 --threads 1 >"$OUT/backend.out" 2>&1 &
PIDS+=($!)

for s in "${SETUPS[@]}"; do
    observability_config "$s" "${PORTS[$s]}" "$TMP/access-$s.log" "$SAMPLE_RATIO" >"$TMP/$s.yaml"
    cp "$TMP/$s.yaml" "$OUT/$s.yaml"
    if [[ ${MODE:-wrk} == callgrind ]]; then
        valgrind --tool=callgrind ${CALLGRIND_OPTS:-} --callgrind-out-file="$OUT/callgrind.%p" \
            "$HERE/../target/release/turnpike" run -c "$TMP/$s.yaml" --no-control-socket >"$OUT/turnpike-$s.out" 2>&1 &
    else
        taskset -c "$PROXY_CPU" "$HERE/../target/release/turnpike" run -c "$TMP/$s.yaml" --no-control-socket \
            >"$OUT/turnpike-$s.out" 2>&1 &
    fi
    TPIDS[$s]=$!
    PIDS+=($!)
done
for s in "${SETUPS[@]}"; do wait_for "http://127.0.0.1:${PORTS[$s]}/" || exit 1; done
# Each setup does what it says: metrics served, log lines written.
for s in "${SETUPS[@]}"; do
    case $s in metrics | all) port=$((${PORTS[$s]} + 1000)) ;; *) continue ;; esac
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^turnpike_http_requests_total' && continue 2
        sleep 0.2
    done
    log "no request series on 127.0.0.1:$port/metrics"
    exit 1
done

run_wrk() { # <setup> <seconds> <out>
    timeout $(($2 + 15)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2s" --latency \
        "http://127.0.0.1:${PORTS[$1]}/" >"$3" 2>&1 || log "wrk exited non-zero ($1)"
}

# Lines written against requests, and what `all` dropped: a log that drops lines costs less than one that writes
# them, so a figure only counts when nothing was dropped.
report_lines() { # <requests-of-log> <requests-of-all>
    [[ -f $TMP/access-log.log ]] && log "log: $(wc -l <"$TMP/access-log.log") access-log lines written for $1 requests measured"
    [[ -f $TMP/access-all.log ]] || return 0
    log "all: $(wc -l <"$TMP/access-all.log") access-log lines written for $2 requests measured"
    log "all: $(curl -s http://127.0.0.1:9095/metrics | awk '/^turnpike_access_log_dropped_total/ {print $2}') lines dropped"
}

if [[ ${MODE:-wrk} == callgrind ]]; then
    callgrind_per_route "" "$OUT" "${SETUPS[@]}"
    sleep 1
    report_lines "$(awk '$1 == "log" {print $3}' "$OUT/summary.txt")" "$(awk '$1 == "all" {print $3}' "$OUT/summary.txt")"
    log "raw results in $OUT"
    exit 0
fi

interleaved_rounds "${SETUPS[@]}"
python3 "$HERE/paired.py" "$RESULTS" off | tee "$OUT/summary.txt"
# Every request is logged (the warm-up's too, so lines >= the requests counted above), unless the writer fell behind:
# the `all` process counts what it dropped.
requests() { awk -F'\t' -v s="$1" '$2 == s { n += $8 } END { print n }' "$RESULTS"; }
report_lines "$(requests log)" "$(requests all)"
log "raw results in $OUT"
