#!/bin/bash
# Starts a redis-server and a wsrouter on free ports and runs bench/routerbench against them:
# join/leave rate, presence-query latency, and router memory per member for two shapes. Each
# phase gets a fresh router (so RSS "before" is a fresh process's). Stops everything it started.
#   bench/routerbench.sh [--build DIR] [--quick] [--out DIR]
# --quick: smaller sizes, to check that it runs. Router options for every phase:
#   --node-timeout 3600 (the fake nodes do not heartbeat), --node-rate 1000000 (so the flood
#   limit, default 5000 envelopes/s per node, cannot drop any of a burst), --presence-max-members
#   200000 (full member lists of the 100k channel), --log-level warn.
# Redis runs with --save '' --appendonly no and no pub/sub output-buffer limit, so a burst the
# router has not read yet stays queued instead of getting it disconnected (the peak queued is
# printed: "Redis backlog peak").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-bench
QUICK=0
OUT=$(mktemp -d /tmp/wsfan-routerbench.XXXXXX)
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; mkdir -p "$OUT"; shift 2 ;;
    *) echo "routerbench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
BENCH=$BUILD/bench/routerbench
ROUTER=$BUILD/router/wsrouter
[ -x "$BENCH" ] && [ -x "$ROUTER" ] || { echo "build first: cmake --build $BUILD" >&2; exit 1; }

. scripts/ports.sh

REDIS_PID=""
ROUTER_PID=""
stop_router() {
    [ -n "$ROUTER_PID" ] || return 0
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    wait "$ROUTER_PID" 2>/dev/null || true
    ROUTER_PID=""
}
cleanup() {
    stop_router
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --client-output-buffer-limit "pubsub 0 0 0" >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
wait_port "$REDIS_PORT" || { echo "redis-server did not start; see $OUT/redis.log" >&2; exit 1; }

# start_router: a fresh wsrouter on a free admin port; sets ROUTER_PID and ADMIN.
start_router() {
    ADMIN=$(free_port)
    "$ROUTER" --redis 127.0.0.1:"$REDIS_PORT" --port "$ADMIN" --node-timeout 3600 \
        --node-rate 1000000 --presence-max-members 200000 --log-level warn >>"$OUT/wsrouter.log" 2>&1 &
    ROUTER_PID=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "wsrouter did not come up; see $OUT/wsrouter.log" >&2
    return 1
}

run() { # run PHASE [options]: one phase against a fresh router
    start_router
    local phase=$1; shift
    echo "\$ routerbench --redis 127.0.0.1:\$REDIS --admin \$ADMIN --router-pid \$ROUTER $* $phase" | tee -a "$OUT/results.md"
    "$BENCH" --redis 127.0.0.1:"$REDIS_PORT" --admin "$ADMIN" --router-pid "$ROUTER_PID" "$@" "$phase" \
        | tee -a "$OUT/results.md"
    stop_router
}

echo "routerbench $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores; redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$REDIS_PORT" | tee "$OUT/results.md"
echo "each phase: $ROUTER --redis 127.0.0.1:\$REDIS --port \$ADMIN --node-timeout 3600 --node-rate 1000000 --presence-max-members 200000 --log-level warn" | tee -a "$OUT/results.md"
echo | tee -a "$OUT/results.md"
if [ "$QUICK" = 1 ]; then
    run rate --members 20000 --batches 1,100,1000 --rounds 1
    run query --members 10000 --queries 200 --full-queries 10
    run memory --clients 100000 --per-client 1 --checkpoints 10000,100000
else
    run rate --members 200000 --batches 1,100,1000 --rounds 5
    run query --members 100000 --queries 2000 --full-queries 50
    run memory --clients 1000000 --per-client 1 --channels 1000 --checkpoints 100000,1000000 --drain
    run memory --clients 100000 --per-client 10 --channels 1000 --checkpoints 100000,1000000
fi
echo "results in $OUT/results.md"
