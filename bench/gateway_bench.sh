#!/usr/bin/env bash
# gateway_bench.sh — GET /v1/auth through tokend-gateway (and tokend behind
# it) under wrk, then nginx answering `return 200` with a body of the same
# size, measured right after on the same machine. Prints both rates, their
# ratio, and the gateway's resident memory idle and under load (VmRSS).
#
# Usage: bench/gateway_bench.sh [BUILD_DIR]          (default: build)
# Environment: DURATION (5s), CONNECTIONS (64), WRK_THREADS (1),
#              GATEWAY_THREADS (2; also nginx's worker_processes),
#              TSV (a file to write gw_auth_tput and gw_rss_load to, as
#              bench/run.sh reads them)
#
# Both servers log one line per request to a file (the gateway's access
# log at its default level, nginx's access_log), so each pays for logging.
# Everything runs on this machine: wrk, nginx, the gateway and tokend share
# its cores, so read the figures as a ratio.
set -euo pipefail

BUILD=${1:-build}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
GATEWAY_THREADS=${GATEWAY_THREADS:-2}
NGINX=${NGINX:-/usr/sbin/nginx}

for tool in wrk curl "$NGINX" "$BUILD/tokend" "$BUILD/tokend-gateway"; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "$tool" ]; then
        echo "gateway_bench: $tool not found (apt-get install wrk nginx-light curl; make)" >&2
        exit 2
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench-XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A port nobody answers on (good enough for a benchmark: nothing else
# should be starting servers meanwhile).
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# Runs wrk against $1 (extra wrk args after it); prints wrk's output.
run_wrk() {
    local target=$1
    shift
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" "$target"
}

rate_of() {
    awk '/^Requests\/sec:/ {print $2}'
}

# CPU time (user + system) of a process so far, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

TICK=$(getconf CLK_TCK)

# --- tokend and the gateway ---
"$BUILD/tokend" init --data-dir "$WORK/data" >"$WORK/admin" 2>/dev/null
ADMIN=$(head -n 1 "$WORK/admin")
"$BUILD/tokend" serve --data-dir "$WORK/data" --listen "ipc://$WORK/tokend.sock" \
    2>"$WORK/tokend.log" &
PIDS+=($!)
"$BUILD/tokend-gateway" --listen 127.0.0.1:0 --service "ipc://$WORK/tokend.sock" \
    --threads "$GATEWAY_THREADS" 2>"$WORK/gateway.log" &
GATEWAY=$!
PIDS+=("$GATEWAY")
PORT=""
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*event=listening.* port=\([0-9]*\).*/\1/p' "$WORK/gateway.log")
    [ -n "$PORT" ] && break
    sleep 0.05
done
[ -n "$PORT" ] || { echo "gateway_bench: the gateway did not start" >&2; cat "$WORK/gateway.log" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do
    curl -sf "$BASE/readyz" >/dev/null && break
    sleep 0.05
done

TOKEN=$(curl -sf -X POST "$BASE/v1/tokens" -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' \
    -d '{"owner":"partner:bench","name":"bench","abilities":["orders:read"]}' |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "gateway_bench: could not create a token" >&2; exit 1; }
AUTH_URL="$BASE/v1/auth?ability=orders:read"
BODY_BYTES=$(curl -sf "$AUTH_URL" -H "Authorization: Bearer $TOKEN" | wc -c)

# Warm up, then measure while sampling the gateway's memory.
run_wrk "$AUTH_URL" -H "Authorization: Bearer $TOKEN" -d1s >/dev/null
RSS_IDLE=$(rss_kb "$GATEWAY")
TOKEND=${PIDS[0]}
GW_CPU0=$(cpu_ticks "$GATEWAY")
TD_CPU0=$(cpu_ticks "$TOKEND")
run_wrk "$AUTH_URL" -H "Authorization: Bearer $TOKEN" >"$WORK/wrk-gateway.txt" &
WRK=$!
RSS_LOAD=0
while kill -0 "$WRK" 2>/dev/null; do
    rss=$(rss_kb "$GATEWAY")
    [ "$rss" -gt "$RSS_LOAD" ] && RSS_LOAD=$rss
    sleep 0.25
done
wait "$WRK"
GW_CPU=$(($(cpu_ticks "$GATEWAY") - GW_CPU0))
TD_CPU=$(($(cpu_ticks "$TOKEND") - TD_CPU0))
GATEWAY_RATE=$(rate_of <"$WORK/wrk-gateway.txt")
REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/wrk-gateway.txt")
NON_2XX=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk-gateway.txt")
# The HTTP layer alone: /healthz makes no RPC.
GW_CPU0=$(cpu_ticks "$GATEWAY")
run_wrk "$BASE/healthz" >"$WORK/wrk-health.txt"
GW_HEALTH_CPU=$(($(cpu_ticks "$GATEWAY") - GW_CPU0))
HEALTH_RATE=$(rate_of <"$WORK/wrk-health.txt")
HEALTH_REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/wrk-health.txt")

# --- nginx: return 200 with a body of the same size ---
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
BODY=$(head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x')
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $GATEWAY_THREADS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log $WORK/nginx/access.log;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            default_type application/json;
            return 200 '$BODY';
        }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$NGINX_PORT/" >/dev/null && break
    sleep 0.05
done
NGINX_BYTES=$(curl -sf "http://127.0.0.1:$NGINX_PORT/" | wc -c)
run_wrk "http://127.0.0.1:$NGINX_PORT/" -H "Authorization: Bearer $TOKEN" -d1s >/dev/null
NGINX_MASTER=${PIDS[-1]}
nginx_ticks() {
    local t=0 pid
    for pid in $(pgrep -P "$NGINX_MASTER"); do
        t=$((t + $(cpu_ticks "$pid")))
    done
    echo "$t"
}
NGINX_CPU0=$(nginx_ticks)
run_wrk "http://127.0.0.1:$NGINX_PORT/" -H "Authorization: Bearer $TOKEN" \
    >"$WORK/wrk-nginx.txt"
NGINX_CPU=$(($(nginx_ticks) - NGINX_CPU0))
NGINX_RATE=$(rate_of <"$WORK/wrk-nginx.txt")
NGINX_REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/wrk-nginx.txt")

echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, $(nproc) CPUs, gateway --threads $GATEWAY_THREADS, nginx worker_processes $GATEWAY_THREADS"
echo "gateway GET /v1/auth (Verify RPC to tokend each): $GATEWAY_RATE req/s, body $BODY_BYTES B, non-2xx: ${NON_2XX:-0}"
grep -E '^ +Latency' "$WORK/wrk-gateway.txt" | sed 's/^ */  latency (avg, stdev, max, +\/- stdev): /'
echo "nginx return 200:                                  $NGINX_RATE req/s, body $NGINX_BYTES B"
grep -E '^ +Latency' "$WORK/wrk-nginx.txt" | sed 's/^ */  latency (avg, stdev, max, +\/- stdev): /'
awk -v c="$NGINX_CPU" -v n="$NGINX_REQUESTS" -v hz="$TICK" 'BEGIN {
    printf "CPU per request: nginx workers %.0f us\n", c * 1e6 / hz / n }'
awk -v g="$GATEWAY_RATE" -v n="$NGINX_RATE" 'BEGIN { printf "ratio gateway/nginx: %.2f\n", g / n }'
echo "gateway GET /healthz (HTTP layer only, no RPC):    $HEALTH_RATE req/s"
awk -v g="$GW_HEALTH_CPU" -v n="$HEALTH_REQUESTS" -v hz="$TICK" 'BEGIN {
    printf "CPU per /healthz request: gateway %.0f us\n", g * 1e6 / hz / n }'
awk -v g="$GW_CPU" -v t="$TD_CPU" -v n="$REQUESTS" -v hz="$TICK" 'BEGIN {
    printf "CPU per /v1/auth request: gateway %.0f us, tokend %.0f us\n",
        g * 1e6 / hz / n, t * 1e6 / hz / n }'
echo "gateway VmRSS: idle $RSS_IDLE kB, under load (max) $RSS_LOAD kB"
if [ -n "${TSV:-}" ]; then
    awk -v g="$GATEWAY_RATE" -v n="$NGINX_RATE" -v rss="$RSS_LOAD" 'BEGIN {
        OFS = "\t"
        print "gw_auth_tput", g, "req/s", n, sprintf("%.3f", g / n)
        print "gw_rss_load", sprintf("%.1f", rss / 1024), "MB", "-", "-" }' >"$TSV"
fi
