#!/bin/sh
# Installs playwright-core (pinned in tests/browser/package-lock.json) from the npm registry
# for the browser test; the browser itself is Debian's chromium (scripts/deps.sh).
set -eu
cd "$(dirname "$0")/../tests/browser"
[ -f node_modules/playwright-core/package.json ] || npm ci --no-audit --no-fund
