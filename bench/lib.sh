# lib.sh - helpers shared by the bench scripts (sourced, not run).

# callgrind_per_route <pid> <out-dir> <route>...: for each route, a 2 s warm-up, counters zeroed, $DURATION s of
# load through the caller's `run_wrk <route> <seconds> <out-file>`, a dump; prints and writes to
# <out-dir>/summary.txt the instructions per request of each route (valgrind's total / requests wrk completed).
callgrind_per_route() {
    local pid=$1 out=$2 r requests dump total
    shift 2
    printf '%-14s %14s %10s %14s\n' route instructions requests "instr/request" | tee "$out/summary.txt"
    for r in "$@"; do
        run_wrk "$r" 2 /dev/null
        callgrind_control -z "$pid" >/dev/null
        run_wrk "$r" "$DURATION" "$out/wrk-$r.txt"
        callgrind_control -d "$r" "$pid" >/dev/null
        sleep 1
        requests=$(awk '/requests in/ {print $1}' "$out/wrk-$r.txt")
        dump=$(ls -t "$out"/callgrind.* | head -1)
        total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
        mv "$dump" "$out/route-$r.callgrind"
        printf '%-14s %14s %10s %14.0f\n' "$r" "$total" "$requests" "$(echo "$total / $requests" | bc -l)" \
            | tee -a "$out/summary.txt"
    done
}
