#!/bin/bash
# A reconnect storm after a node kill: S subscribers of one channel on node A, a publisher on
# node B at R msgs/s; A is killed (-9, master and workers) and every subscriber resumes on B
# with since. Reports what the recovery cost Redis (EVALSHA calls beside the publishes: the
# reads of positions and missed messages; and B's recovery reads) and what the clients saw (recovered, recovery time, gaps, duplicates),
# once with B's memory window on (--history-memory 100) and once off (0).
#   bench/storm.sh [--subscribers S] [--rate R] [--workers W]
# Needs a build (./scripts/build.sh) and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=10000
RATE=200
WORKERS=2
while [ $# -gt 0 ]; do
    case "$1" in
    --subscribers) SUBS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "storm.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
WSLOAD=./build/loadtest/wsload
WSNODE=./build/node/wsnode
[ -x $WSLOAD ] && [ -x $WSNODE ] || { echo "build first: ./scripts/build.sh" >&2; exit 1; }
OUT=$(mktemp -d /tmp/wsfan-storm.XXXXXX)

. scripts/ports.sh
metric() { # metric PORT NAME: the value summed over the node's workers
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
evalsha() { redis-cli -p "$REDIS_PORT" info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'; }
published() { redis-cli -p "$REDIS_PORT" hget 'wsfan:meta:{ch.0}' seq; } # the channel's seq

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        { kill -9 -- "-$p" || kill -9 "$p"; wait "$p"; } 2>/dev/null || true
    done
}
trap cleanup EXIT

run() { # run MEMORY
    local memory=$1
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        >"$OUT/redis.log" 2>&1 &
    PIDS+=($!)
    wait_port "$REDIS_PORT" || { echo "storm.sh: redis-server did not start" >&2; exit 1; }
    local a b flags
    a=$(free_port)
    b=$(free_port)
    flags=(--redis "127.0.0.1:$REDIS_PORT" --workers "$WORKERS" --max-conns-per-ip 0
           --ip-connect-rate 0 --max-msg-rate 0 --history-size 5000)
    setsid $WSNODE --port "$a" "${flags[@]}" >"$OUT/a.log" 2>&1 &
    local apid=$!
    PIDS+=($apid)
    setsid $WSNODE --port "$b" "${flags[@]}" --history-memory "$memory" >"$OUT/b.log" 2>&1 &
    PIDS+=($!)
    wait_port "$a" && wait_port "$b" || { echo "storm.sh: a node did not start; see $OUT" >&2; exit 1; }
    $WSLOAD reconnect --subscribers "$SUBS" --publishers 1 --rate "$RATE" --duration 12 --workers 2 \
        --reconnect-every 0 --failover-url "ws://127.0.0.1:$b/ws" \
        --pub-url "ws://127.0.0.1:$b/ws" "ws://127.0.0.1:$a/ws" \
        --json "$OUT/storm-$memory.json" >"$OUT/storm-$memory.txt" 2>&1 &
    local load=$!
    sleep 6 # connected and receiving
    local calls0 pub0
    calls0=$(evalsha)
    pub0=$(published)
    { kill -9 -- "-$apid"; wait "$apid"; } 2>/dev/null || true
    wait $load || { cat "$OUT/storm-$memory.txt"; exit 1; }
    local calls pub reads memhits
    calls=$(( $(evalsha) - calls0 ))
    pub=$(( $(published) - pub0 ))
    reads=$(metric "$b" wsfan_recovery_reads_total)
    memhits=$(metric "$b" wsfan_recoveries_from_memory_total)
    /usr/bin/python3 - "$OUT/storm-$memory.json" "$memory" "$calls" "$pub" "$reads" "$memhits" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
memory, calls, pub, reads, memhits = sys.argv[2:]
res, rec = r["resumes"], r["recovery"]
print(f"| {memory} | {res['acked']:,} | {res['recovered']:,} | {rec['p50_us'] / 1e3:.0f} / "
      f"{rec['p99_us'] / 1e3:.0f} / {rec['max_us'] / 1e3:.0f} | {res['gaps']} / {res['duplicates']} | "
      f"{reads} | {memhits} | {int(calls) - int(pub)} |")
EOF
    cleanup
    PIDS=()
}

echo "subscribers $SUBS, $RATE msgs/s, $WORKERS workers per node; logs in $OUT"
echo "| --history-memory | resumed | recovered | recovery ms p50 / p99 / max | gaps / dups | B's Redis reads | from memory | EVALSHA beside publishes |"
echo "|---|---|---|---|---|---|---|---|"
run 100
run 0
