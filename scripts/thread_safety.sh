#!/usr/bin/env bash
# Clang's thread-safety analysis over our sources (GUARDED_BY, REQUIRES, ... from
# src/common/thread_annotations.h). Syntax-only: the tree is built with g++ and libstdc++, whose
# std::mutex carries no capability annotations, so the check parses each file with clang and
# libc++ (std::mutex, lock_guard and unique_lock annotated under
# _LIBCPP_ENABLE_THREAD_SAFETY_ANNOTATIONS); nothing is linked. Needs clang-16 and libc++-16-dev
# (libc++ 14 lacks std::expected) and a configured build dir with the generated headers
# (`ninja -C build berth_api berth_shim_pb` or any build).
#   BUILD_DIR=build CLANGXX=clang++-16 bash scripts/thread_safety.sh [file-regex]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
CLANGXX=${CLANGXX:-clang++-16}
FILTER=${1:-/src/}
python3 - "$BUILD_DIR/compile_commands.json" "$CLANGXX" "$FILTER" <<'PY'
import json, re, shlex, subprocess, sys
db, clang, pattern = sys.argv[1], sys.argv[2], sys.argv[3]
failed = 0
seen = set()
for e in json.load(open(db)):
    f = e["file"]
    if not re.search(pattern, f) or "/gen/" in f or f in seen or not f.startswith(e["directory"].split("/build")[0]):
        continue
    seen.add(f)
    args = shlex.split(e["command"])[1:]
    keep = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-c"):
            skip = a == "-o"
            continue
        if a.startswith(("-O", "-g", "-ffunction-sections", "-fdata-sections", "-fsanitize", "-fno-sanitize")):
            continue
        if a == f:
            continue
        keep.append("-std=c++2b" if a == "-std=c++23" else a)  # clang 16 spells it c++2b
    cmd = [clang, "-fsyntax-only", "-stdlib=libc++", "-D_LIBCPP_ENABLE_THREAD_SAFETY_ANNOTATIONS",
           "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option",
           "-Wno-unused-command-line-argument"] + keep + [f]
    r = subprocess.run(cmd, cwd=e["directory"], capture_output=True, text=True)
    # Only the analysis decides; other clang-vs-g++ differences are reported, not fatal.
    ts = [l for l in r.stderr.splitlines() if "thread-safety" in l]
    status = "ok" if r.returncode == 0 else ("thread-safety" if ts else "clang-error")
    if status != "ok":
        failed += 1 if ts else 0
        print("%-14s %s" % (status, f))
        print("\n".join((ts or r.stderr.splitlines())[:20]))
    else:
        print("ok             %s" % f)
sys.exit(1 if failed else 0)
PY
