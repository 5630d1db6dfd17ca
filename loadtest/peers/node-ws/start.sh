#!/bin/sh
# node-ws peer: protocol v1 on /ws and echo on /echo, one Node.js process, in the foreground.
# Usage: start.sh --port N   (--redis and --port2 are accepted and ignored)
set -e
cd "$(dirname "$0")"
port=8080
while [ $# -gt 0 ]; do
    case $1 in
        --port) port=$2; shift 2 ;;
        --redis|--port2) shift 2 ;;
        *) echo "usage: $0 --port N" >&2; exit 2 ;;
    esac
done
[ -d node_modules/ws ] || npm ci --no-audit --no-fund
exec node server.js --port "$port"
