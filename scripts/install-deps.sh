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
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PKGS[@]} packages present"
fi
