#!/usr/bin/env bash
# Ingest one large blob through the real `ctr content ingest` into berthd and into containerd
# 1.6 (same machine, same run) and print times and the berthd/containerd ratio.
#   bench/ingest.sh [SIZE_MB=500] [ROUNDS=3]
# Needs root, a built berthd and the containerd package. Not a test: prints numbers only.
source "$(dirname "$0")/lib.sh"
SIZE_MB=${1:-500}
ROUNDS=${2:-3}
start_both
blob=$BENCH_DIR/blob
head -c "$((SIZE_MB << 20))" /dev/urandom >"$blob"
digest=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
echo "blob: ${SIZE_MB} MiB $digest"

run() {  # run SOCK NAME → prints ms
  local sock=$1 ref=$2
  local t0 t1
  t0=$(now_ms)
  ctr --address "$sock" -n bench content ingest --expected-digest "$digest" \
    --expected-size "$((SIZE_MB << 20))" "$ref" <"$blob" >/dev/null
  t1=$(now_ms)
  ctr --address "$sock" -n bench content rm "$digest" >/dev/null
  echo $((t1 - t0))
}

declare -a tb tc
for i in $(seq "$ROUNDS"); do
  tc+=("$(run "$CTRD_SOCK" "bench-$i")")
  tb+=("$(run "$BERTH_SOCK" "bench-$i")")
  echo "round $i: containerd ${tc[-1]} ms, berthd ${tb[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mc=$(median "${tc[@]}")
mb=$(median "${tb[@]}")
echo "median: containerd ${mc} ms, berthd ${mb} ms, ratio berthd/containerd = $(awk -v b="$mb" -v c="$mc" 'BEGIN{printf "%.2f", b/c}')x"
