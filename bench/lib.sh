#!/usr/bin/env bash
# Shared helpers for berth's benchmarks: start berthd and a stock containerd 1.6 side by side on
# temporary roots and sockets (never the system paths), and stop both on exit.
# Source it; then call start_both. Sets BERTH_SOCK, CTRD_SOCK, BENCH_DIR.
set -euo pipefail

BENCH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BERTHD=${BERTHD:-$BENCH_HERE/../build/bin/berthd}
BENCH_DIR=$(mktemp -d /tmp/berth-bench.XXXXXX)
BERTH_SOCK=$BENCH_DIR/berth/state/berthd.sock
CTRD_SOCK=$BENCH_DIR/ctrd/containerd.sock
_pids=()

cleanup_both() {
  for p in "${_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # Only our own temp dir, and never across a live mount.
  if ! grep -q " $BENCH_DIR" /proc/self/mounts; then rm -rf "$BENCH_DIR"; fi
}
trap cleanup_both EXIT

wait_sock() {
  for _ in $(seq 200); do ctr --address "$1" version >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "daemon on $1 did not come up" >&2
  return 1
}

start_both() {
  [[ -x $BERTHD ]] || { echo "build berthd first (scripts/build.sh)" >&2; exit 1; }
  command -v containerd >/dev/null || { echo "apt-get install containerd" >&2; exit 1; }
  mkdir -p "$BENCH_DIR/berth" "$BENCH_DIR/ctrd"
  # BERTHD_CONFIG_TEXT (optional): berthd's config.toml, e.g. a [runtimes."..."] mapping.
  local berth_cfg=/dev/null/none
  if [[ -n ${BERTHD_CONFIG_TEXT:-} ]]; then
    berth_cfg=$BENCH_DIR/berth/config.toml
    printf '%s\n' "$BERTHD_CONFIG_TEXT" >"$berth_cfg"
  fi
  "$BERTHD" --config "$berth_cfg" --root "$BENCH_DIR/berth/root" --state "$BENCH_DIR/berth/state" \
    --address "$BERTH_SOCK" --log-level warn 2>"$BENCH_DIR/berthd.log" &
  _pids+=($!)
  cat >"$BENCH_DIR/ctrd/config.toml" <<TOML
version = 2
root = "$BENCH_DIR/ctrd/root"
state = "$BENCH_DIR/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$BENCH_DIR/ctrd/opt"
TOML
  containerd --config "$BENCH_DIR/ctrd/config.toml" 2>"$BENCH_DIR/containerd.log" &
  _pids+=($!)
  wait_sock "$BERTH_SOCK"
  wait_sock "$CTRD_SOCK"
}

# now_ms: wall clock in milliseconds.
now_ms() { date +%s%3N; }

# ctr against one daemon's socket in the benchmark namespace ($NS).
c() { local sock=$1; shift; ctr --address "$sock" --namespace "$NS" "$@"; }

# Kills, waits for and deletes every task, then removes every container, on one daemon.
cleanup_tasks() {  # sock
  local id
  for id in $(c "$1" tasks ls -q 2>/dev/null); do c "$1" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  for id in $(c "$1" tasks ls -q 2>/dev/null); do
    for _ in $(seq 50); do
      c "$1" tasks ls 2>/dev/null | awk -v i="$id" '$1==i{print $3}' | grep -q STOPPED && break
      sleep 0.1
    done
    c "$1" tasks delete -f "$id" >/dev/null 2>&1 || true
  done
  for id in $(c "$1" containers ls -q 2>/dev/null); do c "$1" containers rm "$id" >/dev/null 2>&1 || true; done
}
