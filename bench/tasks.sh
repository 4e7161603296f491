#!/usr/bin/env bash
# Tasks: berthd vs containerd 1.6 (same machine, same run, same runc/crun, same image).
#  1. median latency of `ctr run --rm IMG id true` over RUNS runs (after 2 warm-ups), each
#     daemon with its io.containerd.runc.v2 runtime, runs alternating between the daemons;
#     then the same with crun (`--runc-binary`);
#  2. daemon CPU (utime+stime) for CPU_PAR (20) parallel `ctr run -d`, median of CPU_ROUNDS (3)
#     rounds per daemon (TASKS_CPU_ONLY=1 stops after this);
#  3. with CONTAINERS `ctr run -d IMG id sleep 1000` running: daemon RSS and the sum of the
#     shims' RSS (and PSS) per daemon.
# Prints berthd/containerd ratios. Not a test.
#   bench/tasks.sh [RUNS=20] [CONTAINERS=50]
# Env: BERTH_SHIM = the shim berthd runs for io.containerd.runc.v2 (default: "default" =
#   berthd's own mapping, our containerd-shim-berth-v2 next to berthd; or a shim path such as
#   /usr/bin/containerd-shim-runc-v2);
#   CRUN=/usr/bin/crun ("" skips the crun series);
#   CPU_PAR, CPU_ROUNDS (section 2); CPU_PERF=FILE records berthd's rounds with perf (FILE.<round>).
# Isolation: the script re-executes itself in a private mount namespace with a fresh tmpfs on
# /run, so both daemons, the shims (their sockets: /run/containerd/s, /run/berth/s), runc/crun
# state and every rootfs mount live and die there; roots, sockets and FIFOs are under a temp dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z ${BENCH_TASKS_IN_NS:-} ]]; then
  exec unshare --mount --propagation private -- env BENCH_TASKS_IN_NS=1 /bin/sh -c \
    'mount -t tmpfs -o mode=0755 bench-run /run && exec bash "$0" "$@"' "$0" "$@"
fi

RUNS=${1:-20}
NCONT=${2:-50}
WARMUP=2
CRUN=${CRUN-/usr/bin/crun}
BERTH_SHIM=${BERTH_SHIM:-default}
if [[ $BERTH_SHIM != default ]]; then
  [[ -x $BERTH_SHIM ]] || { echo "no shim at $BERTH_SHIM (build first)" >&2; exit 1; }
  BERTH_SHIM=$(readlink -f "$BERTH_SHIM")
  BERTHD_CONFIG_TEXT=$(printf 'version = 1\n[runtimes."io.containerd.runc.v2"]\nbinary = "%s"\n' \
    "$BERTH_SHIM")
fi
source "$HERE/lib.sh"
[[ -x /bin/busybox ]] || { echo "apt-get install busybox-static" >&2; exit 1; }

# ---- the image: busybox-static as /bin/busybox + applet symlinks, a docker-save archive
IMG=docker.io/library/busybox:latest
mk_image() {
  local d=$BENCH_DIR/image
  mkdir -p "$d/rootfs/bin" "$d/rootfs/tmp" "$d/rootfs/etc" "$d/out"
  cp /bin/busybox "$d/rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$d/rootfs/bin/$a"; done
  tar --numeric-owner --owner=0 --group=0 --mtime=@1700000000 -C "$d/rootfs" -cf "$d/layer.tar" .
  local diff cfg
  diff=$(sha256sum "$d/layer.tar" | cut -c1-64)
  mkdir -p "$d/out/$diff" && mv "$d/layer.tar" "$d/out/$diff/layer.tar"
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diff" >"$d/config.json"
  cfg=$(sha256sum "$d/config.json" | cut -c1-64)
  mv "$d/config.json" "$d/out/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["busybox:latest"],"Layers":["%s/layer.tar"]}]' \
    "$cfg" "$diff" >"$d/out/manifest.json"
  tar -C "$d/out" -cf "$BENCH_DIR/busybox.tar" .
}

NS=bench
# Per daemon: its own runc/crun state root and FIFO dir under the temp dir.
run_opts() { echo "--fifo-dir $BENCH_DIR/fifo-$1 --runc-root $BENCH_DIR/runc-$1"; }

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'; }
ratio() { awk -v b="$1" -v c="$2" 'BEGIN{ if (c == 0) print "n/a"; else printf "%.2f", b/c}'; }
now_us() { echo "${EPOCHREALTIME/./}"; }
kib() { awk -v f="$2:" '$1==f{print $2; found=1} END{if(!found) print 0}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss() { awk '$1=="Pss:"{print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

one_run() {  # sock tag id extra-args... → µs of `ctr run --rm IMG id true`
  local sock=$1 tag=$2 id=$3 t0 t1
  shift 3
  t0=$(now_us)
  # shellcheck disable=SC2046
  c "$sock" run --rm $(run_opts "$tag") "$@" "$IMG" "$id" true </dev/null >"$BENCH_DIR/last.out" 2>&1 ||
    { cat "$BENCH_DIR/last.out" >&2; echo "ctr run failed on $tag" >&2; exit 1; }
  t1=$(now_us)
  echo $((t1 - t0))
}

B_ARGS=() C_ARGS=()  # extra `ctr run` args for berthd / containerd
series() {  # label → prints "label berthd_ms containerd_ms ratio"
  local label=$1 i b=() k=()
  for ((i = 0; i < WARMUP + RUNS; i++)); do
    local tb tk
    tb=$(one_run "$BERTH_SOCK" berth "$label-b$i" "${B_ARGS[@]}")
    tk=$(one_run "$CTRD_SOCK" ctrd "$label-c$i" "${C_ARGS[@]}")
    ((i >= WARMUP)) && b+=("$tb") && k+=("$tk")
  done
  local mb mk
  mb=$(awk -v u="$(median "${b[@]}")" 'BEGIN{printf "%.1f", u/1000}')
  mk=$(awk -v u="$(median "${k[@]}")" 'BEGIN{printf "%.1f", u/1000}')
  printf '%-28s berthd %7s ms   containerd %7s ms   ratio %sx\n' \
    "run --rm true ($label)" "$mb" "$mk" "$(ratio "$mb" "$mk")"
}

shim_pids() {  # sock → pids of the shims of our running tasks (parents of their init pids)
  c "$1" tasks ls | awk 'NR>1 && $2>0 {print $2}' | while read -r pid; do
    awk '{print $4}' "/proc/$pid/stat" 2>/dev/null
  done | sort -u
}


finish() {
  cleanup_tasks "$BERTH_SOCK" berth || true
  cleanup_tasks "$CTRD_SOCK" ctrd || true
  cleanup_both
  # runc leaves the namespace's cgroup parents (/sys/fs/cgroup/<ctl>/$NS): remove the empty ones.
  rmdir /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS" 2>/dev/null || true
  # Shims exit after their task is deleted; anything left in this namespace dies with us, but
  # say so if it happens.
  sleep 1
  local left
  left=$(pgrep -f "containerd-shim-(berth|runc)-v2 .*-address $BENCH_DIR/" | wc -l || true)
  ((left == 0)) || echo "warning: $left shim(s) still running" >&2
}
trap finish EXIT

start_both
BERTHD_PID=${_pids[0]}
CTRD_PID=${_pids[1]}
mk_image
for s in "$BERTH_SOCK" "$CTRD_SOCK"; do
  c "$s" images import "$BENCH_DIR/busybox.tar" >/dev/null
done

echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg); runs=$RUNS containers=$NCONT"
echo "# berthd $($BERTHD --version 2>/dev/null | head -1 || echo ?) io.containerd.runc.v2 → ${BERTH_SHIM}"
echo "# containerd $(containerd --version | awk '{print $3}') io.containerd.runc.v2 → $(command -v containerd-shim-runc-v2)"
echo "# runc $(runc --version | head -1 | awk '{print $3}')${CRUN:+, crun $($CRUN --version | head -1 | awk '{print $3}')}"

# ---- daemon CPU per container: CPU_PAR parallel `ctr run -d` (sleep), CPU_ROUNDS rounds per
# daemon, alternating; utime+stime of the daemon process from /proc/<pid>/stat before/after each
# round (children's CPU, e.g. shim `start` commands the daemon waited for, shown apart). The
# containers are removed between rounds (not measured). Median round; ratio berthd/containerd.
CPU_PAR=${CPU_PAR:-20}
CPU_ROUNDS=${CPU_ROUNDS:-3}
cpu_ticks() { awk '{print $14 + $15, $16 + $17}' "/proc/$1/stat"; }  # self, waited-for children
cpu_round() {  # sock tag pid round → "self_ms children_ms"
  local sock=$1 tag=$2 pid=$3 round=$4 i s0 c0 s1 c1 hz failed=0 p pids=()
  hz=$(getconf CLK_TCK)
  local perf_pid=
  if [[ -n ${CPU_PERF:-} && $tag == berth ]]; then  # profile berthd's rounds: perf record -g
    perf record -q -F 4000 --call-graph "${CPU_PERF_CG:-fp}" -p "$pid" -o "$CPU_PERF.$round" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 1
  fi
  read -r s0 c0 < <(cpu_ticks "$pid")
  for ((i = 0; i < CPU_PAR; i++)); do
    # shellcheck disable=SC2046
    c "$sock" run -d $(run_opts "$tag") "$IMG" "cpu-$round-$i" sleep 1000 </dev/null \
      >"$BENCH_DIR/cpu-$tag-$i.out" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  read -r s1 c1 < <(cpu_ticks "$pid")
  if [[ -n $perf_pid ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
  ((failed == 0)) || { cat "$BENCH_DIR"/cpu-"$tag"-*.out >&2; echo "ctr run -d failed on $tag" >&2; exit 1; }
  cleanup_tasks "$sock" "$tag"
  echo "$(((s1 - s0) * 1000 / hz)) $(((c1 - c0) * 1000 / hz))"
}
cpu_per_container() {
  local r b=() k=() bc=() kc=() self kids
  local out
  for ((r = 0; r < CPU_ROUNDS; r++)); do
    out=$(cpu_round "$BERTH_SOCK" berth "$BERTHD_PID" "b$r")
    read -r self kids <<<"$out" && b+=("$self") && bc+=("$kids")
    out=$(cpu_round "$CTRD_SOCK" ctrd "$CTRD_PID" "c$r")
    read -r self kids <<<"$out" && k+=("$self") && kc+=("$kids")
  done
  local mb mk
  mb=$(median "${b[@]}") mk=$(median "${k[@]}")
  printf '%-28s berthd %7s ms   containerd %7s ms   ratio %sx  (rounds: %s | %s; children %s | %s ms)\n' \
    "daemon CPU, $CPU_PAR x run -d" "$mb" "$mk" "$(ratio "$mb" "$mk")" "${b[*]}" "${k[*]}" \
    "$(median "${bc[@]}")" "$(median "${kc[@]}")"
}
cpu_per_container
[[ ${TASKS_CPU_ONLY:-} == 1 ]] && { echo "# target: daemon CPU <= 0.5x"; exit 0; }

series runc

if [[ -n $CRUN ]]; then
  B_ARGS=(--runc-binary "$CRUN") C_ARGS=(--runc-binary "$CRUN")
  # containerd's runc shim runs crun as is, and on a hybrid cgroup host crun refuses that; our
  # shim works around it itself. containerd then gets the shared bench wrapper that hides the
  # cgroup2 mount in a private mount namespace (../shared/bench/crun-hybrid-wrap.c).
  # shellcheck disable=SC2046
  if ! c "$CTRD_SOCK" run --rm $(run_opts ctrd) "${C_ARGS[@]}" "$IMG" crun-probe true \
      </dev/null >"$BENCH_DIR/crun.out" 2>&1; then
    c "$CTRD_SOCK" containers rm crun-probe >/dev/null 2>&1 || true
    if grep -q "hybrid mode" "$BENCH_DIR/crun.out"; then
      wrap=${SHARED_BENCH:-$HERE/../../shared/bench}/crun-hybrid-wrap.c
      [[ -f $wrap ]] || wrap=/work/shared/bench/crun-hybrid-wrap.c
      if [[ -f $wrap ]] && command -v cc >/dev/null; then
        cc -O2 -DCRUN_PATH="\"$CRUN\"" -o "$BENCH_DIR/crun-hybrid" "$wrap"
      else  # the same in shell (slower: two more execs per crun call)
        printf '#!/bin/sh\nexec unshare --mount --propagation private -- /bin/sh -c %s crun "$@"\n' \
          "'umount -l /sys/fs/cgroup/unified && exec $CRUN \"\$@\"'" >"$BENCH_DIR/crun-hybrid"
        chmod +x "$BENCH_DIR/crun-hybrid"
      fi
      C_ARGS=(--runc-binary "$BENCH_DIR/crun-hybrid")
      echo "# crun: containerd's side runs it through crun-hybrid-wrap (hybrid cgroups host)"
    else
      echo "# crun failed on containerd: $(head -c 300 "$BENCH_DIR/crun.out")"
      C_ARGS=()
    fi
  fi
  ((${#C_ARGS[@]})) && series crun
fi

# ---- NCONT containers running sleep, on each daemon
for tag in berth ctrd; do
  sock=$BERTH_SOCK; [[ $tag == ctrd ]] && sock=$CTRD_SOCK
  for ((i = 0; i < NCONT; i++)); do
    # shellcheck disable=SC2046
    c "$sock" run -d $(run_opts "$tag") "$IMG" "sleep-$i" sleep 1000 </dev/null >/dev/null
  done
done
sleep 2  # let daemons and shims settle
declare -A drss shim_rss shim_pss shim_n
for tag in berth ctrd; do
  sock=$BERTH_SOCK pid=$BERTHD_PID
  [[ $tag == ctrd ]] && sock=$CTRD_SOCK pid=$CTRD_PID
  running=$(c "$sock" tasks ls | awk '$3=="RUNNING"' | wc -l)
  ((running == NCONT)) || { echo "$tag: only $running of $NCONT running" >&2; exit 1; }
  drss[$tag]=$(kib "$pid" VmRSS)
  r=0 p=0 n=0
  for s in $(shim_pids "$sock"); do r=$((r + $(kib "$s" VmRSS))); p=$((p + $(pss "$s"))); n=$((n + 1)); done
  shim_rss[$tag]=$r shim_pss[$tag]=$p shim_n[$tag]=$n
done
printf '%-28s berthd %7s KiB  containerd %7s KiB  ratio %sx\n' "daemon RSS ($NCONT running)" \
  "${drss[berth]}" "${drss[ctrd]}" "$(ratio "${drss[berth]}" "${drss[ctrd]}")"
printf '%-28s berthd %7s KiB  containerd %7s KiB  ratio %sx  (%s / %s shims)\n' "shim RSS sum" \
  "${shim_rss[berth]}" "${shim_rss[ctrd]}" "$(ratio "${shim_rss[berth]}" "${shim_rss[ctrd]}")" \
  "${shim_n[berth]}" "${shim_n[ctrd]}"
printf '%-28s berthd %7s KiB  containerd %7s KiB  ratio %sx\n' "shim PSS sum" \
  "${shim_pss[berth]}" "${shim_pss[ctrd]}" "$(ratio "${shim_pss[berth]}" "${shim_pss[ctrd]}")"
echo "# targets: latency <= 0.5x, daemon RSS <= 0.3x, shim RSS <= 0.1x"
