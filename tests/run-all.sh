#!/bin/sh
# Installs what is missing, builds, and runs every test: unit, integration, then the whole
# suite again under ASan+UBSan, then each fuzz target for a bounded time.
#   ./tests/run-all.sh            everything
#   FUZZ_SECONDS=60 ./tests/run-all.sh
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/browser-deps.sh
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-20}

echo "== build (RelWithDebInfo) and test"
./scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build with ASan+UBSan and test"
./scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DWSFAN_SANITIZE=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== fuzz (${fuzz_seconds}s per target)"
./scripts/build.sh build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DWSFAN_FUZZ=ON -DWSFAN_FUZZ_SECONDS="$fuzz_seconds"
ctest --test-dir build-fuzz --output-on-failure -L fuzz -j"$jobs"
