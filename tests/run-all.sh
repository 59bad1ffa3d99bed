#!/usr/bin/env bash
# Runs every test of the build in $CORRAL_BUILD (default build/): unit tests
# (TAP, via prove), fuzz smoke runs, then the end-to-end and escape suites
# (pytest).  Exits non-zero if any part failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${CORRAL_BUILD:-build}
status=0

echo "== unit tests"
prove -f "$BUILD"/tests/unit/test_* || status=1

if [ -x tests/fuzz/run.sh ] && ls tests/fuzz/fuzz_*.c >/dev/null 2>&1; then
  echo "== fuzz smoke (short runs of every fuzzer)"
  make -s fuzz-build BUILD="$BUILD" && tests/fuzz/run.sh "$BUILD"/fuzz "${FUZZ_SECONDS:-5}" || status=1
fi

echo "== end-to-end and escape tests"
CORRAL_BUILD="$BUILD" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e || status=1

echo "== E2B SDK tests (the official e2b and @e2b/code-interpreter npm SDKs against corrald)"
[ -d tests/e2b/node_modules ] || echo "tests/e2b/node_modules is missing: run scripts/setup.sh (npm ci in tests/e2b)"
(cd tests/e2b && CORRAL_BUILD="$BUILD" node --test --test-concurrency=1) || status=1

# Nothing may be left behind by the whole run.
if grep -q corral /proc/self/mountinfo; then echo "LEAK: corral mounts remain"; status=1; fi
exit $status
