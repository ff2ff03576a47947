#!/usr/bin/env bash
# side_by_side.sh - what one observability setup costs against another, measured at the same time on the same core.
#
#   bench/side_by_side.sh off all              `all` against `off`: the CPU each spends per request, paired per round
#   ROUNDS=12 DURATION=4 bench/side_by_side.sh log log      the same setup twice: what the method's own bias is
#   A_BIN=/tmp/turnpike-old bench/side_by_side.sh log log   one setup, two builds (B: this tree's release build)
#   B_SAMPLE_RATIO=0 bench/side_by_side.sh tracing tracing  what the sampled 1 % cost (A samples 1 %, B none)
#   B_LOG=/dev/null bench/side_by_side.sh log log   what writing the lines costs (B's log goes to B_LOG, not a file
#                                              in a temporary directory: /dev/null, a tmpfs path, ...)
#   PERF=1 bench/side_by_side.sh off all       and where: perf records both, ns per request by symbol, B - A
#   PERF=1 PERF_LINES='core::ptr::drop_in_place<turnpike_gateway::body::ResponseBody>' bench/side_by_side.sh off all
#                                              ... and by source line inside one symbol (bench/perf_diff.py)
#
# Setups as in observability.sh: off, metrics, log, tracing (1 % sampled: SAMPLE_RATIO, or A_SAMPLE_RATIO and
# B_SAMPLE_RATIO for one side), all.
#
# Why: observability.sh loads one process at a time, and this machine drifts by several percent between two runs a
# second apart, so the median of 100 paired rounds still moves by ~1 % from run to run. Here both processes (one
# worker each) share core 0 and are loaded at once by two wrk (core 1, with the backend): whatever slows the core
# slows both, and the ratio of their CPU per request (from /proc/<pid>/task/*/schedstat, nanoseconds, every thread
# counted) varies by a few tenths of a percent from round to round. What it measures is CPU per request of a
# process that shares its core's caches with another, not requests per second of one alone: a change that trades
# cache footprint for instructions can rank differently here than alone. A run of a setup against itself shows the
# method's bias (B measured 0.3-0.4 % above A on the thirteenth machine); wrk start order alternates between rounds.
# Loopback only; every wrk run is bounded (-d plus `timeout`); everything started is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
RIG=${RIG:-$(cd "$HERE/../../shared/bench" 2>/dev/null && pwd || true)}
BACKEND_BIN=${BACKEND_BIN:-$RIG/target/release/bench-backend}
A=${1:?usage: side_by_side.sh <setup A> <setup B>}
B=${2:?usage: side_by_side.sh <setup A> <setup B>}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-8}
CONNS=${CONNS:-32}
SAMPLE_RATIO=${SAMPLE_RATIO:-0.01}
declare -A RATIO=([a]=${A_SAMPLE_RATIO:-$SAMPLE_RATIO} [b]=${B_SAMPLE_RATIO:-$SAMPLE_RATIO})
A_BIN=${A_BIN:-$HERE/../target/release/turnpike}
B_BIN=${B_BIN:-$HERE/../target/release/turnpike}
OUT=${RESULTS_DIR:-$HERE/results/side-by-side-$(date +%Y%m%d-%H%M%S)}

log() { printf '[side_by_side.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null || { log "wrk not found (apt-get install wrk)"; exit 2; }
for s in "$A" "$B"; do
    case $s in off | metrics | log | tracing | all) ;; *) log "unknown setup $s (off, metrics, log, tracing, all)"; exit 2 ;; esac
done
prepare_run

taskset -c 1 "$BACKEND_BIN" --listen 127.0.0.1:9000 --threads 1 >"$OUT/backend.out" 2>&1 &
PIDS+=($!)

declare -A PORT=([a]=8081 [b]=8082) PID=()
declare -A SETUP=([a]=$A [b]=$B) BIN=([a]=$A_BIN [b]=$B_BIN)
for side in a b; do
    path=$TMP/access-$side.log
    if [ "$side" = b ] && [ -n "${B_LOG:-}" ]; then path=$B_LOG; fi
    observability_config "${SETUP[$side]}" "${PORT[$side]}" "$path" "${RATIO[$side]}" >"$OUT/$side.yaml"
    taskset -c 0 "${BIN[$side]}" run -c "$OUT/$side.yaml" --no-control-socket >"$OUT/turnpike-$side.out" 2>&1 &
    PID[$side]=$!
    PIDS+=($!)
done
for side in a b; do wait_for "http://127.0.0.1:${PORT[$side]}/" || exit 1; done

cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ ns += $1 } END { printf "%d", ns }'; }
load() { # <seconds> <b first: 0|1>: both wrk at once, writing $OUT/wrk-<side>.txt
    local order=(a b) side waits=()
    [[ $2 == 1 ]] && order=(b a)
    for side in "${order[@]}"; do
        timeout $(($1 + 15)) taskset -c 1 wrk -t1 -c"$CONNS" -d"$1s" "http://127.0.0.1:${PORT[$side]}/" \
            >"$OUT/wrk-$side.txt" 2>&1 &
        waits+=($!)
    done
    for w in "${waits[@]}"; do wait "$w" || log "wrk exited non-zero"; done
}

log "A: $A (${A_BIN}), B: $B (${B_BIN}); $ROUNDS rounds of ${DURATION}s; sampling A ${RATIO[a]}, B ${RATIO[b]}"
load 2 0
if [[ ${PERF:-0} == 1 ]]; then
    # cpu-clock: this VM has no hardware counters. Both processes at once, thread by thread.
    perf record -e cpu-clock -F "${PERF_FREQ:-4999}" -p "${PID[a]},${PID[b]}" -o "$OUT/perf.data" \
        >"$OUT/perf-record.out" 2>&1 &
    PERF_PID=$!
    sleep 1
fi
printf 'round\tA_requests\tA_cpu_ns\tB_requests\tB_cpu_ns\n' >"$OUT/rounds.tsv"
for round in $(seq 1 "$ROUNDS"); do
    a0=$(cpu_ns "${PID[a]}") b0=$(cpu_ns "${PID[b]}")
    load "$DURATION" $((round % 2))
    a1=$(cpu_ns "${PID[a]}") b1=$(cpu_ns "${PID[b]}")
    ra=$(awk '/requests in/ {print $1}' "$OUT/wrk-a.txt") rb=$(awk '/requests in/ {print $1}' "$OUT/wrk-b.txt")
    for f in "$OUT/wrk-a.txt" "$OUT/wrk-b.txt"; do
        if grep -q 'Non-2xx' "$f"; then log "non-2xx answers in $f"; exit 1; fi
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$ra" "$((a1 - a0))" "$rb" "$((b1 - b0))" >>"$OUT/rounds.tsv"
    log "round $round: A $(echo "($a1 - $a0) / 1000 / $ra" | bc -l | cut -c1-6) us/req, B $(echo "($b1 - $b0) / 1000 / $rb" | bc -l | cut -c1-6) us/req"
done
rm -f "$OUT/wrk-a.txt" "$OUT/wrk-b.txt"
if [[ ${PERF:-0} == 1 ]]; then
    kill -INT "$PERF_PID" && wait "$PERF_PID" || true
    tids() { ls /proc/"$1"/task | paste -sd,; }
    requests() { awk -v col="$1" 'NR > 1 { n += $col } END { print n }' "$OUT/rounds.tsv"; }
    diff_args=("$OUT/perf.data" "$(tids "${PID[a]}")" "$(tids "${PID[b]}")" "$(requests 2)" "$(requests 4)")
    python3 "$HERE/perf_diff.py" "${diff_args[@]}" >"$OUT/perf-symbols.txt"
    if [[ -n ${PERF_LINES:-} ]]; then
        python3 "$HERE/perf_diff.py" "${diff_args[@]}" "$PERF_LINES" "$A_BIN" "$B_BIN" >"$OUT/perf-lines.txt"
    fi
    log "perf: $OUT/perf-symbols.txt${PERF_LINES:+ and perf-lines.txt}"
fi
python3 - "$OUT/rounds.tsv" "$A" "$B" <<'PY' | tee "$OUT/summary.txt"
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n")[1:] if l]
a = [int(r[2]) / 1000 / int(r[1]) for r in rows]
b = [int(r[4]) / 1000 / int(r[3]) for r in rows]
ratios = sorted(y / x for x, y in zip(a, b))
print(f"A {sys.argv[2]}: {statistics.median(a):.3f} us of CPU per request (median of {len(rows)} rounds)")
print(f"B {sys.argv[3]}: {statistics.median(b):.3f} us of CPU per request")
print(f"B/A {statistics.median(ratios):.4f} (paired median; {ratios[0]:.4f}..{ratios[-1]:.4f}):"
      f" B keeps {1 / statistics.median(ratios):.4f} of A's throughput when the core is what limits")
PY
log "raw results in $OUT"
