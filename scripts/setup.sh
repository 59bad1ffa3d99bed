#!/usr/bin/env bash
# Install what corral needs on Debian 12, build it, and run the main job once.
#   scripts/setup.sh            install + build + demo
#   scripts/setup.sh --no-demo  install + build
# Must run as root (apt-get, and corral itself creates namespaces and cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (sudo scripts/setup.sh)" >&2
  exit 1
fi

PACKAGES=(
  # build
  build-essential pkg-config libc6-dev libseccomp-dev libjansson-dev
  libmicrohttpd-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev
  # the default template "base": the host's /usr with these
  python3-numpy python3-pandas python3-matplotlib nodejs
  # tests: TAP runner, pytest, fuzzers (clang + libFuzzer runtime), tools the tests call
  perl python3 python3-pytest clang libclang-rt-14-dev util-linux procps
  # benchmark contenders
  bubblewrap
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

make -j"$(nproc)"

if [ "${1:-}" != "--no-demo" ]; then
  echo "== demo: a Python snippet in a fresh sandbox (no network, read-only root, 256M memory, 10 s)"
  ./build/bin/corral run --memory 256M --timeout 10 --result - -- /usr/bin/python3 -c '
import os, socket, platform
print("hello from a sandbox:", platform.python_version(), "uid", os.getuid(), "host", socket.gethostname())
print("interfaces:", [n for _, n in socket.if_nameindex()])
'
fi
