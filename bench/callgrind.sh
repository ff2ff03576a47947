#!/usr/bin/env bash
# callgrind.sh - instructions per proxied request, counted by valgrind (repeatable on a noisy machine).
#
#   bench/callgrind.sh [target...]     targets: turnpike (default), hyper
#
# Starts the shared rig's backend on 127.0.0.1:9000, the target under callgrind on 127.0.0.1:8090, warms up,
# zeroes the counters, sends load for a fixed time with wrk (loopback only, bounded by -d), dumps, and prints
# instructions per request (total Ir / requests wrk completed). Needs valgrind, wrk and the rig's binaries
# (cd ../shared/bench && cargo build --release -p bench-backend -p bench-hyper).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RIG=${RIG:-$HERE/../../shared/bench}
BIN=$RIG/target/release
TP=${TURNPIKE:-$HERE/../target/release/turnpike}
OUT=${OUT:-/tmp/turnpike-callgrind}
SECONDS_LOAD=${SECONDS_LOAD:-5}
CONNS=${CONNS:-16}
mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$BIN/bench-backend" --listen 127.0.0.1:9000 --threads 1 >/dev/null 2>&1 & pids+=($!)
for target in "${@:-turnpike}"; do
    case $target in
        turnpike) cmd=("$TP" run -c "$HERE/turnpike.yaml" --no-control-socket) ;;
        hyper) cmd=("$BIN/bench-hyper") ;;
        *) echo "unknown target $target" >&2; exit 2 ;;
    esac
    PROXY_PORT=8090 BACKEND=127.0.0.1:9000 valgrind --tool=callgrind --callgrind-out-file="$OUT/$target.%p" "${cmd[@]}" >"$OUT/$target.log" 2>&1 & vpid=$!
    pids+=($vpid)
    for _ in $(seq 1 100); do curl -s -o /dev/null --max-time 1 http://127.0.0.1:8090/ && break; sleep 0.2; done
    wrk -t1 -c"$CONNS" -d2s http://127.0.0.1:8090/ >/dev/null 2>&1 || true          # warm-up
    callgrind_control -z "$vpid" >/dev/null
    wrk -t1 -c"$CONNS" -d"${SECONDS_LOAD}s" http://127.0.0.1:8090/ >"$OUT/$target.wrk" 2>&1 || true
    callgrind_control -d "$vpid" >/dev/null
    sleep 1
    requests=$(awk '/requests in/ {print $1}' "$OUT/$target.wrk")
    dump=$(ls -t "$OUT/$target".* | grep -v -e '\.log$' -e '\.wrk$' | head -1)
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
    # Allocations: calls from Rust's global allocator glue (the mimalloc crate) into mimalloc's malloc/zalloc,
    # counted from the caller tree (both binaries use mimalloc, so they are counted alike).
    allocs=$(callgrind_annotate --tree=caller --threshold=100 "$dump" 2>/dev/null | awk '
        /< .*mimalloc-0\.1[^/]*\/src\/lib\.rs:.*\([0-9,]+x\)/ {
            match($0, /\([0-9,]+x\)/); n = substr($0, RSTART + 1, RLENGTH - 3); gsub(",", "", n); pending += n; next }
        /\* .*:mi_(malloc|zalloc)_aligned \[/ { total += pending; pending = 0; next }
        /\* / { pending = 0 }
        END { print total + 0 }')
    echo "$target: $requests requests, $total instructions, $((total / requests)) instructions/request," \
        "$(awk -v a="$allocs" -v r="$requests" 'BEGIN { printf "%.1f", a / r }') allocations/request (dump: $dump)"
    kill "$vpid" 2>/dev/null || true; wait "$vpid" 2>/dev/null || true
done
