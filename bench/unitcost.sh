#!/bin/bash
# Unit costs for capacity planning (docs/scaling.md), measured in one run on this machine:
#  - Redis CPU per publish and per delivery to a node: a publisher node P (no subscribers) and
#    1, 2, then 3 subscribing nodes (wsnode, one worker each, S subscribers over C channels
#    on every one of them), a publisher at R msgs/s; redis-server's CPU (utime + stime of
#    /proc/PID/stat) over a window, less an idle baseline (everything connected, nothing
#    published) of the same run and after an unmeasured 3 s warm-up, per publish (EVALSHA
#    calls in the window); the slope over the node count is the CPU of one more node
#    delivery. The same slope with a longer lever:
#    1 node and L bare subscriber links (to Redis each is one more node's link). Once on one
#    Redis (--redis) and once on a Redis Cluster of --masters masters (--redis-cluster,
#    SPUBLISH), the masters summed.
#  - on that cluster, a replica added to one master: that master's classic PUBLISH against its
#    SPUBLISH (redis-benchmark): the CPU, bus messages and bus bytes the other masters and the
#    replica get for each.
#  - node CPU per delivery: the subscribing nodes' worker CPU per delivery at fan-out 1 (the
#    phases above), and at fan-out F on a fresh node (--fanout-*); memory per subscribed
#    connection there, and per idle connection (wsload connect, a fresh node: RSS and PSS).
# Prints tables, the raw numbers, and what the rest of the machine took in every window.
#   bench/unitcost.sh [--rate R] [--subscribers S] [--channels C] [--size M] [--window SEC]
#       [--idle SEC] [--warmup SEC] [--nodes N] [--links L] [--masters K] [--no-cluster]
#       [--fanout-subscribers S] [--fanout-channels C] [--fanout-rate R]
#       [--idle-connections N] [--bus-messages N] [--node-args "FLAGS"] [--bin DIR] [--out DIR]
# Defaults: R 10000, S = C = 100 (fan-out 1 per node), M 64 bytes, windows of 8 s (idle
# 5 s), up to 3 nodes, 20 bare links (0: none), 3 masters; fan-out phase 2,000 subscribers
# over 10 channels at 100 msgs/s (fan-out 200, 10 msgs/s per subscriber); 10,000 idle
# connections; 200,000 messages per bus test. About 3 minutes. --node-args go to every wsnode
# (e.g. "--history-size 0"). Binaries are copied from build/ (or --bin DIR, which holds wsnode
# and wsload) into the output directory first, so a rebuild meanwhile changes nothing.
# Needs a build (./scripts/build.sh), redis-server, redis-cli, redis-benchmark, curl, ss.
# Stops everything it started, on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
COMMAND="bench/unitcost.sh $*"
RATE=10000
SUBS=100
CHANNELS=100
SIZE=64
WINDOW=8
IDLE=5
WARMUP=1
NODES=3
MASTERS=3
CLUSTER=1
FAN_SUBS=2000
FAN_CHANNELS=10
FAN_RATE=100
IDLE_CONNS=10000
BUS_N=200000
LINKS=20
NODE_ARGS=""
BIN=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --rate) RATE=$2; shift 2 ;;
    --subscribers) SUBS=$2; shift 2 ;;
    --channels) CHANNELS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --links) LINKS=$2; shift 2 ;;
    --masters) MASTERS=$2; shift 2 ;;
    --no-cluster) CLUSTER=0; shift ;;
    --fanout-subscribers) FAN_SUBS=$2; shift 2 ;;
    --fanout-channels) FAN_CHANNELS=$2; shift 2 ;;
    --fanout-rate) FAN_RATE=$2; shift 2 ;;
    --idle-connections) IDLE_CONNS=$2; shift 2 ;;
    --bus-messages) BUS_N=$2; shift 2 ;;
    --node-args) NODE_ARGS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unitcost.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$NODES" -ge 2 ] || { echo "unitcost.sh: --nodes must be at least 2 (a slope)" >&2; exit 2; }
[ "$MASTERS" -ge 3 ] || { echo "unitcost.sh: --masters must be at least 3" >&2; exit 2; }
for t in redis-server redis-cli redis-benchmark curl ss; do
    command -v $t >/dev/null || { echo "unitcost.sh: needs $t" >&2; exit 1; }
done
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/wsfan-unitcost.XXXXXX)
mkdir -p "$OUT/bin"
OUT=$(cd "$OUT" && pwd)
if [ -n "$BIN" ]; then
    cp "$BIN/wsnode" "$BIN/wsload" "$OUT/bin/"
else
    [ -x build/node/wsnode ] && [ -x build/loadtest/wsload ] || { echo "build first: ./scripts/build.sh" >&2; exit 1; }
    cp build/node/wsnode build/loadtest/wsload "$OUT/bin/"
fi
WSNODE=$OUT/bin/wsnode
WSLOAD=$OUT/bin/wsload
PY=/usr/bin/python3
secs() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { print a + b }'; }

. scripts/ports.sh

# ---- what we started, and stopping it --------------------------------------------------------

GROUPS_=()       # process groups (setsid): wsnode masters with their workers, wsload runs
REDIS_PID=""
REPLICA_PID=""
CLUSTER_DIR=""
stop_group() { # pgid: TERM, then KILL after 3 s; only our own groups
    local g=$1 i
    kill -TERM -- "-$g" 2>/dev/null || return 0
    for i in $(seq 30); do
        kill -0 -- "-$g" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$g" 2>/dev/null || true
    wait "$g" 2>/dev/null || true
}
cleanup() {
    local g
    for g in "${GROUPS_[@]}"; do stop_group "$g"; done
    GROUPS_=()
    local p
    for p in $REDIS_PID $REPLICA_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    REDIS_PID=""
    REPLICA_PID=""
    [ -z "$CLUSTER_DIR" ] || scripts/redis-cluster.sh stop "$CLUSTER_DIR" || true
    CLUSTER_DIR=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "unitcost.sh: $*" >&2; exit 1; }

# ---- helpers ---------------------------------------------------------------------------------

# The snapshot: every figure the report needs, of everything listed in a topology file
# ("redis PORT PID" and "node NAME PORT PID" lines, "group PGID" for CPU accounting), appended
# as one JSON line to $OUT/snaps.jsonl.
cat >"$OUT/snap.py" <<'PY'
import json, os, socket, sys, time, urllib.request

def ticks_pgrp(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    r = s[s.rindex(")") + 2:].split()  # r[0] is field 3 (state)
    return int(r[11]) + int(r[12]), int(r[2])

def sched_ns(pid):
    t = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                t += int(f.read().split()[0])
        except OSError:
            pass
    return t

def mem_kib(pid):
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                rss = int(l.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for l in f:
                if l.startswith("Pss:"):
                    pss = int(l.split()[1])
    except OSError:
        pass
    return rss, pss

def redis(port, *args):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode())
        f = s.makefile("rb")
        line = f.readline()
        if line[:1] == b"$":
            return f.read(int(line[1:]) + 2)[:-2].decode()
        return line.decode().strip()

def fields(text):
    d = {}
    for l in text.splitlines():
        if ":" in l and not l.startswith("#"):
            k, v = l.split(":", 1)
            d[k] = v.strip()
    return d

def cmdstat(d, name):
    v = d.get("cmdstat_" + name)
    if not v:
        return {"calls": 0, "usec": 0}
    kv = dict(x.split("=") for x in v.split(","))
    return {"calls": int(kv["calls"]), "usec": int(kv["usec"])}

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []

topo, out, label = sys.argv[1:4]
meta = dict(a.split("=", 1) for a in sys.argv[4:])
snap = {"label": label, "meta": meta, "redis": {}, "nodes": {}}
redis_pids, groups, nodes = [], set(), []
for line in open(topo):
    w = line.split()
    if w[0] == "redis":
        redis_pids.append((int(w[1]), int(w[2])))
    elif w[0] == "node":
        nodes.append((w[1], int(w[2]), int(w[3])))
    elif w[0] == "group":
        groups.add(int(w[1]))
with open("/proc/stat") as f:
    cpu = [int(x) for x in f.readline().split()[1:]]
snap["t"] = time.monotonic()
for port, pid in redis_pids:
    t, _ = ticks_pgrp(pid)
    i = fields(redis(port, "INFO", "stats", "commandstats", "cpu"))
    r = {"pid": pid, "ticks": t, "sched_ns": sched_ns(pid),
         "rusage_s": float(i["used_cpu_user"]) + float(i["used_cpu_sys"]),
         "net_in": int(i["total_net_input_bytes"]), "net_out": int(i["total_net_output_bytes"]),
         "evalsha": cmdstat(i, "evalsha"), "publish": cmdstat(i, "publish"),
         "spublish": cmdstat(i, "spublish")}
    if meta.get("cluster") == "1":
        c = fields(redis(port, "CLUSTER", "INFO"))
        r["bus"] = {k[len("cluster_stats_messages_"):]: int(v) for k, v in c.items()
                    if k.startswith("cluster_stats_messages_")}
    snap["redis"][str(port)] = r
for name, port, pid in nodes:
    n = {"port": port, "pid": pid, "ticks": 0, "sched_ns": 0, "rss_kib": 0, "pss_kib": 0}
    for p in [pid] + children(pid):
        try:
            if p != pid:  # the workers' CPU; memory of the master and its workers
                n["ticks"] += ticks_pgrp(p)[0]
                n["sched_ns"] += sched_ns(p)
            rss, pss = mem_kib(p)
            n["rss_kib"] += rss
            n["pss_kib"] += pss
        except OSError:
            pass
    m = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for l in resp.read().decode().splitlines():
            if l.startswith("wsfan_") and "{" not in l:
                k, v = l.split()[:2]
                m[k[len("wsfan_"):]] = float(v)
    n["metrics"] = m
    snap["nodes"][name] = n
ours = 0
ours_pids = {pid for _, pid in redis_pids}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            t, g = ticks_pgrp(int(d))
        except (OSError, ValueError):
            continue
        if g in groups or int(d) in ours_pids:
            ours += t
snap["ours_ticks"] = ours
snap["cpu"] = cpu
with open(out, "a") as f:
    f.write(json.dumps(snap) + "\n")
PY
# links.py CLUSTER L C PORT...: L bare subscriber links (on a cluster, L per master), each
# subscribed to the C channels wsload uses (SSUBSCRIBE on a cluster: a master answers MOVED for
# those it does not own); says "ready" once every answer is in, then reads and drops everything.
cat >"$OUT/links.py" <<'PY'
import selectors, socket, sys

cluster, links, chans = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
ports = [int(p) for p in sys.argv[4:]]
names = ["wsfan:ch:{ch.%d}" % i for i in range(chans)]
def cmd(*a):
    return ("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a)).encode()
socks, owned = [], 0
for _ in range(links):
    for p in ports if cluster else ports[:1]:
        s = socket.create_connection(("127.0.0.1", p))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if cluster:
            s.sendall(b"".join(cmd("SSUBSCRIBE", n) for n in names))
        else:
            s.sendall(cmd("SUBSCRIBE", *names))
        buf, got = b"", 0
        while got < chans:  # one answer per channel: a confirmation or an error
            buf += s.recv(1 << 16)
            parts = buf.split(b"\r\n")
            buf = parts.pop()
            for x in parts:
                if x in (b"subscribe", b"ssubscribe"):
                    got += 1
                    owned += 1
                elif x.startswith(b"-"):
                    got += 1
        socks.append(s)
if owned != links * chans:
    sys.exit(f"links.py: {owned} subscriptions, {links * chans} wanted")
print("ready", len(socks), "connections", flush=True)
sel = selectors.DefaultSelector()
for s in socks:
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if not key.fileobj.recv(1 << 20):
            sys.exit("links.py: Redis closed a link")
PY
SNAPS=$OUT/snaps.jsonl
: >"$SNAPS"
TOPO=""
snap() { # label key=value...
    $PY "$OUT/snap.py" "$TOPO" "$SNAPS" "$@"
}

metric() { # port name
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v n="wsfan_$2" '$1 == n { print $2 }'
}
REDIS_PORTS=()
evalsha_sum() {
    local p s=0 c
    for p in "${REDIS_PORTS[@]}"; do
        c=$(redis-cli -p "$p" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p')
        s=$((s + ${c:-0}))
    done
    echo $s
}
wait_publishing() { # evalsha sum before: until the publisher has started
    local i
    for i in $(seq 200); do
        [ $(($(evalsha_sum) - $1)) -lt 20 ] || return 0
        sleep 0.05
    done
    die "the publisher did not start; see $OUT"
}
wait_metric() { # port name value: until the node's metric reaches value (20 s)
    local i v
    for i in $(seq 200); do
        v=$(metric "$1" "$2")
        [ -n "$v" ] && awk -v a="$v" -v b="$3" 'BEGIN { exit !(a >= b) }' && return 0
        sleep 0.1
    done
    die "node on port $1: $2 did not reach $3; see $OUT"
}

declare -A NPORT NPID
start_node() { # name flags...: a wsnode of one worker (its own process group)
    local name=$1 port
    shift
    port=$(free_port)
    # shellcheck disable=SC2086
    setsid "$WSNODE" --bind 127.0.0.1 --port "$port" --workers 1 --log-level warn \
        --max-msg-rate 0 --router-shards 0 --max-conns-per-ip 0 --ip-connect-rate 0 "$@" $NODE_ARGS \
        >"$OUT/$name.log" 2>&1 &
    NPID[$name]=$!
    NPORT[$name]=$port
    GROUPS_+=($!)
    wait_port "$port" || die "$name did not start; see $OUT/$name.log"
    wait_metric "$port" redis_up 1
    echo "node $name $port ${NPID[$name]}" >>"$TOPO"
    echo "group ${NPID[$name]}" >>"$TOPO"
}
stop_node() { # name
    stop_group "${NPID[$1]}"
    sed -i "/^node $1 /d; /^group ${NPID[$1]}\$/d" "$TOPO"
}

LOADS=()
load() { # name wsload-args...: a wsload run in the background (its own process group)
    local name=$1
    shift
    setsid "$WSLOAD" "$@" --quiet --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 &
    LOADS+=($!)
    GROUPS_+=($!)
    echo "group $!" >>"$TOPO"
}
end_loads() { # waits for the first (the measured one), stops the others
    local first=${LOADS[0]} l
    wait "$first" || echo "unitcost.sh: a wsload run failed; see $OUT" >&2
    for l in "${LOADS[@]:1}"; do stop_group "$l"; done
    LOADS=()
}

# ---- the phases ------------------------------------------------------------------------------

DUR=$(secs "$WARMUP" "$(secs "$WINDOW" 2)")
window() { # backend phase meta...: the measured window of a running load
    sleep "$WARMUP"
    snap "$1.$2.start" "${@:3}"
    sleep "$WINDOW"
    snap "$1.$2.end" "${@:3}"
}

# N subscribing nodes, node1..nodeN, S subscribers each, the publisher on node P.
phase_nodes() { # backend cluster n [links]
    local b=$1 c=$2 n=$3 links=${4:-0} k subs=node1 name=n$3
    [ "$links" = 0 ] || name=n$n+links$links
    for k in $(seq 2 "$n"); do
        # Subscribers only: one publish in 1,000 s (none in the window).
        load "$b.$name.node$k" fanout --subscribers "$SUBS" --channels "$CHANNELS" --publishers 1 \
            --rate 0.001 --size "$SIZE" --duration "$(secs "$DUR" 15)" --drain 0.5 \
            --pub-url "ws://127.0.0.1:${NPORT[P]}/ws" "ws://127.0.0.1:${NPORT[node$k]}/ws"
        subs="$subs,node$k"
    done
    if [ "$links" != 0 ]; then
        # Bare subscriber links: to Redis each is what one more node's link is.
        setsid $PY "$OUT/links.py" "$c" "$links" "$CHANNELS" "${REDIS_PORTS[@]}" \
            >"$OUT/$b.$name.links.txt" 2>&1 &
        LOADS+=($!)
        GROUPS_+=($!)
        echo "group $!" >>"$TOPO"
        for k in $(seq 200); do
            grep -q '^ready' "$OUT/$b.$name.links.txt" && break
            kill -0 "${LOADS[-1]}" 2>/dev/null || die "links.py failed: $(cat "$OUT/$b.$name.links.txt")"
            sleep 0.1
        done
        grep -q '^ready' "$OUT/$b.$name.links.txt" || die "links.py did not subscribe; see $OUT"
    fi
    for k in $(seq 2 "$n"); do wait_metric "${NPORT[node$k]}" connections "$SUBS"; done
    sleep 1
    local e0
    e0=$(evalsha_sum)
    load "$b.$name" fanout --subscribers "$SUBS" --channels "$CHANNELS" --publishers 1 --rate "$RATE" \
        --size "$SIZE" --duration "$DUR" --drain 1 \
        --pub-url "ws://127.0.0.1:${NPORT[P]}/ws" "ws://127.0.0.1:${NPORT[node1]}/ws"
    # The main run goes first in LOADS: move it there.
    LOADS=("${LOADS[-1]}" "${LOADS[@]:0:${#LOADS[@]}-1}")
    wait_publishing "$e0"
    window "$b" "$name" cluster="$c" nodes="$n" subs="$subs" pub=P links="$links"
    end_loads
    sleep 1 # the subscribers' nodes unsubscribe
}

backend() { # name cluster flags...: idle baseline, then 1..NODES subscribing nodes
    local b=$1 c=$2 k
    shift 2
    start_node P "$@"
    for k in $(seq "$NODES"); do start_node "node$k" "$@"; done
    sleep 1
    echo "$b: idle baseline" >&2
    snap "$b.idle.start" cluster="$c"
    sleep "$IDLE"
    snap "$b.idle.end" cluster="$c"
    # Unmeasured: the channels' keys and streams reach their steady size (a stream is trimmed
    # by whole nodes of 100 entries), and every process has run this load once.
    echo "$b: warming up" >&2
    load "$b.warm" fanout --subscribers "$SUBS" --channels "$CHANNELS" --publishers 1 --rate "$RATE" \
        --size "$SIZE" --duration 3 --drain 0.5 \
        --pub-url "ws://127.0.0.1:${NPORT[P]}/ws" "ws://127.0.0.1:${NPORT[node1]}/ws"
    end_loads
    sleep 1
    for k in $(seq "$NODES"); do
        echo "$b: $k subscribing node(s), $RATE publishes/s" >&2
        phase_nodes "$b" "$c" "$k"
        if [ "$k" = 1 ] && [ "$LINKS" != 0 ]; then
            echo "$b: 1 subscribing node and $LINKS bare subscriber links" >&2
            phase_nodes "$b" "$c" 1 "$LINKS"
        fi
    done
}

echo "unitcost: results in $OUT" >&2
date -u +%Y-%m-%dT%H:%M:%SZ >"$OUT/date"
echo "$COMMAND" >"$OUT/command"

# One Redis.
TOPO=$OUT/topo.single
: >"$TOPO"
RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
wait_port "$RP" || die "redis-server did not start; see $OUT/redis.log"
echo "redis $RP $REDIS_PID" >>"$TOPO"
REDIS_PORTS=("$RP")
backend single 0 --redis "127.0.0.1:$RP"

# Node CPU per delivery at fan-out F, and memory per subscribed connection, on a fresh node.
echo "single: fan-out $((FAN_SUBS / FAN_CHANNELS)) on a fresh node, $FAN_RATE publishes/s" >&2
for k in $(seq "$NODES"); do stop_node "node$k"; done
start_node F --redis "127.0.0.1:$RP"
sleep 0.5
snap single.fanout.before cluster=0
e0=$(evalsha_sum)
load single.fanout fanout --subscribers "$FAN_SUBS" --channels "$FAN_CHANNELS" --publishers 1 \
    --rate "$FAN_RATE" --size "$SIZE" --duration "$DUR" --drain 1 \
    --pub-url "ws://127.0.0.1:${NPORT[P]}/ws" "ws://127.0.0.1:${NPORT[F]}/ws"
wait_publishing "$e0"
window single fanout cluster=0 subs=F pub=P
end_loads
stop_node F

# Memory per idle connection: a fresh node, wsload connect (RSS and PSS before and after).
echo "single: $IDLE_CONNS idle connections on a fresh node" >&2
start_node M --redis "127.0.0.1:$RP"
sleep 0.5
"$WSLOAD" connect --connections "$IDLE_CONNS" --hold 1 --server-pid "${NPID[M]}" --quiet \
    --json "$OUT/single.idleconn.json" "ws://127.0.0.1:${NPORT[M]}/ws" >"$OUT/single.idleconn.txt" 2>&1 ||
    echo "unitcost.sh: the idle-connection run failed; see $OUT/single.idleconn.txt" >&2
cleanup

if [ "$CLUSTER" = 1 ]; then
    TOPO=$OUT/topo.cluster
    : >"$TOPO"
    base=$(scripts/redis-cluster.sh free-base "$MASTERS")
    CLUSTER_DIR=$OUT/cluster
    seeds=$(scripts/redis-cluster.sh start "$CLUSTER_DIR" "$base" "$MASTERS") ||
        die "the Redis Cluster did not start"
    REDIS_PORTS=()
    while read -r p pid; do
        echo "redis $p $pid" >>"$TOPO"
        REDIS_PORTS+=("$p")
    done <"$CLUSTER_DIR/pids"
    backend cluster 1 --redis-cluster "$seeds"
    for k in $(seq "$NODES"); do stop_node "node$k"; done
    stop_node P
    # Classic PUBLISH against SPUBLISH on one master: what the other masters, and a replica of
    # that master (the shard's other node), get of each.
    P1=${REDIS_PORTS[0]}
    ch=""
    for i in $(seq 0 300); do
        r=$(redis-cli -p "$P1" spublish "bus.$i" x 2>&1 | tr -d '\r')
        case $r in '' | *[!0-9]*) ;; *) ch=bus.$i; break ;; esac
    done
    [ -n "$ch" ] || die "no channel found on the first master"
    echo "cluster: a replica of the first master" >&2
    RR=$(scripts/redis-cluster.sh free-base 1)
    mkdir -p "$OUT/replica"
    redis-server --port "$RR" --bind 127.0.0.1 --dir "$OUT/replica" --cluster-enabled yes \
        --cluster-config-file nodes.conf --cluster-node-timeout 2000 --save '' --appendonly no \
        >"$OUT/replica/redis.log" 2>&1 &
    REPLICA_PID=$!
    wait_port "$RR" || die "the replica did not start; see $OUT/replica"
    redis-cli -p "$RR" cluster meet 127.0.0.1 "$P1" >/dev/null
    id=$(redis-cli -p "$P1" cluster myid | tr -d '\r')
    for i in $(seq 100); do
        [ "$(redis-cli -p "$RR" cluster replicate "$id" 2>&1 | tr -d '\r')" = OK ] && break
        sleep 0.1
    done
    for i in $(seq 100); do
        redis-cli -p "$RR" info replication | tr -d '\r' | grep -qx 'master_link_status:up' && break
        sleep 0.1
    done
    redis-cli -p "$RR" info replication | tr -d '\r' | grep -qx 'master_link_status:up' ||
        die "the replica did not sync; see $OUT/replica"
    echo "redis $RR $REPLICA_PID" >>"$TOPO"
    sleep 1 # every master knows it
    payload=$(head -c "$SIZE" /dev/zero | tr '\0' x)
    bus_to() { # port: bytes sent so far to that node's cluster-bus port (the senders' bytes_acked)
        ss -tinH state established "( dport = :$(($1 + 10000)) )" | grep -o 'bytes_acked:[0-9]*' |
            awk -F: '{ s += $2 } END { print s + 0 }'
    }
    for cmd in PUBLISH SPUBLISH; do
        echo "cluster: $BUS_N x $cmd on one master" >&2
        : >"$OUT/bus-$cmd.bytes"
        declare -A b0=()
        for p in "${REDIS_PORTS[@]}" "$RR"; do b0[$p]=$(bus_to "$p"); done
        snap "cluster.bus-$cmd.start" cluster=1 messages="$BUS_N" master="$P1" replica="$RR"
        redis-benchmark -h 127.0.0.1 -p "$P1" -c 2 -P 16 -n "$BUS_N" -q "$cmd" "$ch" "$payload" \
            >"$OUT/bus-$cmd.txt" 2>&1 || echo "unitcost.sh: redis-benchmark $cmd failed" >&2
        snap "cluster.bus-$cmd.end" cluster=1 messages="$BUS_N" master="$P1" replica="$RR"
        sleep 0.3 # acknowledged
        for p in "${REDIS_PORTS[@]}" "$RR"; do
            echo "$p $(($(bus_to "$p") - b0[$p]))" >>"$OUT/bus-$cmd.bytes"
        done
    done
    cleanup
fi

# ---- the report ------------------------------------------------------------------------------

cat >"$OUT/report.py" <<'PY'
import json, os, statistics, sys

out = sys.argv[1]
rate, subs, chans, size, nodes_max, fan_subs, fan_chans = (float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                                           int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]),
                                                           int(sys.argv[8]))
CLK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()
snaps = {}
for l in open(os.path.join(out, "snaps.jsonl")):
    s = json.loads(l)
    snaps[s["label"]] = s

def pair(name):
    a, b = snaps.get(name + ".start"), snaps.get(name + ".end")
    return (a, b) if a and b else (None, None)

def redis_delta(a, b, ports=None):
    d = {"ticks": 0, "sched_ns": 0, "rusage_s": 0.0, "net_in": 0, "net_out": 0, "evalsha": 0,
         "evalsha_usec": 0, "publish": 0, "spublish": 0, "per": {}}
    for p, rb in b["redis"].items():
        if ports and p not in ports:
            continue
        ra = a["redis"][p]
        x = {"ticks": rb["ticks"] - ra["ticks"], "sched_ns": rb["sched_ns"] - ra["sched_ns"],
             "rusage_s": rb["rusage_s"] - ra["rusage_s"], "net_in": rb["net_in"] - ra["net_in"],
             "net_out": rb["net_out"] - ra["net_out"],
             "evalsha": rb["evalsha"]["calls"] - ra["evalsha"]["calls"],
             "evalsha_usec": rb["evalsha"]["usec"] - ra["evalsha"]["usec"],
             "publish": rb["publish"]["calls"] - ra["publish"]["calls"],
             "spublish": rb["spublish"]["calls"] - ra["spublish"]["calls"]}
        if "bus" in rb:
            x["bus"] = {k: rb["bus"][k] - ra["bus"].get(k, 0) for k in rb["bus"]}
        d["per"][p] = x
        for k in ("ticks", "sched_ns", "rusage_s", "net_in", "net_out", "evalsha", "evalsha_usec", "publish", "spublish"):
            d[k] += x[k]
    return d

def node_delta(a, b, name):
    na, nb = a["nodes"][name], b["nodes"][name]
    m = lambda k: nb["metrics"].get(k, 0) - na["metrics"].get(k, 0)
    return {"ticks": nb["ticks"] - na["ticks"], "sched_ns": nb["sched_ns"] - na["sched_ns"],
            "deliveries": m("deliveries_total"), "received": m("redis_received_total"),
            "bytes_out": m("bytes_out_total"), "messages_in": m("messages_in_total"),
            "published": m("redis_published_total"), "failures": m("redis_publish_failures_total"),
            "rss_kib": nb["rss_kib"], "pss_kib": nb["pss_kib"]}

def machine(a, b):
    ca, cb = a["cpu"], b["cpu"]
    total = sum(cb) - sum(ca)
    idle = (cb[3] + cb[4]) - (ca[3] + ca[4])
    steal = cb[7] - ca[7] if len(cb) > 7 else 0
    busy = total - idle - steal
    ours = b["ours_ticks"] - a["ours_ticks"]
    secs = b["t"] - a["t"]
    core = lambda ticks: 100.0 * ticks / CLK / secs  # % of one core
    return {"secs": secs, "busy": core(busy), "ours": core(ours), "others": core(max(0, busy - ours)),
            "steal": core(steal)}

def fit(xs, ys):
    """Least squares y = a + b x."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b

raw = []
def rawp(*a):
    raw.append(" ".join(str(x) for x in a))

results = {}
for be in ("single", "cluster"):
    ia, ib = pair(f"{be}.idle")
    if not ia:
        continue
    idle = redis_delta(ia, ib)
    isecs = ib["t"] - ia["t"]
    ir = {k: idle[k] / isecs for k in ("ticks", "sched_ns", "rusage_s", "net_in", "net_out")}
    mi = machine(ia, ib)
    rawp(f"[{be}] idle {isecs:.2f} s: redis {idle['ticks']} ticks, {idle['sched_ns'] / 1e6:.1f} ms sched, "
         f"{idle['rusage_s'] * 1e3:.1f} ms rusage, net in {idle['net_in']} B out {idle['net_out']} B, "
         f"EVALSHA {idle['evalsha']}; machine busy {mi['busy']:.0f}% of a core, ours {mi['ours']:.0f}%, "
         f"others {mi['others']:.0f}%, steal {mi['steal']:.0f}%")
    rows = []
    labels = [(n, f"n{n}") for n in range(1, nodes_max + 1)]
    links_label = next((l.split(".")[1] for l in snaps if l.startswith(f"{be}.n1+links") and l.endswith(".start")), None)
    if links_label:
        labels.insert(1, (1, links_label))
    link_row = None
    for n, label in labels:
        a, b = pair(f"{be}.{label}")
        if not a:
            continue
        secs = b["t"] - a["t"]
        r = redis_delta(a, b)
        pubs = r["evalsha"]
        net_s = r["ticks"] / CLK - ir["ticks"] / CLK * secs
        net_sched = (r["sched_ns"] - ir["sched_ns"] * secs) / 1e9
        net_ru = r["rusage_s"] - ir["rusage_s"] * secs
        out_b = r["net_out"] - ir["net_out"] * secs
        in_b = r["net_in"] - ir["net_in"] * secs
        subn = a["meta"]["subs"].split(",")
        nd = [node_delta(a, b, x) for x in subn]
        pd = node_delta(a, b, "P")
        m = machine(a, b)
        row = {"n": n, "secs": secs, "pubs": pubs, "rate": pubs / secs,
               "us": net_s / pubs * 1e6, "us_sched": net_sched / pubs * 1e6, "us_ru": net_ru / pubs * 1e6,
               "script_us": r["evalsha_usec"] / pubs, "out_b": out_b / pubs, "in_b": in_b / pubs,
               "redis_core": 100.0 * r["ticks"] / CLK / secs,
               "node_ns": statistics.mean(x["sched_ns"] / max(1, x["deliveries"]) for x in nd),
               "node_ns_ticks": statistics.mean(x["ticks"] / CLK * 1e9 / max(1, x["deliveries"]) for x in nd),
               "deliveries": [x["deliveries"] for x in nd], "received": [x["received"] for x in nd],
               "bytes_per_delivery": statistics.mean(x["bytes_out"] / max(1, x["deliveries"]) for x in nd),
               "pub_ns": pd["sched_ns"] / max(1, pd["messages_in"]), "pub_ns_ticks": pd["ticks"] / CLK * 1e9 / max(1, pd["messages_in"]),
               "pub_in": pd["messages_in"], "pub_failures": pd["failures"], "machine": m,
               "per": [x["evalsha"] / secs for x in r["per"].values()],
               "links": int(a["meta"].get("links", 0)), "label": label}
        if row["links"]:
            link_row = row
        else:
            rows.append(row)
        rawp(f"[{be}] {n} node(s) + {row['links']} bare links, {secs:.2f} s: EVALSHA {pubs} ({pubs / secs:.0f}/s); redis {r['ticks']} ticks "
             f"(idle share {ir['ticks'] * secs:.1f}), {r['sched_ns'] / 1e6:.1f} ms sched, {r['rusage_s'] * 1e3:.1f} ms rusage, "
             f"in {r['net_in']} B, out {r['net_out']} B, script usec {r['evalsha_usec']}; "
             + "; ".join(f"{x}: {d['deliveries']:.0f} deliveries, {d['ticks']} ticks, "
                         f"{d['sched_ns'] / 1e6:.1f} ms, {d['bytes_out']:.0f} B out" for x, d in zip(subn, nd))
             + f"; P: {pd['messages_in']:.0f} pubs in, {pd['ticks']} ticks, {pd['sched_ns'] / 1e6:.1f} ms, "
             f"{pd['failures']:.0f} failed; machine busy {m['busy']:.0f}% of a core, ours {m['ours']:.0f}%, "
             f"others {m['others']:.0f}%, steal {m['steal']:.0f}%")
        for p, x in r["per"].items():
            rawp(f"    redis :{p}: {x['ticks']} ticks, {x['sched_ns'] / 1e6:.1f} ms, EVALSHA {x['evalsha']}, out {x['net_out']} B")
    results[be] = {"rows": rows, "idle": ir, "idle_machine": mi, "link_row": link_row,
                   "servers": len(idle["per"])}
    if len(rows) >= 2:
        xs = [r["n"] for r in rows]
        results[be]["fit"] = fit(xs, [r["us"] for r in rows])
        results[be]["fit_sched"] = fit(xs, [r["us_sched"] for r in rows])
        results[be]["fit_out"] = fit(xs, [r["out_b"] for r in rows])

def f(v, d=2):
    return f"{v:,.{d}f}"

print(f"\n{open(os.path.join(out, 'command')).read().strip()}")
print(f"unit costs, {open(os.path.join(out, 'date')).read().strip()}, {NCPU} cores; "
      f"{rate:g} publishes/s, {subs} subscribers over {chans} channels per node, {size} B payload\n")
for be, res in results.items():
    rows = res["rows"]
    if not rows:
        continue
    ir = res["idle"]
    per = rows[0]["per"]
    what = (f" Cluster of {len(per)} masters (summed; {min(per):,.0f}-{max(per):,.0f} publishes/s per master)"
            if be == "cluster" else "")
    print(f"{be} Redis{what}: idle {ir['ticks'] / CLK * 100:.2f}% "
          f"of a core ({ir['sched_ns'] / 1e7:.2f}% by schedstat), subtracted")
    print("| subscribing nodes | publishes/s | Redis % of a core | Redis us/publish (stat) | (schedstat) | "
          "EVALSHA us (Redis's clock) | Redis bytes out/publish | in/publish | node ns/delivery (fan-out 1) | "
          "publishing node ns/publish | others on the machine % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    lr = res["link_row"]
    for r in rows[:1] + ([lr] if lr else []) + rows[1:]:
        who = f"{r['n']} + {r['links']} bare links" if r["links"] else f"{r['n']}"
        print(f"| {who} | {f(r['rate'], 0)} | {f(r['redis_core'], 1)} | {f(r['us'])} | {f(r['us_sched'])} | "
              f"{f(r['script_us'])} | {f(r['out_b'], 1)} | {f(r['in_b'], 1)} | {f(r['node_ns'], 0)} | "
              f"{f(r['pub_ns'], 0)} | {f(r['machine']['others'], 0)} |")
    if "fit" in res:
        a, b = res["fit"]
        a2, b2 = res["fit_sched"]
        oa, ob = res["fit_out"]
        print(f"fit over the node count: Redis CPU per publish = {a:.2f} us + {b:.2f} us per subscribing node "
              f"(schedstat: {a2:.2f} + {b2:.2f}); bytes out = {oa:.0f} + {ob:.1f} per subscribing node")
    if lr and rows and rows[0]["n"] == 1:
        r1 = rows[0]
        k = lr["links"]
        print(f"{k} bare links against none (1 node both): Redis CPU per publish {r1['us']:.2f} -> {lr['us']:.2f} us: "
              f"{(lr['us'] - r1['us']) / k:.2f} us per extra link (schedstat: {(lr['us_sched'] - r1['us_sched']) / k:.2f}); "
              f"bytes out {(lr['out_b'] - r1['out_b']) / k:.1f} per extra link")
    print()

fa, fb = pair("single.fanout")
fan = None
if fa:
    before = snaps.get("single.fanout.before")
    d = node_delta(fa, fb, "F")
    secs = fb["t"] - fa["t"]
    fpubs = redis_delta(fa, fb)["evalsha"]
    fo = fan_subs / fan_chans  # every channel has that many subscribers on F
    fan = {"ns": d["sched_ns"] / max(1, d["deliveries"]), "ns_ticks": d["ticks"] / CLK * 1e9 / max(1, d["deliveries"]),
           "fanout": fo, "rate": d["deliveries"] / secs, "bytes": d["bytes_out"] / max(1, d["deliveries"])}
    nsubs = fan_subs
    m = machine(fa, fb)
    rawp(f"[single] fan-out phase {secs:.2f} s: {fpubs} publishes, {d['deliveries']:.0f} deliveries ({d['deliveries'] / secs:.0f}/s; "
         f"fan-out {fo:g}; deliveries / publishes in the window {d['deliveries'] / max(1, fpubs):.1f}), worker {d['ticks']} ticks, "
         f"{d['sched_ns'] / 1e6:.1f} ms sched, {d['bytes_out']:.0f} B out; node RSS {before['nodes']['F']['rss_kib']} -> "
         f"{d['rss_kib']} KiB, PSS {before['nodes']['F']['pss_kib']} -> {d['pss_kib']} KiB; machine busy {m['busy']:.0f}%, "
         f"ours {m['ours']:.0f}%, others {m['others']:.0f}%, steal {m['steal']:.0f}%")
    if nsubs:
        fan["rss_per_sub"] = (d["rss_kib"] - before["nodes"]["F"]["rss_kib"]) * 1024 / nsubs
        fan["pss_per_sub"] = (d["pss_kib"] - before["nodes"]["F"]["pss_kib"]) * 1024 / nsubs
    fan["others"] = m["others"]
idle_conn = None
p = os.path.join(out, "single.idleconn.json")
if os.path.exists(p):
    j = json.load(open(p))
    mem, n = j.get("server_memory_kib"), j["connections"]["open_at_start"]
    if mem and n:
        idle_conn = {"n": n, "rss": (mem["rss_after"] - mem["rss_before"]) * 1024 / n,
                     "pss": (mem["pss_after"] - mem["pss_before"]) * 1024 / n, "mem": mem}
        rawp(f"[single] idle connections: {n} held; RSS {mem['rss_before']} -> {mem['rss_after']} KiB, "
             f"PSS {mem['pss_before']} -> {mem['pss_after']} KiB")

print("| node | figure |")
print("|---|---|")
single = results.get("single", {}).get("rows", [])
if single:
    c1 = statistics.mean(r["node_ns"] for r in single)
    print(f"| worker CPU per delivery at fan-out 1 ({rate / chans:g} msgs/s per subscriber; every message read from Redis for one delivery) | {c1:,.0f} ns |")
    print(f"| worker CPU per publish accepted from a client (the publishing node: frame, JSON, EVALSHA, ack) | {statistics.mean(r['pub_ns'] for r in single):,.0f} ns |")
    print(f"| bytes out per delivery (WebSocket frame, {size} B payload) | {statistics.mean(r['bytes_per_delivery'] for r in single):,.1f} B |")
if fan:
    print(f"| worker CPU per delivery at fan-out {fan['fanout']:.0f} ({fan['rate']:,.0f} deliveries/s) | {fan['ns']:,.0f} ns (stat: {fan['ns_ticks']:,.0f}) |")
    if single and fan["fanout"] > 1.5:
        bnode = (fan["ns"] * fan["fanout"] - c1) / (fan["fanout"] - 1)
        anode = c1 - bnode
        print(f"| so: per message from Redis + per delivery | {anode:,.0f} ns + {bnode:,.0f} ns x fan-out |")
    if "rss_per_sub" in fan:
        print(f"| memory per subscribed connection under that load (one channel; the channels' memory windows included) | {fan['rss_per_sub']:,.0f} B RSS, {fan['pss_per_sub']:,.0f} B PSS |")
if idle_conn:
    print(f"| memory per idle connection ({idle_conn['n']:,} on a fresh node) | {idle_conn['rss']:,.0f} B RSS, {idle_conn['pss']:,.0f} B PSS |")

bus = []
for cmd in ("PUBLISH", "SPUBLISH"):
    a, b = pair(f"cluster.bus-{cmd}")
    if not a:
        continue
    n = int(a["meta"]["messages"])
    own, rep = a["meta"]["master"], a["meta"].get("replica")
    idle = results.get("cluster", {}).get("idle")
    secs = b["t"] - a["t"]
    per_idle = idle["sched_ns"] / results["cluster"]["servers"] if idle else 0  # per master
    d = redis_delta(a, b)
    sent = {}
    try:
        for l in open(os.path.join(out, f"bus-{cmd}.bytes")):
            p, v = l.split()
            sent[p] = int(v)
    except OSError:
        pass
    def cost(p):
        x = d["per"][p]
        bus = x.get("bus", {})
        return ((x["sched_ns"] - per_idle * secs) / n,
                (bus.get("publish_received", 0) + bus.get("publishshard_received", 0)) / n,
                sent.get(p, float("nan")) / n)
    others = [cost(p) for p in d["per"] if p not in (own, rep)]
    oth = tuple(statistics.mean(x[i] for x in others) for i in range(3))
    bus.append((cmd, n / secs, cost(own)[0], oth, cost(rep) if rep in d["per"] else None))
    rawp(f"[cluster] {n} x {cmd} on :{own} in {secs:.2f} s: " + "; ".join(
        f":{p}{' (replica)' if p == rep else ''} {x['sched_ns'] / 1e6:.1f} ms, bytes sent to it {sent.get(p)}, bus {x.get('bus', {})}"
        for p, x in d["per"].items()))
if bus:
    print("\n| on a Redis Cluster, no subscribers | messages/s | CPU ns per message, the master it was sent to | "
          "each other master: CPU ns / bus messages / bus bytes, per message | its replica: CPU ns / bus messages / bus bytes |")
    print("|---|---|---|---|---|")
    for cmd, rate_, mine, oth, rp in bus:
        r = f"{rp[0]:,.0f} / {rp[1]:.2f} / {rp[2]:,.0f}" if rp else "-"
        print(f"| {cmd} | {rate_:,.0f} | {mine:,.0f} | {oth[0]:,.0f} / {oth[1]:.2f} / {oth[2]:,.0f} | {r} |")

print("\nEVALSHA us is the time Redis's commandstats give the script (wall clock inside the call: preemption counts).")
print("raw:")
for l in raw:
    print("  " + l)
print(f"\nresults and logs: {out}")
PY
$PY "$OUT/report.py" "$OUT" "$RATE" "$SUBS" "$CHANNELS" "$SIZE" "$NODES" "$FAN_SUBS" "$FAN_CHANNELS" | tee "$OUT/report.md"
