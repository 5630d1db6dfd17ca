#!/bin/sh
# Installs the Debian 12 packages wsfan builds, runs and tests with. Safe to run again.
set -eu
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev
      libev-dev libssl-dev libhiredis-dev libprotobuf-c-dev protobuf-c-compiler
      libhttp-parser-dev libjsmn-dev libjwt-dev zlib1g-dev libcmocka-dev
      python3 python3-websockets python3-pytest python3-yaml openssl curl redis-server haproxy
      chromium nodejs"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# npm comes with Debian's npm package, or inside a nodejs from elsewhere (NodeSource).
command -v npm >/dev/null || { PKGS="$PKGS npm"; missing="$missing npm"; }
[ -z "$missing" ] && [ "${WSFAN_APT_UPDATE:-0}" = 0 ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $PKGS
