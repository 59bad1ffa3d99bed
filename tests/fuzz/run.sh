#!/usr/bin/env bash
# Run every libFuzzer binary BUILDDIR/fuzz_* for SECONDS each, starting from
# its seed corpus tests/fuzz/corpus/<name>/ (copied to a temporary directory
# so that the run does not write new inputs into the repository).
#
#   tests/fuzz/run.sh build/fuzz 60
#
# Prints one TAP-like "ok"/"not ok" line per fuzzer and a summary; exits 1
# if any fuzzer found a crash, leak or timeout (its reproducer is kept under
# BUILDDIR/crashes/<name>/ and its log's tail is shown).
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILDDIR/fuzz SECONDS" >&2
  exit 2
fi
if ! dir=$(cd "$1" 2>/dev/null && pwd); then
  echo "$0: no directory $1 (run make fuzz-build)" >&2
  exit 1
fi
cd "$(dirname "$0")/../.." || exit 1
seconds=$2
case $seconds in
  '' | *[!0-9]*) echo "$0: SECONDS must be a whole number" >&2; exit 2 ;;
esac

shopt -s nullglob
bins=()
for f in "$dir"/fuzz_*; do
  [ -f "$f" ] && [ -x "$f" ] && bins+=("$f")
done
if [ ${#bins[@]} -eq 0 ]; then
  echo "$0: no fuzzers in $dir (run make fuzz-build)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
n=0
echo "1..${#bins[@]}"
for bin in "${bins[@]}"; do
  n=$((n + 1))
  name=$(basename "$bin")
  corpus="$work/$name/corpus"
  crashes="$dir/crashes/$name"
  mkdir -p "$corpus" "$crashes"
  seeds=0
  if [ -d "tests/fuzz/corpus/$name" ]; then
    cp -R "tests/fuzz/corpus/$name"/. "$corpus"/
    seeds=$(find "$corpus" -type f | wc -l)
  fi
  log="$work/$name/log"
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$crashes/" -print_final_stats=1 "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok $n - $name (${seconds}s, ${runs:-?} runs, $seeds seeds)"
  else
    failed=$((failed + 1))
    echo "not ok $n - $name (exit $rc)"
    tail -n 30 "$log" | sed 's/^/#   /'
    for a in "$crashes"/*; do
      echo "#   reproducer: $a (rerun: $bin $a)"
    done
  fi
  # Keep the crashes directory only when it holds something.
  rmdir "$crashes" 2>/dev/null
  rmdir "$dir/crashes" 2>/dev/null
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
