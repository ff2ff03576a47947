#!/usr/bin/env bash
# run.sh - Turnpike side by side with nginx, HAProxy, Pingora and bare hyper on the shared rig (../shared/bench).
#
#   bench/run.sh                       saturation: nginx haproxy pingora hyper turnpike, interleaved, 3 rounds
#   bench/run.sh nginx hyper turnpike  any subset of targets
#   MODE=latency bench/run.sh          fixed 4,000 req/s with oha (added latency below saturation)
#   ROUNDS=5 DURATION=20 bench/run.sh  longer (any knob of ../shared/bench/run.sh passes through)
#
# Builds turnpike in release mode first, then hands over to the rig, which pins the proxy under test to core 0 and
# the load generator and backend to core 1, targets only 127.0.0.1 and bounds every load run in time. Turnpike runs
# with bench/turnpike.yaml: one worker thread, no access log, default proxy headers (X-Forwarded-*, Via, request id).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RIG=${RIG:-$(cd "$HERE/../../shared/bench" 2>/dev/null && pwd || true)}
[[ -x ${RIG:-}/run.sh ]] || { echo "the shared rig is not at $RIG (set RIG=/path/to/shared/bench)" >&2; exit 2; }

(cd "$HERE/.." && cargo build --release -p turnpike)
export TARGET_TURNPIKE="$HERE/../target/release/turnpike run -c $HERE/turnpike.yaml --no-control-socket"
if [[ ${MODE:-saturation} == latency ]]; then
    export LOADGEN=oha RATE=${RATE:-4000} CONNS=${CONNS:-16}
fi
if [[ $# -eq 0 ]]; then set -- nginx haproxy pingora hyper turnpike; fi
exec "$RIG/run.sh" "$@"
