#!/usr/bin/env bash
# Configures and builds berth into build/ (CMake + Ninja, ccache when present).
#   scripts/build.sh                      everything, tests included (what scripts/test.sh runs)
#   scripts/build.sh berthd berth ...     only these targets and what they need
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
ninja -C "$BUILD_DIR" -j"${JOBS:-$(nproc)}" "$@"
