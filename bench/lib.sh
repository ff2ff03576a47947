# lib.sh - helpers shared by the bench scripts (sourced, not run).

# prepare_run: the rig's backend (built when missing), a release build of turnpike, the results directory $OUT, a
# scratch directory $TMP, and a trap that stops every process in PIDS and removes $TMP when the script exits.
# Needs HERE, RIG, BACKEND_BIN, OUT and a `log` function.
prepare_run() {
    if [[ ! -x $BACKEND_BIN ]]; then
        (cd "$RIG" && cargo build --release -p bench-backend) || { log "cannot build the rig's backend"; exit 2; }
    fi
    (cd "$HERE/.." && cargo build --release -p turnpike)
    mkdir -p "$OUT"
    TMP=$(mktemp -d)
    PIDS=()
    trap cleanup_run EXIT
}

cleanup_run() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}

# wait_for <url>: until something answers at <url> (30 s at most; needs a `log` function).
wait_for() {
    for _ in $(seq 1 300); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    log "nothing answers at $1"
    return 1
}

# observability_config <setup> <port> <access-log path> <sample ratio>: the configuration of one setup of
# observability.sh and side_by_side.sh (off, metrics, log, tracing, all), one worker, on 127.0.0.1:<port> (the
# admin listener, when on, on <port> + 1000), proxying to the rig's backend on 127.0.0.1:9000.
observability_config() {
    local admin="" tracing="" access="access_log: { enabled: false }"
    case $1 in metrics | all) admin=", admin: { address: \"127.0.0.1:$(($2 + 1000))\" }" ;; esac
    case $1 in log | all) access="access_log: { path: \"$3\" }" ;; esac
    case $1 in tracing | all)
        tracing=", tracing: { endpoint: \"http://127.0.0.1:9000/v1/traces\", protocol: http, sample_ratio: $4 }" ;;
    esac
    cat <<YAML
server: { workers: 1, watch: false, $access$admin$tracing }
listeners: [{ name: bench, address: "127.0.0.1:$2" }]
upstreams: { backend: { endpoints: ["127.0.0.1:9000"] } }
routes:
  - { id: plain, match: { prefix: / }, upstream: backend }
YAML
}

# callgrind_per_route <pid> <out-dir> <route>...: for each route, a 2 s warm-up, counters zeroed, $DURATION s of
# load through the caller's `run_wrk <route> <seconds> <out-file>`, a dump; prints and writes to
# <out-dir>/summary.txt the instructions per request of each route (valgrind's total / requests wrk completed).
# The process is <pid>, or ${TPIDS[route]} when the caller runs one process per route (all writing
# <out-dir>/callgrind.%p).
callgrind_per_route() {
    local pid=$1 out=$2 r requests dump total p
    shift 2
    printf '%-14s %14s %10s %14s\n' route instructions requests "instr/request" | tee "$out/summary.txt"
    for r in "$@"; do
        p=$pid
        if declare -p TPIDS >/dev/null 2>&1; then p=${TPIDS[$r]}; fi
        run_wrk "$r" 2 /dev/null
        callgrind_control -z "$p" >/dev/null
        run_wrk "$r" "$DURATION" "$out/wrk-$r.txt"
        callgrind_control -d "$r" "$p" >/dev/null
        sleep 1
        requests=$(awk '/requests in/ {print $1}' "$out/wrk-$r.txt")
        dump=$(ls -t "$out"/callgrind.* | head -1)
        total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
        mv "$dump" "$out/route-$r.callgrind"
        printf '%-14s %14s %10s %14.0f\n' "$r" "$total" "$requests" "$(echo "$total / $requests" | bc -l)" \
            | tee -a "$out/summary.txt"
    done
}

# interleaved_rounds <route>...: a $WARMUP s warm-up per route, then $ROUNDS rounds of $DURATION s per route
# (interleaved, so slow drifts of the machine hit every route alike, and rotated, so no route always runs first)
# through the caller's `run_wrk`, with the proxy's CPU time from /proc/$TPID (or /proc/${TPIDS[route]} when the
# caller runs one process per route).
# Writes $OUT/results.tsv (what paired.py reads) and sets RESULTS to it.
interleaved_rounds() {
    local round r f before after pid
    RESULTS="$OUT/results.tsv"
    printf 'round\troute\trps\tp50_ms\tp99_ms\tproxy_cpu_s\tnon2xx\trequests\n' >"$RESULTS"
    for r in "$@"; do run_wrk "$r" "$WARMUP" /dev/null; done
    local routes=("$@") order i
    for round in $(seq 1 "$ROUNDS"); do
        # Each round starts one route further along the list: no route always runs first (or right after the same
        # neighbour), so what the position in a round does to a run falls on every route alike.
        order=()
        for i in "${!routes[@]}"; do order+=("${routes[$(((i + round - 1) % ${#routes[@]}))]}"); done
        for r in "${order[@]}"; do
            pid=${TPID:-}
            if declare -p TPIDS >/dev/null 2>&1; then pid=${TPIDS[$r]}; fi
            before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            f="$OUT/wrk-$round-$r.txt"
            run_wrk "$r" "$DURATION" "$f"
            after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            printf '%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\n' "$round" "$r" "$(awk '/Requests\/sec/ {print $2}' "$f")" \
                "$(awk '$1=="50%" {print $2}' "$f")" "$(awk '$1=="99%" {print $2}' "$f")" \
                "$(echo "($after - $before) / $(getconf CLK_TCK)" | bc -l)" \
                "$(awk '/Non-2xx/ {print $NF}' "$f" | grep . || echo 0)" "$(awk '/requests in/ {print $1}' "$f")" >>"$RESULTS"
            log "round $round $r: $(awk '/Requests\/sec/ {print $2}' "$f") req/s"
        done
    done
}
