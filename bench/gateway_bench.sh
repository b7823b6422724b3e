#!/usr/bin/env bash
# gateway_bench.sh — GET /v1/auth through tokend-gateway (and tokend behind
# it) under wrk, and nginx answering `return 200` with a body of the same
# size, in alternating one-second slices on the same machine. Prints both
# rates, their ratio, CPU per request of each process, and the gateway's
# resident memory idle and under load (VmRSS).
#
# Usage: bench/gateway_bench.sh [BUILD_DIR]          (default: build)
# Environment: DURATION (5s: seconds of each, in one-second slices),
#              CONNECTIONS (64), WRK_THREADS (1),
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

# Runs wrk against $1 (extra wrk args after it, -d among them); prints
# wrk's output.
run_wrk() {
    local target=$1
    shift
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" "$@" "$target"
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

# --- nginx: return 200 with a body of the same size, up beside the gateway ---
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
NGINX_MASTER=$!
PIDS+=("$NGINX_MASTER")
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$NGINX_PORT/" >/dev/null && break
    sleep 0.05
done
NGINX_URL="http://127.0.0.1:$NGINX_PORT/"
NGINX_BYTES=$(curl -sf "$NGINX_URL" | wc -c)
nginx_ticks() {
    local t=0 pid
    for pid in $(pgrep -P "$NGINX_MASTER"); do
        t=$((t + $(cpu_ticks "$pid")))
    done
    echo "$t"
}

# --- the measurement: one-second wrk slices, gateway and nginx in turn, so
# that whatever else the machine does meanwhile weighs on both alike ---
TOKEND=${PIDS[0]}
SLICES=${DURATION%s}
AUTH=(-H "Authorization: Bearer $TOKEN")
run_wrk "$AUTH_URL" "${AUTH[@]}" -d1s >/dev/null # warm-up
run_wrk "$NGINX_URL" "${AUTH[@]}" -d1s >/dev/null
RSS_IDLE=$(rss_kb "$GATEWAY")
RSS_LOAD=0
GW_CPU=0 TD_CPU=0 NGINX_CPU=0
: >"$WORK/wrk-gateway.txt"
: >"$WORK/wrk-nginx.txt"
for _ in $(seq "$SLICES"); do
    gw0=$(cpu_ticks "$GATEWAY") td0=$(cpu_ticks "$TOKEND")
    run_wrk "$AUTH_URL" "${AUTH[@]}" -d1s >>"$WORK/wrk-gateway.txt" &
    wrk_pid=$!
    sleep 0.5
    rss=$(rss_kb "$GATEWAY")
    [ "$rss" -gt "$RSS_LOAD" ] && RSS_LOAD=$rss
    wait "$wrk_pid"
    GW_CPU=$((GW_CPU + $(cpu_ticks "$GATEWAY") - gw0))
    TD_CPU=$((TD_CPU + $(cpu_ticks "$TOKEND") - td0))
    n0=$(nginx_ticks)
    run_wrk "$NGINX_URL" "${AUTH[@]}" -d1s >>"$WORK/wrk-nginx.txt"
    NGINX_CPU=$((NGINX_CPU + $(nginx_ticks) - n0))
done
# The gateway's HTTP layer alone: /healthz makes no RPC.
gw0=$(cpu_ticks "$GATEWAY")
run_wrk "$BASE/healthz" -d1s >"$WORK/wrk-health.txt"
GW_HEALTH_CPU=$(($(cpu_ticks "$GATEWAY") - gw0))

# Requests and seconds summed over a file of wrk reports ("N requests in Ts").
requests_of() { awk '/requests in/ {n += $1} END {print n + 0}' "$1"; }
rate_of() {
    awk '/requests in/ {n += $1; t += $4 + 0} END {printf "%.2f", (t > 0 ? n / t : 0)}' "$1"
}
REQUESTS=$(requests_of "$WORK/wrk-gateway.txt")
GATEWAY_RATE=$(rate_of "$WORK/wrk-gateway.txt")
NON_2XX=$(awk '/Non-2xx/ {n += $NF} END {print n + 0}' "$WORK/wrk-gateway.txt")
NGINX_REQUESTS=$(requests_of "$WORK/wrk-nginx.txt")
NGINX_RATE=$(rate_of "$WORK/wrk-nginx.txt")
HEALTH_REQUESTS=$(requests_of "$WORK/wrk-health.txt")
HEALTH_RATE=$(rate_of "$WORK/wrk-health.txt")
per_request_us() { awk -v c="$1" -v n="$2" -v hz="$TICK" 'BEGIN { printf "%.0f", c * 1e6 / hz / n }'; }

echo "wrk -t$WRK_THREADS -c$CONNECTIONS, $SLICES one-second slices each, alternating; $(nproc) CPUs, gateway --threads $GATEWAY_THREADS, nginx worker_processes $GATEWAY_THREADS"
echo "gateway GET /v1/auth (Verify RPC to tokend each): $GATEWAY_RATE req/s, body $BODY_BYTES B, non-2xx: $NON_2XX"
echo "nginx return 200:                                  $NGINX_RATE req/s, body $NGINX_BYTES B"
awk -v g="$GATEWAY_RATE" -v n="$NGINX_RATE" 'BEGIN { printf "ratio gateway/nginx: %.2f\n", g / n }'
echo "gateway GET /healthz (HTTP layer only, no RPC):    $HEALTH_RATE req/s"
echo "CPU per request: /v1/auth gateway $(per_request_us "$GW_CPU" "$REQUESTS") us +" \
    "tokend $(per_request_us "$TD_CPU" "$REQUESTS") us; /healthz gateway" \
    "$(per_request_us "$GW_HEALTH_CPU" "$HEALTH_REQUESTS") us; nginx workers" \
    "$(per_request_us "$NGINX_CPU" "$NGINX_REQUESTS") us"
echo "gateway VmRSS: idle $RSS_IDLE kB, under load (max) $RSS_LOAD kB"
if [ -n "${TSV:-}" ]; then
    awk -v g="$GATEWAY_RATE" -v n="$NGINX_RATE" -v rss="$RSS_LOAD" 'BEGIN {
        OFS = "\t"
        print "gw_auth_tput", g, "req/s", n, sprintf("%.3f", g / n)
        print "gw_rss_load", sprintf("%.1f", rss / 1024), "MB", "-", "-" }' >"$TSV"
fi
