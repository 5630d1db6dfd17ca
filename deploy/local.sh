#!/bin/sh
# Sets everything up on a fresh Debian 12 machine and runs a local wsfan node with a demo.
#   ./deploy/local.sh              install, build, start wsnode on :8080, run the demo, keep serving
#   ./deploy/local.sh --demo-only  the same, but stop the node after the demo
# Environment: PORT (8080), BIND (127.0.0.1).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo

PORT=${PORT:-8080}
BIND=${BIND:-127.0.0.1}
./build/node/wsnode --bind "$BIND" --port "$PORT" --echo &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node 2>/dev/null' EXIT INT TERM

i=0
until curl -fs "http://$BIND:$PORT/healthz" >/dev/null; do
    i=$((i + 1))
    [ $i -lt 50 ] || { echo "wsnode did not come up" >&2; exit 1; }
    sleep 0.1
done
/usr/bin/python3 deploy/demo.py "ws://$BIND:$PORT/ws"
[ "${1:-}" = "--demo-only" ] && exit 0
cat <<MSG

wsnode is serving on ws://$BIND:$PORT/ws (protocol v1), ws://$BIND:$PORT/echo and
http://$BIND:$PORT/healthz. Try: /usr/bin/python3 -m websockets ws://$BIND:$PORT/ws
Ctrl-C stops it (close 1001 to every client).
MSG
wait $node
