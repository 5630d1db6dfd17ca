#!/bin/sh
# Installs every peer's dependencies up front (Debian packages, then npm ci in each Node peer),
# so that the start.sh scripts start at once. Safe to run again. Redis itself is not installed
# here: wsfan's scripts/deps.sh brings redis-server.
set -e
cd "$(dirname "$0")"
pkgs="nginx-light libnginx-mod-nchan python3-websockets"
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # a list of packages
    apt-get install -y $missing || { apt-get update && apt-get install -y $missing; }
fi
for d in node-ws node-ws-redis; do
    (cd "$d" && npm ci --no-audit --no-fund)
done
