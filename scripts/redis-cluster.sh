#!/bin/sh
# A throwaway Redis Cluster of masters on loopback (Debian's redis-server 7.0), no persistence,
# for the tests, CI and deploy/local/up --redis-cluster alike.
#
#   scripts/redis-cluster.sh start DIR FIRST_PORT N [REPLICAS]
#       N masters (and REPLICAS replicas of each, N >= 3; default 0) on 127.0.0.1:FIRST_PORT..,
#       the masters first, each in DIR/<port>/ (nodes.conf, redis.log), pids
#       in DIR/pids ("PORT PID" lines); joins them with redis-cli --cluster create (for N < 3,
#       which that refuses, with CLUSTER ADDSLOTSRANGE + MEET), waits until every node says
#       cluster_state:ok and prints the seed list 127.0.0.1:P1,127.0.0.1:P2,... (the only
#       thing on stdout).
#       On failure it stops what it started and exits 1.
#   scripts/redis-cluster.sh stop DIR             stops them (SIGTERM, then SIGKILL after 5 s)
#   scripts/redis-cluster.sh restart DIR PORT     starts the (dead) master on PORT again with
#       its nodes.conf, so it rejoins with its slots (not its keys), and waits for ok
#   scripts/redis-cluster.sh wait-ok DIR          until every node says cluster_state:ok
#   scripts/redis-cluster.sh free-base N [FROM]   prints a FIRST_PORT for N masters where all of
#       P..P+N-1 and their bus ports P+10000.. are free now: scanning up from FROM, or (no
#       FROM) a random one whose ports all stay below the kernel's ephemeral range
#
# Redis Cluster listens on port+10000 too (the cluster bus): ports above 55535 are refused.
# Environment: REDIS_CLUSTER_TIMEOUT (30): seconds to wait for a start or for cluster_state:ok.
set -eu
PY=/usr/bin/python3
timeout=${REDIS_CLUSTER_TIMEOUT:-30}

die() { echo "redis-cluster: $*" >&2; exit 1; }
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
bad_usage() { usage >&2; exit 2; }
number() { case $2 in ''|*[!0-9]*) die "$1 must be a number, not '$2'" ;; esac; }

alive() { # pid: running (not a zombie)
    [ -r "/proc/$1/stat" ] || return 1
    _state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$_state" ] && [ "$_state" != Z ]
}
is_redis() { alive "$1" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = redis-server ]; }

cli() { # port, args...: one reply, carriage returns removed
    _port=$1
    shift
    redis-cli -h 127.0.0.1 -p "$_port" "$@" 2>/dev/null | tr -d '\r'
}

ports_of() { awk '{print $1}' "$1/pids"; }

launch() { # dir port: one master in dir/port/, backgrounded, its pid on stdout
    redis-server --port "$2" --bind 127.0.0.1 --dir "$1/$2" --logfile "$1/$2/redis.log" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --cluster-require-full-coverage no \
        --save '' --appendonly no --daemonize no </dev/null >/dev/null 2>&1 &
    echo $!
}

wait_up() { # dir port pid: until the redis-server with that pid answers on the port
    end=$(($(date +%s) + timeout))
    while :; do
        alive "$3" || die "redis-server on port $2 exited (is $2 or $(($2 + 10000)) taken?); $1/$2/redis.log:
$(tail -5 "$1/$2/redis.log" 2>/dev/null)"
        # Its own pid, not whatever else may answer on that port.
        [ "$(cli "$2" info server | sed -n 's/^process_id://p')" = "$3" ] && return 0
        [ "$(date +%s)" -lt "$end" ] || die "redis-server on port $2 did not answer within ${timeout}s"
        sleep 0.05
    done
}

wait_ok() { # dir
    want=$(ports_of "$1" | wc -l)
    end=$(($(date +%s) + timeout))
    while :; do
        bad=""
        for port in $(ports_of "$1"); do
            info=$(cli "$port" cluster info)
            echo "$info" | grep -qx 'cluster_state:ok' &&
                echo "$info" | grep -qx "cluster_known_nodes:$want" || bad="$bad $port"
        done
        [ -z "$bad" ] && return 0
        [ "$(date +%s)" -lt "$end" ] ||
            die "cluster_state not ok (or not every node known) within ${timeout}s on:$bad"
        sleep 0.1
    done
}

wait_replicas() { # dir count: until that many replicas have their link to a master up (the
    # cluster says ok before the replicas are attached, and an unattached one cannot fail over)
    end=$(($(date +%s) + timeout))
    while :; do
        up=0
        for port in $(ports_of "$1"); do
            cli "$port" info replication | grep -qx 'master_link_status:up' && up=$((up + 1))
        done
        [ "$up" -ge "$2" ] && return 0
        [ "$(date +%s)" -lt "$end" ] || die "only $up of $2 replicas attached within ${timeout}s"
        sleep 0.1
    done
}

start() { # dir first n [replicas]
    { [ $# = 3 ] || [ $# = 4 ]; } || bad_usage
    number FIRST_PORT "$2"
    number N "$3"
    replicas=${4:-0}
    number REPLICAS "$replicas"
    first=$2 masters=$3 n=$(($3 * (1 + replicas)))
    [ "$masters" -ge 1 ] || die "N must be at least 1"
    [ "$replicas" = 0 ] || [ "$masters" -ge 3 ] || die "replicas need at least 3 masters"
    [ "$first" -ge 1 ] || die "FIRST_PORT must be at least 1"
    last=$((first + n - 1))
    [ "$last" -le 55535 ] || die "port $last is above 55535: Redis Cluster also listens on \
port+10000 (the cluster bus), which must be below 65536; choose a lower FIRST_PORT \
(scripts/redis-cluster.sh free-base $n)"
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    if [ -f "$dir/pids" ]; then
        while read -r _ pid; do
            is_redis "$pid" && die "a cluster from $dir is still running (pid $pid): stop it first"
        done < "$dir/pids"
    fi
    : > "$dir/pids"
    ok=0
    trap '[ $ok = 1 ] || stop "$dir" >/dev/null 2>&1' EXIT
    trap 'exit 1' INT TERM
    p=$first
    while [ "$p" -le "$last" ]; do
        rm -rf "${dir:?}/$p"
        mkdir -p "$dir/$p"
        echo "$p $(launch "$dir" "$p")" >> "$dir/pids"
        p=$((p + 1))
    done
    while read -r p pid; do
        wait_up "$dir" "$p" "$pid"
    done < "$dir/pids"
    seeds=$(ports_of "$dir" | sed 's/^/127.0.0.1:/' | paste -sd, -)
    if [ "$masters" -ge 3 ]; then
        # shellcheck disable=SC2046
        redis-cli --cluster create $(echo "$seeds" | tr , ' ') --cluster-replicas "$replicas" \
            --cluster-yes > "$dir/create.log" 2>&1 ||
            die "redis-cli --cluster create failed:
$(tail -20 "$dir/create.log")"
    else
        # redis-cli --cluster create wants three masters: the same by hand.
        i=0
        for p in $(ports_of "$dir"); do
            lo=$((i * 16384 / n)) hi=$(((i + 1) * 16384 / n - 1))
            [ "$(cli "$p" cluster set-config-epoch $((i + 1)))" = OK ] ||
                die "could not set the config epoch of port $p"
            [ "$(cli "$p" cluster addslotsrange "$lo" "$hi")" = OK ] ||
                die "could not give slots $lo-$hi to port $p"
            [ "$p" = "$first" ] || [ "$(cli "$p" cluster meet 127.0.0.1 "$first")" = OK ] ||
                die "port $p could not meet port $first"
            i=$((i + 1))
        done
    fi
    wait_ok "$dir"
    [ "$replicas" = 0 ] || wait_replicas "$dir" $((masters * replicas))
    ok=1
    echo "$seeds"
}

stop() { # dir
    [ $# = 1 ] || bad_usage
    [ -f "$1/pids" ] || return 0
    pids=""
    while read -r _ pid; do
        # Only our redis-servers: a pid may have been reused since.
        if is_redis "$pid"; then
            kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
        fi
    done < "$1/pids"
    i=0
    for pid in $pids; do
        while alive "$pid" && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        is_redis "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

restart() { # dir port
    [ $# = 2 ] || bad_usage
    number PORT "$2"
    dir=$(cd "$1" && pwd)
    old=$(awk -v p="$2" '$1 == p {print $2}' "$dir/pids")
    [ -n "$old" ] || die "port $2 is not one of $dir/pids"
    is_redis "$old" && die "the master on port $2 is still running (pid $old)"
    [ -f "$dir/$2/nodes.conf" ] || die "no $dir/$2/nodes.conf to rejoin with"
    pid=$(launch "$dir" "$2")
    awk -v p="$2" -v pid="$pid" '$1 == p {$2 = pid} {print}' "$dir/pids" > "$dir/pids.new"
    mv "$dir/pids.new" "$dir/pids"
    wait_up "$dir" "$2" "$pid"
    wait_ok "$dir"
}

free_base() { # n [from]
    { [ $# = 1 ] || [ $# = 2 ]; } || bad_usage
    number N "$1"
    [ $# = 1 ] || number FROM "$2"
    $PY - "$@" <<'EOF'
import random, socket, sys

n = int(sys.argv[1])
top = 55535 - n + 1  # the last port's bus port, +10000, must be a port
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
def fits(p):
    return all(free(q) and free(q + 10000) for q in range(p, p + n))
if len(sys.argv) > 2:
    candidates = range(int(sys.argv[2]), top + 1)
else:
    # Ports and bus ports below the ephemeral range, where no client socket lands by chance.
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        eph = int(f.read().split()[0])
    hi = min(top, eph - 10000 - n)
    lo = 10000 if hi - 10000 > 1000 else 1024
    candidates = random.sample(range(lo, hi + 1), k=min(2000, hi + 1 - lo)) if hi >= lo else []
for p in candidates:
    if fits(p):
        print(p)
        sys.exit(0)
sys.exit(f"redis-cluster: no {n} free ports P.. with P+10000.. free too")
EOF
}

[ $# -ge 1 ] || bad_usage
cmd=$1
shift
case $cmd in
start) start "$@" ;;
stop) stop "$@" ;;
restart) restart "$@" ;;
wait-ok) [ $# = 1 ] || bad_usage; wait_ok "$(cd "$1" && pwd)" ;;
free-base) free_base "$@" ;;
-h|--help|help) usage ;;
*) echo "redis-cluster: unknown command $cmd (see --help)" >&2; exit 2 ;;
esac
