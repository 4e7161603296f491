#!/usr/bin/env bash
# `ctr snapshots diff` (Diff.Diff) on berthd and on containerd 1.6, same machine, same trees:
# a committed base of FILES small files (4 KiB, 100 dirs) plus 64 MiB in 4 big files, and an
# overlayfs snapshot on it that rewrites 10% of the small files, deletes 5%, adds 1000 files
# and one 32 MiB file. Prints per-round times and the ratio.
#   bench/diff.sh [FILES=20000] [ROUNDS=3] [MEDIA_TYPE=application/vnd.oci.image.layer.v1.tar+gzip]
# Needs root, a built berthd and the containerd package. Not a test: prints numbers only.
source "$(dirname "$0")/lib.sh"
FILES=${1:-20000}
ROUNDS=${2:-3}
MEDIA_TYPE=${3:-application/vnd.oci.image.layer.v1.tar+gzip}
start_both
trap 'umount "$BENCH_DIR/mnt" 2>/dev/null || true; cleanup_both' EXIT

src=$BENCH_DIR/src
for d in $(seq 0 99); do
  mkdir -p "$src/base/d$d"
  head -c $((FILES / 100 * 4096)) /dev/urandom | split -b 4096 -a 4 - "$src/base/d$d/f"
done
for b in 1 2 3 4; do head -c $((16 << 20)) /dev/urandom >"$src/base/big$b"; done

ctr_at() { local sock=$1; shift; ctr --address "$sock" -n bench snapshots --snapshotter overlayfs "$@"; }

# populate SOCK: base-c from $src/base, top-c with the changes on top (through the overlay).
populate() {
  local sock=$1 mnt=$BENCH_DIR/mnt
  mkdir -p "$mnt"
  ctr_at "$sock" prepare base >/dev/null
  eval "$(ctr_at "$sock" mounts "$mnt" base)"
  cp -a "$src/base/." "$mnt/"
  umount "$mnt"
  ctr_at "$sock" commit base-c base
  ctr_at "$sock" prepare top base-c >/dev/null
  eval "$(ctr_at "$sock" mounts "$mnt" top)"
  local n=0
  for f in "$mnt"/d*/f*; do
    case $((n % 20)) in
      0 | 1) head -c 4096 /dev/urandom >"$f" ;;
      2) rm "$f" ;;
    esac
    n=$((n + 1))
  done
  mkdir -p "$mnt/new"
  for k in $(seq 1000); do echo "new $k" >"$mnt/new/n$k"; done
  head -c $((32 << 20)) /dev/urandom >"$mnt/newbig"
  umount "$mnt"
  ctr_at "$sock" commit top-c top
}

run() {  # run SOCK → prints ms
  local t0 t1 out=$BENCH_DIR/layer
  t0=$(now_ms)
  ctr_at "$1" diff --media-type "$MEDIA_TYPE" top-c >"$out"
  t1=$(now_ms)
  echo "$((t1 - t0)) $(stat -c %s "$out") $(gzip -dcf "$out" | tar -tf - | wc -l)"
}

populate "$CTRD_SOCK"
populate "$BERTH_SOCK"
declare -a tb tc
for i in $(seq "$ROUNDS"); do
  read -r ms_c size_c n_c < <(run "$CTRD_SOCK")
  read -r ms_b size_b n_b < <(run "$BERTH_SOCK")
  tc+=("$ms_c")
  tb+=("$ms_b")
  echo "round $i: containerd ${ms_c} ms (${size_c} B, ${n_c} entries), berthd ${ms_b} ms (${size_b} B, ${n_b} entries)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mc=$(median "${tc[@]}")
mb=$(median "${tb[@]}")
echo "median: containerd ${mc} ms, berthd ${mb} ms, ratio berthd/containerd = $(awk -v b="$mb" -v c="$mc" 'BEGIN{printf "%.2f", b/c}')x"
