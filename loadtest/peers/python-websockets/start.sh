#!/bin/sh
# python-websockets peer: protocol v1 on /ws and echo on /echo, one asyncio process, in the
# foreground, on Debian's python3-websockets. Usage: start.sh --port N (--redis, --port2 ignored)
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
if ! /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
    apt-get install -y python3-websockets || { apt-get update && apt-get install -y python3-websockets; }
fi
exec /usr/bin/python3 server.py --port "$port"
