#!/bin/bash
# node-ws-redis peer: two Node.js processes, on --port and --port2, that act as one system
# through Redis pub/sub. Runs in the foreground; SIGTERM stops both. Redis is not started here.
# Usage: start.sh --port N [--port2 M (default N+1)] [--redis HOST:PORT (default 127.0.0.1:6379)]
cd "$(dirname "$0")" || exit 1
port=8080 port2='' redis=127.0.0.1:6379
while [ $# -gt 0 ]; do
    case $1 in
        --port) port=$2; shift 2 ;;
        --port2) port2=$2; shift 2 ;;
        --redis) redis=$2; shift 2 ;;
        *) echo "usage: $0 --port N [--port2 M] [--redis HOST:PORT]" >&2; exit 2 ;;
    esac
done
port2=${port2:-$((port + 1))}
[ -d node_modules/ioredis ] || npm ci --no-audit --no-fund || exit 1

node server.js --port "$port" --redis "$redis" &
a=$!
node server.js --port "$port2" --redis "$redis" &
b=$!
trap 'kill -TERM $a $b 2>/dev/null; wait $a $b; exit 0' TERM INT
wait -n $a $b
# One process ended by itself: stop the other one too and report failure.
kill -TERM $a $b 2>/dev/null
wait $a $b
exit 1
