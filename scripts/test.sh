#!/usr/bin/env bash
# Builds and runs every test: unit tests, then integration tests that start berthd on
# temporary roots and sockets and drive it with the real `ctr` (these need root and the
# packages from scripts/install-deps.sh; without root they skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 300 -j"${JOBS:-$(nproc)}" "$@"
