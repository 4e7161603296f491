#!/usr/bin/env bash
# Memory and event subscribers: berthd vs containerd 1.6, side by side in the same run.
#  1. idle: daemon VmRSS right after start (settled);
#  2. work: after `ctr images pull --plain-http` of bench/big:1 and NCONT `ctr run -d`
#     containers (bench/busybox:1, sleep), daemon VmRSS;
#  3. after the containers are removed (tasks killed and deleted, containers removed), and
#     again after the big image is removed (sync GC);
#  4. subscribers: SUBS (e.g. 1000 and 10000) Events.Subscribe streams held open on one channel
#     (build/bin/bench_subscribers), daemon threads and VmRSS while they are held and once they
#     are gone.
# Prints KiB and berthd/containerd ratios. Not a test.
#   bench/memory.sh [NCONT=20] [SUBS="1000 10000"]
# Uses ../shared/bench/{setup-registry,make-images}.sh for the local registry (127.0.0.1:5000)
# and images. Isolation as bench/tasks.sh: a private mount namespace with a fresh tmpfs on /run
# (shim sockets, runc state, rootfs mounts), roots and sockets under a temp dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}
[[ -d $SHARED ]] || SHARED=/work/shared/bench
if [[ -z ${BENCH_MEMORY_IN_NS:-} ]]; then
  # The registry must outlive this run and live outside our private namespace.
  bash "$SHARED/setup-registry.sh" >/dev/null
  bash "$SHARED/make-images.sh" >/dev/null
  exec unshare --mount --propagation private -- env BENCH_MEMORY_IN_NS=1 /bin/sh -c \
    'mount -t tmpfs -o mode=0755 bench-run /run && exec bash "$0" "$@"' "$0" "$@"
fi

NCONT=${1:-20}
SUBS=${2-1000 10000}
REG=${BENCH_REGISTRY:-127.0.0.1:5000}
BIG=$REG/bench/big:1
SMALL=$REG/bench/busybox:1
SUBSCRIBERS=${BENCH_SUBSCRIBERS:-$HERE/../build/bin/bench_subscribers}
SETTLE=${SETTLE:-3}  # seconds before each reading: let background work (GC, trims) finish
source "$HERE/lib.sh"
[[ -z ${SUBS// /} || -x $SUBSCRIBERS ]] || { echo "build bench_subscribers first (ninja -C build bench_subscribers)" >&2; exit 1; }

NS=bench
run_opts() { echo "--fifo-dir $BENCH_DIR/fifo-$1 --runc-root $BENCH_DIR/runc-$1"; }
kib() { awk -v f="$2:" '$1==f{print $2; found=1} END{if(!found) print 0}' "/proc/$1/status" 2>/dev/null || echo 0; }
ratio() { awk -v b="$1" -v c="$2" 'BEGIN{ if (c == 0) print "n/a"; else printf "%.2f", b/c}'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

row() {  # label berth_kib ctrd_kib
  printf '%-34s berthd %7s KiB (%5s MB)  containerd %7s KiB (%5s MB)  ratio %sx\n' \
    "$1" "$2" "$(mib "$2")" "$3" "$(mib "$3")" "$(ratio "$2" "$3")"
}
rss_row() {  # label → prints the VmRSS row of both daemons (and RssAnon); sets LAST_B LAST_C
  sleep "$SETTLE"
  LAST_B=$(kib "$BERTHD_PID" VmRSS) LAST_C=$(kib "$CTRD_PID" VmRSS)
  row "$1" "$LAST_B" "$LAST_C"
  printf '%-34s berthd %7s KiB             containerd %7s KiB\n' "  of which RssAnon" \
    "$(kib "$BERTHD_PID" RssAnon)" "$(kib "$CTRD_PID" RssAnon)"
}


finish() {
  cleanup_tasks "$BERTH_SOCK" || true
  cleanup_tasks "$CTRD_SOCK" || true
  cleanup_both
  rmdir /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS" 2>/dev/null || true
}
trap finish EXIT

# ---- 1. idle
phase_idle() {
  rss_row "idle"
  IDLE_B=$LAST_B IDLE_C=$LAST_C
}

# ---- 2. pull big:1, run NCONT containers
phase_work() {
  local tag sock i
  for tag in berth ctrd; do
    sock=$BERTH_SOCK; [[ $tag == ctrd ]] && sock=$CTRD_SOCK
    c "$sock" images pull --plain-http "$BIG" >/dev/null
    c "$sock" images pull --plain-http "$SMALL" >/dev/null
    for ((i = 0; i < NCONT; i++)); do
      # shellcheck disable=SC2046
      c "$sock" run -d $(run_opts "$tag") "$SMALL" "mem-$i" sleep 1000 </dev/null >/dev/null
    done
  done
  rss_row "pull big:1 + $NCONT running"
  WORK_B=$LAST_B WORK_C=$LAST_C
}

# ---- 3. remove the containers, then the big image
phase_remove() {
  cleanup_tasks "$BERTH_SOCK"
  cleanup_tasks "$CTRD_SOCK"
  rss_row "containers removed"
  GONE_B=$LAST_B GONE_C=$LAST_C
  c "$BERTH_SOCK" images rm --sync "$BIG" >/dev/null
  c "$CTRD_SOCK" images rm --sync "$BIG" >/dev/null
  rss_row "big image removed (sync GC)"
}

# ---- 4. N subscribers on one channel
subs_hold() {  # sock pid n → prints "threads rss_kib ready_ms"; holds the streams while reading
  local sock=$1 pid=$2 n=$3 fifo=$BENCH_DIR/subs.in line threads rss
  rm -f "$fifo"; mkfifo "$fifo"
  "$SUBSCRIBERS" "$sock" "$n" <"$fifo" >"$BENCH_DIR/subs.out" 2>&1 &
  local spid=$!
  exec 9>"$fifo"  # the helper waits for this end to close
  for _ in $(seq 3000); do
    line=$(head -1 "$BENCH_DIR/subs.out" 2>/dev/null || true)
    [[ -n $line ]] && break
    sleep 0.1
  done
  [[ $line == ready* ]] || { echo "bench_subscribers: ${line:-no answer}" >&2; exec 9>&-; wait "$spid" || true; return 1; }
  sleep 1
  threads=$(kib "$pid" Threads) rss=$(kib "$pid" VmRSS)
  exec 9>&-
  wait "$spid"
  echo "$threads $rss $(awk '{print $3}' <<<"$line")"
}

phase_subscribers() {
  local n b c
  for n in $SUBS; do
    read -r bt br bms < <(subs_hold "$BERTH_SOCK" "$BERTHD_PID" "$n")
    read -r ct cr cms < <(subs_hold "$CTRD_SOCK" "$CTRD_PID" "$n")
    printf '%-34s berthd %7s        containerd %7s        ratio %sx\n' \
      "threads, $n subscribers" "$bt" "$ct" "$(ratio "$bt" "$ct")"
    row "VmRSS, $n subscribers" "$br" "$cr"
    printf '%-34s berthd %7s ms     containerd %7s ms\n' "  all $n got an event after" "$bms" "$cms"
    rss_row "VmRSS, $n subscribers gone"
    printf '%-34s berthd %7s        containerd %7s\n' "threads, $n subscribers gone" \
      "$(kib "$BERTHD_PID" Threads)" "$(kib "$CTRD_PID" Threads)"
  done
}

start_both
BERTHD_PID=${_pids[0]}
CTRD_PID=${_pids[1]}
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg); containers=$NCONT subscribers=$SUBS"
echo "# berthd $($BERTHD --version 2>/dev/null | head -1 || echo ?); containerd $(containerd --version | awk '{print $3}')"
phase_idle
phase_work
phase_remove
printf '%-34s berthd %sx idle  (containerd %sx idle)\n' "containers removed vs idle" \
  "$(ratio "$GONE_B" "$IDLE_B")" "$(ratio "$GONE_C" "$IDLE_C")"
phase_subscribers
echo "# targets: after pull+run <= 0.5x containerd; containers removed within 1.2x idle;"
echo "#          subscribers: threads bounded (< 64), little memory per subscriber"
