#!/usr/bin/env bash
# Builds the unit tests with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and
# runs them (`ctest -L unit`): our code is instrumented, the generated protos are not (they come
# from ccache after a normal build). Any sanitizer report fails the test that triggered it.
#   SANITIZE=address,undefined  BUILD_DIR=build-asan  JOBS=N   bash scripts/sanitize.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-asan}
JOBS=${JOBS:-$(nproc)}
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
      -DBERTH_SANITIZE="${SANITIZE:-address,undefined}" >/dev/null
ninja -C "$BUILD_DIR" -j"$JOBS" unit_tests
built=$(date +%s)
# halt/abort on the first report so that ctest sees a failure; LSan is on (ASan's default).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 600 -j"$JOBS" -L unit "$@"
echo "sanitize: build $((built - start)) s, tests $(( $(date +%s) - built )) s"
