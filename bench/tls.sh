#!/usr/bin/env bash
# tls.sh - TLS termination: Turnpike against nginx with the same certificate, in one run.
#
#   bench/tls.sh                       RSA-2048 certificate, TLS 1.3, 3 interleaved rounds
#   KEY=ec bench/tls.sh                ECDSA P-256 certificate
#   TLS=1.2 bench/tls.sh               TLS 1.2 (session ids / tickets instead of 1.3 PSK resumption)
#
# Both proxies: one worker, pinned to core 0, no access log, proxying to the rig's backend (core 1) with
# keep-alive. Measured, per round and target, with the client pinned to core 1:
#   handshakes/s   CLIENTS parallel `openssl s_time -new`: a full handshake and one request per connection
#   resumed/s      CLIENTS parallel `openssl s_time -reuse`: a resumed handshake and one request per connection
#   keep-alive     wrk over HTTPS, 64 connections: requests/s once connections are up
# Loopback only; every run is bounded in time; everything started is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
RIG=${RIG:-$(cd "$HERE/../../shared/bench" 2>/dev/null && pwd || true)}
BACKEND_BIN=${BACKEND_BIN:-$RIG/target/release/bench-backend}
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
KEY=${KEY:-rsa}
TLS=${TLS:-1.3}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
declare -A PORT=([nginx]=8443 [turnpike]=8444)
OUT=${RESULTS_DIR:-$HERE/results/tls-$(date +%Y%m%d-%H%M%S)}

log() { printf '[tls.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for tool in nginx wrk openssl; do command -v $tool >/dev/null || { log "$tool not found (apt-get install $tool)"; exit 2; }; done
prepare_run
RUN=$TMP

# One certificate for both: a test CA and a leaf for 127.0.0.1 / localhost.
case $KEY in
    rsa) keyopts=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048) ;;
    ec) keyopts=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256) ;;
    *) log "KEY must be rsa or ec"; exit 2 ;;
esac
openssl genpkey "${keyopts[@]}" -out "$RUN/ca.key" 2>/dev/null
openssl req -x509 -new -key "$RUN/ca.key" -subj "/CN=bench CA" -days 2 -out "$RUN/ca.pem" 2>/dev/null
openssl genpkey "${keyopts[@]}" -out "$RUN/key.pem" 2>/dev/null
openssl req -new -key "$RUN/key.pem" -subj "/CN=localhost" -out "$RUN/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$RUN/ext.cnf"
openssl x509 -req -in "$RUN/leaf.csr" -CA "$RUN/ca.pem" -CAkey "$RUN/ca.key" -CAcreateserial -days 2 \
    -extfile "$RUN/ext.cnf" -out "$RUN/cert.pem" 2>/dev/null

mkdir -p "$RUN"/{tmp-client,tmp-proxy,tmp-fastcgi,tmp-uwsgi,tmp-scgi}
nginx_protocols=$([[ $TLS == 1.2 ]] && echo "TLSv1.2" || echo "TLSv1.2 TLSv1.3")
cat >"$RUN/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $RUN/tmp-client; proxy_temp_path $RUN/tmp-proxy; fastcgi_temp_path $RUN/tmp-fastcgi;
    uwsgi_temp_path $RUN/tmp-uwsgi; scgi_temp_path $RUN/tmp-scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:9000; keepalive 128; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:${PORT[nginx]} ssl reuseport backlog=4096;
        ssl_certificate $RUN/cert.pem;
        ssl_certificate_key $RUN/key.pem;
        ssl_protocols $nginx_protocols;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1h;
        ssl_session_tickets on;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
cat >"$RUN/turnpike.yaml" <<EOF
server: { workers: 1, access_log: { enabled: false }, watch: false }
listeners:
  - name: tls
    address: "127.0.0.1:${PORT[turnpike]}"
    protocol: http1
    tls:
      certificates: [{ cert: cert.pem, key: key.pem }]
      min_version: "1.2"
      session_resumption: true
upstreams: { backend: { endpoints: ["127.0.0.1:9000"] } }
routes: [{ id: all, upstream: backend }]
EOF
cp "$RUN/nginx.conf" "$RUN/turnpike.yaml" "$OUT/"

taskset -c "$LOAD_CPU" "$BACKEND_BIN" >"$OUT/backend.out" 2>&1 &
PIDS+=($!)
declare -A PID
taskset -c "$PROXY_CPU" nginx -p "$RUN" -c "$RUN/nginx.conf" >"$OUT/nginx.out" 2>&1 &
PID[nginx]=$!
taskset -c "$PROXY_CPU" "$HERE/../target/release/turnpike" run -c "$RUN/turnpike.yaml" --no-control-socket \
    >"$OUT/turnpike.out" 2>&1 &
PID[turnpike]=$!
PIDS+=("${PID[nginx]}" "${PID[turnpike]}")
for t in nginx turnpike; do
    for _ in $(seq 1 100); do
        curl -sk -o /dev/null "https://127.0.0.1:${PORT[$t]}/" && break
        sleep 0.1
    done
    code=$(curl -s --cacert "$RUN/ca.pem" -o /dev/null -w '%{http_code}' "https://localhost:${PORT[$t]}/" || true)
    [[ $code == 200 ]] || { log "$t does not answer 200 over verified TLS ($code)"; exit 1; }
done

tls_flag=$([[ $TLS == 1.2 ]] && echo "-tls1_2" || echo "-tls1_3")
s_time() { # <port> <-new|-reuse> <out>: CLIENTS parallel clients for DURATION s; prints connections/s (wall clock)
    local i start end
    start=$(date +%s.%N)
    for i in $(seq 1 "$CLIENTS"); do
        timeout $((DURATION + 15)) taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$1" "$2" "$tls_flag" \
            -time "$DURATION" -www / >"$3.$i" 2>&1 &
    done
    wait
    end=$(date +%s.%N)
    cat "$3".* >"$3"
    rm -f "$3".*
    awk -v secs="$(echo "$end - $start" | bc -l)" '/connections in [0-9]+ real seconds/ {n += $1} END {printf "%.0f", n / secs}' "$3"
}
proxy_ticks() { # <pid>: CPU ticks of the process and its children (nginx's worker)
    local total=0 p
    for p in $1 $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
https_wrk() { # <port> <out>
    timeout $((DURATION + 15)) taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${DURATION}s" "https://127.0.0.1:$1/" >"$2" 2>&1 || true
    awk '/Requests\/sec/ {print $2}' "$2"
}

RESULTS="$OUT/results.tsv"
printf 'round\ttarget\thandshakes_per_s\tresumed_per_s\tkeepalive_rps\tnew_proxy_cpu\treuse_proxy_cpu\n' >"$RESULTS"
hz=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
    for t in nginx turnpike; do
        t0=$(proxy_ticks "${PID[$t]}")
        new=$(s_time "${PORT[$t]}" -new "$OUT/new-$round-$t.txt")
        t1=$(proxy_ticks "${PID[$t]}")
        reuse=$(s_time "${PORT[$t]}" -reuse "$OUT/reuse-$round-$t.txt")
        t2=$(proxy_ticks "${PID[$t]}")
        ka=$(https_wrk "${PORT[$t]}" "$OUT/wrk-$round-$t.txt")
        new_cpu=$(echo "($t1 - $t0) / $hz / ($DURATION + 1)" | bc -l)
        reuse_cpu=$(echo "($t2 - $t1) / $hz / ($DURATION + 1)" | bc -l)
        printf '%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\n' "$round" "$t" "$new" "$reuse" "$ka" "$new_cpu" "$reuse_cpu" >>"$RESULTS"
        log "round $round $t: $new handshakes/s (proxy core ${new_cpu} busy), $reuse resumed/s (${reuse_cpu}), $ka req/s keep-alive"
    done
done

python3 - "$RESULTS" "$KEY" "$TLS" <<'PY' | tee "$OUT/summary.txt"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
cols = ["handshakes/s", "resumed/s", "keep-alive req/s"]
by = {}
for rnd, target, *vals in rows:
    by.setdefault(target, {})[rnd] = [float(v or 0) for v in vals[:3]]
print(f"certificate {sys.argv[2]}, TLS {sys.argv[3]}")
print(f"{'metric':<18}{'nginx':>10}{'turnpike':>10}{'turnpike/nginx (paired median, range)':>40}")
for i, name in enumerate(cols):
    n = statistics.median(v[i] for v in by["nginx"].values())
    t = statistics.median(v[i] for v in by["turnpike"].values())
    ratios = sorted(by["turnpike"][r][i] / by["nginx"][r][i] for r in by["nginx"] if by["nginx"][r][i] > 0)
    span = f"{statistics.median(ratios):.3f} ({ratios[0]:.3f}..{ratios[-1]:.3f})" if ratios else "n/a"
    print(f"{name:<18}{n:>10.0f}{t:>10.0f}{span:>40}")
# The client (one core of s_time processes) may be the limit: per second of proxy CPU shows the proxies' own cost.
cpu = {}
for rnd, target, *vals in rows:
    new, reuse, _, new_cpu, reuse_cpu = (float(v or 0) for v in vals)
    cpu.setdefault(target, {})[rnd] = (new / new_cpu if new_cpu else 0, reuse / reuse_cpu if reuse_cpu else 0)
for i, name in enumerate(["handshakes/cpu-s", "resumed/cpu-s"]):
    n = statistics.median(v[i] for v in cpu["nginx"].values())
    t = statistics.median(v[i] for v in cpu["turnpike"].values())
    ratios = sorted(cpu["turnpike"][r][i] / cpu["nginx"][r][i] for r in cpu["nginx"] if cpu["nginx"][r][i] > 0)
    print(f"{name:<18}{n:>10.0f}{t:>10.0f}{f'{statistics.median(ratios):.3f} ({ratios[0]:.3f}..{ratios[-1]:.3f})':>40}")
PY
log "raw results in $OUT"
