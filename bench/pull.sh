#!/usr/bin/env bash
# Cold `ctr images pull` (fetch + unpack) of the shared benchmark images into berthd and into
# containerd 1.6 (same machine, same run), plus the unpack alone (content already present).
# Prints times, unpack MB/s and berthd/containerd ratios. Not a test.
#   bench/pull.sh [IMAGE=127.0.0.1:5000/bench/big:1] [ROUNDS=3]
# Uses ../shared/bench/{setup-registry,make-images}.sh for the local registry and images.
source "$(dirname "$0")/lib.sh"
SHARED=${SHARED_BENCH:-$BENCH_HERE/../../shared/bench}
IMAGE=${1:-127.0.0.1:5000/bench/big:1}
ROUNDS=${2:-3}
bash "$SHARED/setup-registry.sh" >/dev/null
bash "$SHARED/make-images.sh" >/dev/null
start_both

pull() {  # pull SOCK NS → ms for a cold pull (fresh namespace, nothing present)
  local t0 t1
  t0=$(now_ms)
  ctr --address "$1" -n "$2" images pull --plain-http "$IMAGE" >/dev/null
  t1=$(now_ms)
  echo $((t1 - t0))
}
unpack() {  # content present, snapshots gone: time the unpack alone
  local t0 t1
  ctr --address "$1" -n "$2" content fetch --plain-http "$IMAGE" >/dev/null
  t0=$(now_ms)
  ctr --address "$1" -n "$2" images pull --plain-http "$IMAGE" >/dev/null
  t1=$(now_ms)
  echo $((t1 - t0))
}
cleanup_ns() {
  ctr --address "$1" -n "$2" images rm --sync "$IMAGE" >/dev/null 2>&1 || true
  for s in $(ctr --address "$1" -n "$2" snapshots ls 2>/dev/null | awk 'NR>1{print $1}' | tac); do
    ctr --address "$1" -n "$2" snapshots rm "$s" >/dev/null 2>&1 || true
  done
  sleep 2  # let background GC finish before the next timing
}

declare -a pc pb uc ub
for i in $(seq "$ROUNDS"); do
  pc+=("$(pull "$CTRD_SOCK" "p$i")"); pb+=("$(pull "$BERTH_SOCK" "p$i")")
  cleanup_ns "$CTRD_SOCK" "p$i"; cleanup_ns "$BERTH_SOCK" "p$i"
  uc+=("$(unpack "$CTRD_SOCK" "u$i")"); ub+=("$(unpack "$BERTH_SOCK" "u$i")")
  cleanup_ns "$CTRD_SOCK" "u$i"; cleanup_ns "$BERTH_SOCK" "u$i"
  echo "round $i: pull containerd ${pc[-1]} ms berthd ${pb[-1]} ms | unpack containerd ${uc[-1]} ms berthd ${ub[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mpc=$(median "${pc[@]}"); mpb=$(median "${pb[@]}"); muc=$(median "${uc[@]}"); mub=$(median "${ub[@]}")
ratio() { awk -v b="$1" -v c="$2" 'BEGIN{printf "%.2f", b/c}'; }
echo "median cold pull: containerd ${mpc} ms, berthd ${mpb} ms, ratio $(ratio "$mpb" "$mpc")x"
echo "median unpack:    containerd ${muc} ms, berthd ${mub} ms, ratio $(ratio "$mub" "$muc")x"
