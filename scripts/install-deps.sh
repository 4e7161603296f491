#!/usr/bin/env bash
# Installs every Debian package berth needs to build, test and demo. Idempotent:
# packages already present are skipped, and `apt-get update` runs at most once.
set -euo pipefail

PKGS=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git
  # gRPC / protobuf (and the plugin that generates service stubs)
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  # containerd's API .proto files and their imports
  golang-github-containerd-containerd-dev golang-github-gogo-protobuf-dev
  golang-github-gogo-googleapis-dev
  # libraries
  libsqlite3-dev libssl-dev libre2-dev uuid-dev libspdlog-dev libfmt-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  libarchive-dev libzstd-dev libisal-dev zlib1g-dev libcurl4-openssl-dev
  # tests
  libgtest-dev libgmock-dev googletest
  # the real containerd client and daemon the integration tests compare against
  containerd runc
  # the second OCI runtime the shim core is tested with
  crun
  # a local registry and image tools for `ctr content fetch` tests (no network)
  docker-registry skopeo umoci busybox-static
  # python3's tarfile writes the precise layer tars of the side-by-side tests
  python3
  # dockerd 20.10 + docker CLI for docker_on_berth_test (dockerd --containerd=<berthd socket>);
  # never started as a system service, see below
  docker.io
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # docker.io's maintainer scripts would start a system dockerd (and containerd on systemd
  # hosts) on /var/lib/docker and /run/docker; the tests start their own on temp paths. A
  # policy-rc.d (honoured by invoke-rc.d and deb-systemd-invoke) keeps docker from starting
  # during the install, unless the host already has one; the units are disabled afterwards.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ " ${missing[*]} " == *" docker.io "* && ! -e $policy ]]; then
    printf '#!/bin/sh\n# install-deps.sh: no docker service during the install\nfor a in "$@"; do case "$a" in docker|docker.service|docker.socket) exit 101;; esac; done\nexit 0\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
    trap '[[ $own_policy == 1 ]] && rm -f "$policy"' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [[ " ${missing[*]} " == *" docker.io "* && -d /run/systemd/system ]]; then
    systemctl disable --now docker.socket docker.service >/dev/null 2>&1 || true
  fi
else
  echo "install-deps: all ${#PKGS[@]} packages present"
fi
