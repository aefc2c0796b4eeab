#!/usr/bin/env bash
# Fuzz lesson 04's bytecode verifier, interpreter and assembler with libFuzzer, under
# AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer, which ASan includes).
#
#   tests/fuzz/run_fuzz.sh [SECONDS]      default 60
#
# Builds with clang into $BUILD_DIR/fuzz/ (BUILD_DIR defaults to <repo>/build), seeds the
# corpus from every lessons/04-lambda/programs/*.lasm (the encoded bytes behind a request
# header, and the text itself for the assembler), fuzzes for SECONDS, and exits with
# libFuzzer's status: non-zero on any crash, sanitizer report, timeout or leak, after
# printing where the input that caused it was saved. The corpus it grows is kept in
# $BUILD_DIR/fuzz/corpus/ for the next run. Needs clang and libclang-rt-dev (libFuzzer);
# scripts/install-deps.sh installs both.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
duration=${1:-60}
lesson=$ROOT/lessons/04-lambda
out=$BUILD_DIR/fuzz
cxx=${FUZZ_CXX:-clang++}

case $duration in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
command -v "$cxx" >/dev/null ||
  { echo "run_fuzz: $cxx not found; run scripts/install-deps.sh (clang, libclang-rt-dev)" >&2; exit 1; }

mkdir -p "$out/corpus" "$out/artifacts"
sources=("$lesson/bytecode/vm.cpp" "$lesson/bytecode/assembler.cpp" "$ROOT/tests/fuzz/lambda_fuzz.cpp")

echo "run_fuzz: building $out/lambda_fuzz"
"$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
       -I"$lesson" "${sources[@]}" -o "$out/lambda_fuzz"
"$cxx" -std=c++20 -O1 -DLAMBDA_SEED_MODE -I"$lesson" "${sources[@]}" -o "$out/lambda_seed"

rm -rf "$out/seeds"
mkdir -p "$out/seeds"
"$out/lambda_seed" "$out/seeds" "$lesson"/programs/*.lasm
cp "$lesson"/programs/*.lasm "$out/seeds/"
echo "run_fuzz: $(ls "$out/seeds" | wc -l) seeds, $(ls "$out/corpus" | wc -l) inputs in the corpus;" \
     "fuzzing for $duration s (log: $out/fuzz.log)"

# New interesting inputs go to corpus/ (the first directory); seeds/ is only read.
set +e
"$out/lambda_fuzz" "$out/corpus" "$out/seeds" \
    -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" >"$out/fuzz.log" 2>&1
rc=$?
set -e

execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/fuzz.log" | grep -o '[0-9]*$' || true)
echo "run_fuzz: ${execs:-?} executions in $duration s; corpus now $(ls "$out/corpus" | wc -l) inputs"
if [ "$rc" -ne 0 ]; then
  echo "run_fuzz: FAILED (libFuzzer exit status $rc); the report from $out/fuzz.log:" >&2
  # From the first line of the sanitizer's or libFuzzer's report to the end (the lines
  # before it are progress), or the last lines if there is no such report.
  report='==[0-9]+==ERROR|runtime error:|ERROR: libFuzzer|==[0-9]+== ERROR|SUMMARY:|LeakSanitizer'
  if grep -Eq "$report" "$out/fuzz.log"; then
    awk -v re="$report" 'found || $0 ~ re { found = 1; print }' "$out/fuzz.log" | head -n 120 >&2
  else
    tail -n 40 "$out/fuzz.log" >&2
  fi
  artifacts=$(grep -o 'Test unit written to [^ ]*' "$out/fuzz.log" | sed 's/Test unit written to //' || true)
  for a in $artifacts; do
    echo "run_fuzz: the input is in $a; reproduce with: $out/lambda_fuzz $a" >&2
  done
  exit "$rc"
fi
echo "run_fuzz: clean"
