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
  libmicrohttpd-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev libhttp-parser-dev zlib1g-dev
  # the default template "base": the host's /usr with these
  python3-numpy python3-pandas python3-matplotlib nodejs
  # tests: TAP runner, pytest, fuzzers (clang + libFuzzer runtime), tools the tests call
  perl python3 python3-pytest clang libclang-rt-14-dev util-linux procps openssl curl
  # benchmark contenders
  bubblewrap python3-ipykernel python3-jupyter-client
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

# The E2B SDK tests (tests/e2b) run the official npm SDKs: install them from
# the committed lock file when they are missing or the lock file changed.
if ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends npm
fi
if [ ! -f tests/e2b/node_modules/.package-lock.json ] ||
   [ tests/e2b/package-lock.json -nt tests/e2b/node_modules/.package-lock.json ]; then
  (cd tests/e2b && npm ci --no-audit --no-fund)
fi

make -j"$(nproc)"

if [ "${1:-}" != "--no-demo" ]; then
  echo "== demo 1: a Python snippet in a fresh one-shot sandbox (no network, read-only root, 256M, 10 s)"
  ./build/bin/corral run --memory 256M --timeout 10 --result - -- /usr/bin/python3 -c '
import os, socket, platform
print("hello from a sandbox:", platform.python_version(), "uid", os.getuid(), "host", socket.gethostname())
print("interfaces:", [n for _, n in socket.if_nameindex()])
'
  echo "== demo 2: corrald, a sandbox on the default template \"base\", commands and files through the API"
  state=$(mktemp -d /tmp/corral-demo.XXXXXX)
  export CORRAL_ADMIN_KEY="ck_demo_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  export CORRAL_URL=http://127.0.0.1:17070 CORRAL_API_KEY="$CORRAL_ADMIN_KEY"
  ./build/bin/corrald --listen 127.0.0.1:17070 --state-dir "$state" --socket "" &
  daemon=$!
  trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; rm -rf -- "$state"' EXIT
  for _ in $(seq 100); do ./build/bin/corral sandbox list >/dev/null 2>&1 && break; sleep 0.05; done
  id=$(./build/bin/corral sandbox create --timeout 120 --metadata demo=setup)
  echo "sandbox $id"
  ./build/bin/corral exec "$id" -- /usr/bin/python3 -c '
import numpy, pandas, matplotlib
df = pandas.DataFrame({"x": numpy.arange(5)}); df["y"] = df.x ** 2
print(df.to_string(index=False)); open("/home/user/squares.csv", "w").write(df.to_csv(index=False))
print("numpy", numpy.__version__, "pandas", pandas.__version__, "matplotlib", matplotlib.__version__)'
  ./build/bin/corral files get "$id" /home/user/squares.csv -
  ./build/bin/corral exec "$id" -- node -e 'console.log("node", process.version)'
  ./build/bin/corral sandbox kill "$id"
  ./build/bin/corral sandbox list
fi
