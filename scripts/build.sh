#!/bin/sh
# Builds wsfan into build/ (or the directory given): ./scripts/build.sh [DIR] [cmake options...]
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build}
[ $# -gt 0 ] && shift
cmake -S . -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
