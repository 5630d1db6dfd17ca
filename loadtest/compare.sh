#!/bin/bash
# Runs the same scenarios against wsnode and each peer server, alternating within every round so
# a noisy machine treats them alike, and prints medians and ratios against wsnode.
#   loadtest/compare.sh [--rounds N] [--peers "nchan node-ws python-websockets node-ws-redis"]
#                       [--base wsnode|wsnode-redis] [--subscribers S] [--seconds T] [--out DIR]
#                       [--against OLD_WSNODE]
# --against runs the base twice in every round, this build's wsnode and OLD_WSNODE (another
# build, e.g. of the previous commit) with the same flags, as "<base>-before": the before/after
# table a change on the hot path comes with. The peers are then left out unless --peers names
# them.
# wsnode-redis is two wsnode processes on one Redis, publisher on the first, subscribers on the
# second: the layout of node-ws-redis and nchan-redis. wsnode-sse, wsnode-poll, wsnode-interval
# and nchan-sse are the same servers with subscribers listening as EventSource, long-polling or
# once-a-second polling clients (wsload --transport; docs/transports.md).
# Needs: a build (./scripts/build.sh), the peers' packages (loadtest/peers/install.sh), and for
# node-ws-redis and nchan-redis a redis-server binary (one is started on a free port).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3
PEERS="nchan node-ws python-websockets"
BASE=wsnode
SUBS=1000
SECONDS_RUN=5
OUT=$(mktemp -d /tmp/wsfan-compare.XXXXXX)
AGAINST=""
PEERS_GIVEN=0
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --peers) PEERS=$2; PEERS_GIVEN=1; shift 2 ;;
    --against) AGAINST=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --subscribers) SUBS=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --out) OUT=$2; mkdir -p "$OUT"; shift 2 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
WSLOAD=./build/loadtest/wsload
WSNODE=./build/node/wsnode
[ -x $WSLOAD ] && [ -x $WSNODE ] || { echo "build first: ./scripts/build.sh" >&2; exit 1; }
if [ -n "$AGAINST" ]; then
    [ -x "$AGAINST" ] || { echo "compare.sh: --against $AGAINST is not an executable" >&2; exit 2; }
    [ $PEERS_GIVEN = 1 ] || PEERS=""
    PEERS="$BASE-before $PEERS"
fi

. scripts/ports.sh

REDIS_PID=""
REDIS_PORT=""
need_redis() {
    [ -n "$REDIS_PID" ] && return
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_port "$REDIS_PORT"
}

SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM -- -"$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap 'stop_server; [ -n "$REDIS_PID" ] && kill $REDIS_PID 2>/dev/null; true' EXIT

# start TARGET: sets PORT, PORT2, SERVER_PID (a process group), SUB_ARGS, ECHO_URL.
start() {
    PORT=$(free_port); PORT2=""
    local cmd WSNODE=$WSNODE target=$1
    case "$target" in
    *-before) WSNODE=$AGAINST; target=${target%-before} ;;
    esac
    case "$target" in
    # No per-connection message rate: the peers have none, and fanout_max publishes flat out.
    wsnode) cmd="$WSNODE --bind 127.0.0.1 --port $PORT --echo --log-level warn --max-msg-rate 0" ;;
    wsnode-redis) need_redis; PORT2=$(free_port)
        cmd="sh -c '$WSNODE --bind 127.0.0.1 --port $PORT --echo --log-level warn --max-msg-rate 0 --workers 1 --redis 127.0.0.1:$REDIS_PORT & exec $WSNODE --bind 127.0.0.1 --port $PORT2 --log-level warn --max-msg-rate 0 --workers 1 --redis 127.0.0.1:$REDIS_PORT'" ;;
    node-ws|python-websockets) cmd="loadtest/peers/$1/start.sh --port $PORT" ;;
    node-ws-redis) need_redis; PORT2=$(free_port)
        cmd="loadtest/peers/node-ws-redis/start.sh --port $PORT --port2 $PORT2 --redis 127.0.0.1:$REDIS_PORT" ;;
    wsnode-sse|wsnode-poll|wsnode-interval) cmd="$WSNODE --bind 127.0.0.1 --port $PORT --log-level warn --max-msg-rate 0" ;;
    nchan|nchan-sse|nchan-poll) cmd="loadtest/peers/nchan/start.sh --port $PORT" ;;
    nchan-redis) need_redis; cmd="loadtest/peers/nchan/start.sh --port $PORT --redis 127.0.0.1:$REDIS_PORT" ;;
    esac
    XPORT=()
    setsid sh -c "$cmd" >"$OUT/$1.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$PORT" || { echo "$1 did not start; see $OUT/$1.log" >&2; return 1; }
    [ -z "$PORT2" ] || wait_port "$PORT2"
    sleep 0.3
    case "$target" in
    nchan|nchan-redis)
        SUB_ARGS=(--proto template --pub-template '{"ts":{ts},"seq":{seq}}'
                  --pub-url "http://127.0.0.1:$PORT/pub/{ch}" "ws://127.0.0.1:$PORT/sub/{ch}")
        ECHO_URL="" ;;
    nchan-sse)
        XPORT=(--transport sse)
        SUB_ARGS=(--proto template --pub-template '{"ts":{ts},"seq":{seq}}'
                  --pub-url "http://127.0.0.1:$PORT/pub/{ch}" "http://127.0.0.1:$PORT/sub/{ch}")
        ECHO_URL="" ;;
    nchan-poll)
        XPORT=(--transport etag-poll)
        SUB_ARGS=(--proto template --pub-template '{"ts":{ts},"seq":{seq}}'
                  --pub-url "http://127.0.0.1:$PORT/pubkeep/{ch}" "http://127.0.0.1:$PORT/lp/{ch}")
        ECHO_URL="" ;;
    wsnode-sse|wsnode-poll|wsnode-interval)
        XPORT=(--transport "${target#wsnode-}")
        local path="/sse/{ch}"; [ "$target" = wsnode-sse ] || path="/poll?ch={ch}"
        SUB_ARGS=(--pub-url "ws://127.0.0.1:$PORT/ws" "http://127.0.0.1:$PORT$path")
        ECHO_URL="" ;;
    node-ws-redis|wsnode-redis)
        SUB_ARGS=(--pub-url "ws://127.0.0.1:$PORT/ws" "ws://127.0.0.1:$PORT2/ws")
        ECHO_URL="ws://127.0.0.1:$PORT/echo" ;;
    *)  SUB_ARGS=("ws://127.0.0.1:$PORT/ws")
        ECHO_URL="ws://127.0.0.1:$PORT/echo" ;;
    esac
}

# The CPU time (clock ticks) the server's processes have used so far.
cpu_ticks() {
    local t=0 pid
    for pid in $(pgrep -g "$SERVER_PID"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

# run NAME TARGET ROUND wsload-args...: one measurement into $OUT/NAME.TARGET.ROUND.json
run() {
    local name=$1 target=$2 round=$3; shift 3
    $WSLOAD "$@" --quiet --json "$OUT/$name.$target.$round.json" >"$OUT/$name.$target.$round.txt" 2>&1 ||
        echo "  ($name against $target failed: $OUT/$name.$target.$round.txt)" >&2
}

TARGETS="$BASE $PEERS"
for round in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
        echo "round $round: $t" >&2
        start "$t" || continue
        # Saturation last: a backlog it leaves (in the server, Redis or the kernel) must not
        # delay the latency runs.
        run fanout_20 "$t" "$round" fanout --subscribers "$SUBS" --publishers 1 --rate 20 \
            --duration "$SECONDS_RUN" "${XPORT[@]}" "${SUB_ARGS[@]}"
        [ -z "$ECHO_URL" ] || run echo "$t" "$round" echo --connections 10 --rate 100 \
            --duration "$SECONDS_RUN" "$ECHO_URL"
        run idle "$t" "$round" connect --connections 5000 --hold 1 --server-pid "$SERVER_PID" \
            "${XPORT[@]}" "${SUB_ARGS[@]: -1}"
        cpu_ticks >"$OUT/cpu.$t.$round.before"
        run fanout_max "$t" "$round" fanout --subscribers "$SUBS" --publishers 1 --rate max \
            --duration "$SECONDS_RUN" --drain 3 "${XPORT[@]}" "${SUB_ARGS[@]}"
        cpu_ticks >"$OUT/cpu.$t.$round.after"
        stop_server
    done
done

/usr/bin/python3 - "$OUT" "$TARGETS" <<'PY'
import json, os, pathlib, statistics, sys
out, targets = pathlib.Path(sys.argv[1]), sys.argv[2].split()
def runs(name, t):
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"{name}.{t}.*.json"))]
def median(xs):
    return statistics.median(xs) if xs else None
metrics = [
    ("fanout_max", "deliveries/s (1 pub -> subs, max)", lambda r: r["messages"]["per_second"], True),
    ("fanout_max", "lost at max rate (%)", lambda r: 100.0 * r["messages"]["lost"] / max(1, r["messages"]["expected"]), False),
    ("fanout_20", "p99 ms at 20 msgs/s", lambda r: r["latency"]["p99_us"] / 1000, False),
    ("fanout_20", "lost at 20 msgs/s", lambda r: r["messages"]["lost"], False),
    ("echo", "echo p99 ms", lambda r: r["latency"]["p99_us"] / 1000, False),
    ("idle", "idle connection bytes (RSS)", lambda r: (r["server_memory_kib"]["rss_after"] - r["server_memory_kib"]["rss_before"]) * 1024 / max(1, r["connections"]["open_at_start"]), False),
    ("fanout_max", "wsload ns per delivery", lambda r: r["cpu"]["ns_per_message"], False),
    ("fanout_20", "bytes in per delivery (20 msgs/s)", lambda r: r["bytes"]["in"] / max(1, r["messages"]["received"]), False),
]
def server_ns(t):
    vals = []
    for j in sorted(out.glob(f"fanout_max.{t}.*.json")):
        rnd = j.name.split(".")[-2]
        try:
            ticks = int((out / f"cpu.{t}.{rnd}.after").read_text()) - int((out / f"cpu.{t}.{rnd}.before").read_text())
        except (OSError, ValueError):
            continue
        got = json.loads(j.read_text())["messages"]["received"]
        if got:
            vals.append(ticks / os.sysconf("SC_CLK_TCK") * 1e9 / got)
    return vals
metrics.append(("fanout_max", "server CPU ns per delivery (max)", None, False))
print(f"{'metric':38}" + "".join(f"{t:>18}" for t in targets))
for name, label, f, higher in metrics:
    vals = {t: median(server_ns(t) if f is None else [f(r) for r in runs(name, t)]) for t in targets}
    row = f"{label:38}"
    for t in targets:
        v = vals[t]
        row += f"{'-':>18}" if v is None else f"{v:>18.3f}" if v < 100 else f"{v:>18.0f}"
    print(row)
    base = vals.get(targets[0])
    if base:
        ratios = []
        for t in targets[1:]:
            v = vals[t]
            if v:
                ratios.append(f"{t} {base / v if higher else v / base:.2f}x")
        if ratios:
            print(f"{'  ' + targets[0] + ' better by':38}" + "  ".join(ratios))
print(f"\nraw results: {out}")
PY
