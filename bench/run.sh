#!/usr/bin/env bash
# run.sh — the benchmark suite behind `make bench`. Every figure is taken
# next to a reference measured in the same run on the same machine, and is
# judged by the ratio (these machines are shared and noisy):
#
#   rpc_bench      Verify (with a request context) and CreateToken, against
#                  a bare NNG req/rep echo with the same sizes and
#                  concurrency; Verify with a context against without
#                  (usage_overhead)
#   rocksdb_put    raw RocksDB synced single-thread puts of a record's size
#                  (the reference for group-committed creates)
#   bulk_load +    single-caller Verify p99 with 1,000,000 tokens stored
#   rpc_bench         against the same with 10,000; tokend's RSS after it
#     latency
#   gateway_bench  GET /v1/auth through the gateway against nginx
#                  `return 200` with a body of the same size, under wrk
#
# Prints a table (metric, value, reference, ratio, target, pass) and writes
# the same to bench/out/results.json. Exit status 0 when every target
# holds, 1 when one is missed, 2 when a benchmark could not run.
#
# Usage: bench/run.sh [BUILD_DIR]          (default: build)
# Environment: SECONDS_PER_RUN (3), SCALE_TOKENS (1000000),
#              SCALE_BASE_TOKENS (10000), OUT_DIR (bench/out)
set -euo pipefail

BUILD=${1:-build}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
SCALE_TOKENS=${SCALE_TOKENS:-1000000}
SCALE_BASE_TOKENS=${SCALE_BASE_TOKENS:-10000}
OUT_DIR=${OUT_DIR:-bench/out}
HERE=$(cd "$(dirname "$0")" && pwd)

for bin in tokend bench/rpc_bench bench/bulk_load bench/rocksdb_put; do
    [ -x "$BUILD/$bin" ] || { echo "bench: $BUILD/$bin missing (make)" >&2; exit 2; }
done
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokend-bench-XXXXXX")
TOKEND_PIDS=()
cleanup() {
    for pid in "${TOKEND_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
FIGURES="$WORK/figures.tsv" # metric value unit reference ratio
: >"$FIGURES"
START=$(date +%s)

step() { printf '== %s\n' "$*" >&2; }

# --- 1. RPC: Verify and CreateToken against the echo ---
step "rpc_bench: verify (1 and 64 callers), create (64 callers), NNG echo reference"
"$BUILD/bench/rpc_bench" --seconds "$SECONDS_PER_RUN" --threads 64 --tsv "$WORK/rpc.tsv" >&2
cat "$WORK/rpc.tsv" >>"$FIGURES"

# --- 2. the raw RocksDB reference for creates ---
step "rocksdb_put: raw synced single-thread puts"
raw=$("$BUILD/bench/rocksdb_put" --dir "$WORK/raw" --seconds "$SECONDS_PER_RUN")
rm -rf "$WORK/raw"
raw_rate=$(awk '{print $2}' <<<"$raw")
awk -F'\t' -v r="$raw_rate" 'BEGIN { OFS = "\t" }
    $1 == "rpc_create_tput_64" { $4 = r; $5 = sprintf("%.3f", $2 / r) } { print }' \
    "$FIGURES" >"$WORK/f" && mv "$WORK/f" "$FIGURES"

# --- 3. scale: Verify p99 with many tokens stored, tokend's memory ---
# Both stores are served at once and measured in alternating slices by
# one caller, over 10,000 tokens of each picked at random.
TOKEND_PIDS=()
serve() { # serve DATA_DIR NAME: tokend on ipc://$WORK/NAME.sock
    local data=$1 sock="$WORK/$2.sock"
    "$BUILD/tokend" serve --data-dir "$data" --listen "ipc://$sock" \
        --log-level warn 2>>"$WORK/tokend.log" &
    TOKEND_PIDS+=($!)
    for _ in $(seq 200); do
        [ -S "$sock" ] && return 0
        kill -0 "${TOKEND_PIDS[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench: tokend did not start on $data:" >&2
    cat "$WORK/tokend.log" >&2
    exit 2
}
rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
load() { # load N: a data dir of N tokens, 10,000 of them sampled
    local n=$1
    "$BUILD/tokend" init --data-dir "$WORK/scale-$n" >/dev/null 2>&1
    "$BUILD/bench/bulk_load" --data-dir "$WORK/scale-$n" --tokens "$n" --sample 10000 \
        --sample-file "$WORK/sample-$n" --owners 1000
}
step "scale: $SCALE_BASE_TOKENS and $SCALE_TOKENS tokens stored (bulk load), single-caller Verify latency, RSS"
load "$SCALE_BASE_TOKENS"
load "$SCALE_TOKENS"
serve "$WORK/scale-$SCALE_BASE_TOKENS" base
serve "$WORK/scale-$SCALE_TOKENS" big
BIG_PID=${TOKEND_PIDS[-1]}
# a first pass reads the sampled blocks in, as a running service would have
"$BUILD/bench/rpc_bench" latency --url "ipc://$WORK/base.sock" \
    --tokens "$WORK/sample-$SCALE_BASE_TOKENS" --url "ipc://$WORK/big.sock" \
    --tokens "$WORK/sample-$SCALE_TOKENS" --seconds 2 >/dev/null
"$BUILD/bench/rpc_bench" latency --url "ipc://$WORK/base.sock" \
    --tokens "$WORK/sample-$SCALE_BASE_TOKENS" --url "ipc://$WORK/big.sock" \
    --tokens "$WORK/sample-$SCALE_TOKENS" --seconds "$((2 * SECONDS_PER_RUN))" >"$WORK/lat"
rss=$(rss_mb "$BIG_PID")
for pid in "${TOKEND_PIDS[@]}"; do
    kill -TERM "$pid"
    wait "$pid" || true
done
TOKEND_PIDS=()
rm -rf "$WORK/scale-$SCALE_BASE_TOKENS" "$WORK/scale-$SCALE_TOKENS"
awk -v rss="$rss" 'BEGIN { OFS = "\t" }
    NR == 1 { base = $4 } NR == 2 { big = $4 }
    END {
        print "verify_p99_scale", big, "us", base, sprintf("%.3f", big / base)
        print "tokend_rss_1m", rss, "MB", "-", "-"
    }' "$WORK/lat" >>"$FIGURES"

# --- 4. the gateway against nginx ---
step "gateway_bench: GET /v1/auth through tokend-gateway, nginx return 200 reference"
TSV="$WORK/gateway.tsv" DURATION="${SECONDS_PER_RUN}s" bash "$HERE/gateway_bench.sh" "$BUILD" >&2
cat "$WORK/gateway.tsv" >>"$FIGURES"

# --- the table and results.json ---
# metric, what the target applies to, comparison, bound
TARGETS='rpc_verify_tput_64 ratio >= 0.80
rpc_verify_p50_1 ratio <= 1.25
rpc_verify_p99_1 ratio <= 1.25
rpc_create_tput_64 ratio >= 3
gw_auth_tput ratio >= 0.35
verify_p99_scale ratio <= 1.3
tokend_rss_1m value <= 200
gw_rss_load value <= 32
verify_cpu_us ratio <= 1.3
usage_overhead ratio <= 1.10'

ELAPSED=$(($(date +%s) - START))
awk -F'\t' -v targets="$TARGETS" -v json="$OUT_DIR/results.json" -v secs="$ELAPSED" \
    -v cpus="$(nproc)" -v when="$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
    { value[$1] = $2; unit[$1] = $3; ref[$1] = $4; ratio[$1] = $5 }
    function num(x) { return x == "-" || x == "" ? "null" : x + 0 }
    END {
        n = split(targets, rows, "\n")
        printf "\n%-20s %12s %-6s %12s %8s %8s  %s\n", "metric", "value", "unit",
            "reference", "ratio", "target", "" 
        missed = 0; absent = 0
        print "{" > json
        for (i = 1; i <= n; i++) {
            split(rows[i], t, " ")
            m = t[1]; on = t[2]; cmp = t[3]; bound = t[4] + 0
            if (!(m in value)) {
                printf "%-20s %12s\n", m, "not measured"
                absent++
                continue
            }
            x = on == "ratio" ? ratio[m] + 0 : value[m] + 0
            ok = cmp == ">=" ? x >= bound : x <= bound
            if (!ok) missed++
            printf "%-20s %12.1f %-6s %12s %8s %8s  %s\n", m, value[m], unit[m], ref[m],
                ratio[m], (on == "ratio" ? "x" : "") cmp " " t[4], ok ? "✓" : "✗"
            printf "  \"%s\": {\"value\": %s, \"unit\": \"%s\", \"reference\": %s, " \
                "\"ratio\": %s, \"target\": \"%s %s %s\", \"pass\": %s},\n", m, num(value[m]),
                unit[m], num(ref[m]), num(ratio[m]), on, cmp, t[4],
                ok ? "true" : "false" > json
        }
        printf "  \"_run\": {\"cpus\": %d, \"seconds\": %d, \"utc\": \"%s\"}\n}\n", cpus,
            secs, when > json
        printf "\n%d of %d targets held; %d s; %s\n", n - missed - absent, n, secs, json
        exit absent > 0 ? 2 : missed > 0 ? 1 : 0
    }' "$FIGURES"
