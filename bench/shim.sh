#!/usr/bin/env bash
# containerd-shim-berth-v2 against containerd's own containerd-shim-runc-v2, under one stock
# containerd 1.6 started here (temporary root, state and socket; our shim first on its PATH,
# BERTH_SHIM_RUN_DIR in its environment so our shim's sockets and runc state stay in the temp dir).
#   bench/shim.sh [RUNS=20]      (env: MEM_ONLY=1 skips latency, OURS_ONLY=1 skips the runc
#                                 shim's memory, SMAPS=1 prints our shim's largest mappings)
# Measures
#   - idle memory of a shim serving one sleeping container: VmRSS (/proc/<pid>/status) and Pss
#     (/proc/<pid>/smaps_rollup), ours vs the runc shim;
#   - median wall time of `ctr run --rm --rootfs DIR id /bin/true` for: the runc shim, our shim
#     with runc, our shim with crun (runtime options from --runtime-config-path).
# Prints numbers and ratios (ours / runc shim). Needs root, busybox, runc; crun optional.
# Not a test. Note: containerd-shim-runc-v2 (1.6) always puts its socket in /run/containerd/s
# (removed when it exits); its runc state goes to the temp dir (--runc-root).
source "$(dirname "$0")/lib.sh"
RUNS=${1:-20}
SHIM=${SHIM:-$BENCH_HERE/../build/bin/containerd-shim-berth-v2}
[[ -x $SHIM ]] || { echo "build containerd-shim-berth-v2 first (scripts/build.sh)" >&2; exit 1; }
[[ -x /bin/busybox ]] || { echo "needs /bin/busybox" >&2; exit 1; }
SHIM=$(readlink -f "$SHIM")
NS=bench
CTRD_DIR=$BENCH_DIR/ctrd
SOCK=$CTRD_DIR/containerd.sock
ROOTFS=$BENCH_DIR/rootfs
RUNC_ROOT=$BENCH_DIR/runc-root
ctr_() { ctr --address "$SOCK" -n "$NS" "$@"; }

mkdir -p "$CTRD_DIR" "$BENCH_DIR/shimrun" "$BENCH_DIR/bin" "$RUNC_ROOT"
ln -s "$SHIM" "$BENCH_DIR/bin/containerd-shim-berth-v2"
mkdir -p "$ROOTFS/bin" "$ROOTFS"/{proc,sys,dev,tmp,etc}
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in sh true sleep; do ln -s busybox "$ROOTFS/bin/$a"; done
echo '{"binary_name":"crun"}' >"$BENCH_DIR/crun.json"
echo '{"binary_name":"runc"}' >"$BENCH_DIR/runc.json"

cat >"$CTRD_DIR/config.toml" <<TOML
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
TOML
PATH="$BENCH_DIR/bin:$PATH" BERTH_SHIM_RUN_DIR="$BENCH_DIR/shimrun" \
  containerd --config "$CTRD_DIR/config.toml" 2>"$BENCH_DIR/containerd.log" &
_pids+=($!)
wait_sock "$SOCK"

# Everything a run may leave: tasks (SIGKILL), containers. Runs before lib.sh's cleanup.
cleanup_tasks() {
  for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$id" 2>/dev/null || true; done
  sleep 0.3
  for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
  for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
}
# runc leaves the namespace's cgroup parents: remove the empty ones at the end.
trap 'cleanup_tasks; cleanup_both; rmdir /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS" 2>/dev/null || true' EXIT

# runtime_flags KIND: ctr run flags selecting runc-shim | berth-runc | berth-crun.
runtime_flags() {
  case $1 in
    runc-shim) echo "--runtime io.containerd.runc.v2 --runc-root $RUNC_ROOT" ;;
    berth-runc) echo "--runtime io.containerd.berth.v2 --runtime-config-path $BENCH_DIR/runc.json" ;;
    berth-crun) echo "--runtime io.containerd.berth.v2 --runtime-config-path $BENCH_DIR/crun.json" ;;
  esac
}

# smaps_top PID: resident KiB (and private dirty) per mapping, largest first (SMAPS=1).
smaps_top() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { n = $6 " " $2; if ($6 == "") n = "[anon] " $1 }
       /^Rss:/ { r[n] += $2 } /^Private_Dirty:/ { d[n] += $2 }
       END { for (k in r) if (r[k] > 0) printf "  %6d %6d %s\n", r[k], d[k], k }' \
    "/proc/$1/smaps" | sort -rn | head -12
}

# mem KIND → "rss_kb pss_kb threads" of the shim serving one sleeping container.
mem() {
  local id=mem-$1
  # shellcheck disable=SC2046
  ctr_ run -d $(runtime_flags "$1") --rootfs "$ROOTFS" "$id" /bin/sleep 1000 >/dev/null
  local tpid shim
  tpid=$(ctr_ tasks ls | awk -v id="$id" '$1 == id { print $2 }')
  shim=$(awk '/^PPid:/ { print $2 }' "/proc/$tpid/status")
  sleep 3  # idle: past the worker threads' 1 s idle exit
  local rss pss
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$shim/status")
  pss=$(awk '/^Pss:/ { print $2 }' "/proc/$shim/smaps_rollup")
  [[ -n ${SMAPS:-} ]] && smaps_top "$shim" >&2
  echo "$rss $pss $(awk '/^Threads:/ { print $2 }' "/proc/$shim/status")"
  ctr_ tasks kill -s SIGKILL "$id" >/dev/null
  for _ in $(seq 50); do ctr_ tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
  ctr_ containers delete "$id" >/dev/null
}

# median_run KIND → median ms of RUNS `ctr run --rm ... /bin/true`.
median_run() {
  local kind=$1 t0 t1 ts=()
  # shellcheck disable=SC2046
  ctr_ run --rm $(runtime_flags "$kind") --rootfs "$ROOTFS" "warm-$kind" /bin/true  # warm caches
  for i in $(seq "$RUNS"); do
    t0=$(date +%s%N)
    # shellcheck disable=SC2046
    ctr_ run --rm $(runtime_flags "$kind") --rootfs "$ROOTFS" "lat-$kind-$i" /bin/true
    t1=$(date +%s%N)
    ts+=($(((t1 - t0) / 100000)))  # tenths of ms
  done
  printf '%s\n' "${ts[@]}" | sort -n | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f\n", m / 10 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

if [[ -n ${OURS_ONLY:-} ]]; then rss_runc=1 pss_runc=1 thr_runc=0; else
  read -r rss_runc pss_runc thr_runc < <(mem runc-shim); fi
read -r rss_ours pss_ours thr_ours < <(mem berth-runc)
echo "idle shim, one sleeping container:"
printf '  %-26s VmRSS %6s KiB  Pss %6s KiB  threads %s\n' containerd-shim-runc-v2 "$rss_runc" "$pss_runc" "$thr_runc"
printf '  %-26s VmRSS %6s KiB  Pss %6s KiB  threads %s\n' containerd-shim-berth-v2 "$rss_ours" "$pss_ours" "$thr_ours"
echo "  ratio ours/runc-shim: VmRSS $(ratio "$rss_ours" "$rss_runc")  Pss $(ratio "$pss_ours" "$pss_runc")"

[[ -n ${MEM_ONLY:-} ]] && exit 0
echo "ctr run --rm /bin/true, median of $RUNS:"
m_runc=$(median_run runc-shim)
m_ours=$(median_run berth-runc)
printf '  %-26s %7s ms\n' "runc shim + runc" "$m_runc"
printf '  %-26s %7s ms  ratio %s\n' "berth shim + runc" "$m_ours" "$(ratio "$m_ours" "$m_runc")"
if command -v crun >/dev/null; then
  m_crun=$(median_run berth-crun)
  printf '  %-26s %7s ms  ratio %s\n' "berth shim + crun" "$m_crun" "$(ratio "$m_crun" "$m_runc")"
fi
