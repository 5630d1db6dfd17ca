#!/bin/sh
# Sets everything up on a fresh Debian 12 machine and runs a local wsfan cluster with a demo:
# a Redis, a wsrouter (presence) and a wsnode whose two workers are joined through Redis.
#   ./deploy/local.sh              install, build, start Redis, wsrouter and wsnode on :8080, run
#                                  the demo, keep serving
#   ./deploy/local.sh --demo-only  the same, but stop everything after the demo
# Environment: PORT (8080), BIND (127.0.0.1), REDIS_PORT (6391), ROUTER_PORT (8090).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo

PORT=${PORT:-8080}
BIND=${BIND:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6391}
ROUTER_PORT=${ROUTER_PORT:-8090}
# A Redis of our own (no persistence) and a two-worker node on it: workers are cluster nodes
# joined through Redis, so the demo's two clients may well sit on different ones.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis=$!
./build/router/wsrouter --redis "127.0.0.1:$REDIS_PORT" --port "$ROUTER_PORT" &
router=$!
./build/node/wsnode --bind "$BIND" --port "$PORT" --echo --workers 2 --redis "127.0.0.1:$REDIS_PORT" &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node 2>/dev/null; kill $router $redis 2>/dev/null' EXIT INT TERM

i=0
until curl -fs "http://$BIND:$PORT/healthz" >/dev/null; do
    i=$((i + 1))
    [ $i -lt 50 ] || { echo "wsnode did not come up" >&2; exit 1; }
    sleep 0.1
done
until curl -fs "http://127.0.0.1:$ROUTER_PORT/healthz" >/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "wsrouter did not come up" >&2; exit 1; }
    sleep 0.1
done
/usr/bin/python3 deploy/demo.py "ws://$BIND:$PORT/ws"
[ "${1:-}" = "--demo-only" ] && exit 0
cat <<MSG

wsnode is serving on ws://$BIND:$PORT/ws (protocol v1), ws://$BIND:$PORT/echo,
http://$BIND:$PORT/healthz and http://$BIND:$PORT/metrics, with Redis on 127.0.0.1:$REDIS_PORT
and wsrouter's http://127.0.0.1:$ROUTER_PORT/metrics.
Try: /usr/bin/python3 -m websockets ws://$BIND:$PORT/ws
Ctrl-C stops it (close 1001 to every client).
MSG
wait $node
