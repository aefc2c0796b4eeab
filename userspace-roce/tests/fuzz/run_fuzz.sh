#!/usr/bin/env bash
# Fuzz the userspace RoCE runtime's packet receive path (Device::handle_packet: wire::parse
# with the ICRC, then the RC responder and requester of one QP) with libFuzzer, under
# AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer, which ASan includes).
#
#   userspace-roce/tests/fuzz/run_fuzz.sh [SECONDS]      default 60
#
# Builds with clang into $BUILD_DIR/uroce-fuzz/ (BUILD_DIR defaults to <repo>/build) from
# the runtime's sources directly, writes the seed corpus (valid packets made with
# wire::encode_headers, by the same file built with -DUROCE_RX_SEED_MODE), fuzzes for
# SECONDS and exits with libFuzzer's status: non-zero on any crash, sanitizer report,
# broken invariant (a trap), timeout or leak, after printing where the input that caused
# it was saved. The corpus it grows is kept in $BUILD_DIR/uroce-fuzz/corpus/ for the next
# run. Needs clang and libclang-rt-dev (libFuzzer), zlib and the libibverbs headers;
# scripts/install-deps.sh installs them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
duration=${1:-60}
src=$ROOT/userspace-roce/src
out=$BUILD_DIR/uroce-fuzz
cxx=${FUZZ_CXX:-clang++}

case $duration in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
command -v "$cxx" >/dev/null ||
  { echo "run_fuzz: $cxx not found; run scripts/install-deps.sh (clang, libclang-rt-dev)" >&2; exit 1; }

# The runtime's settings come from UROCE_* variables: none of them may change a run.
unset UROCE_ADDR UROCE_DROP UROCE_DUPLICATE UROCE_REORDER UROCE_SEED UROCE_LOG UROCE_WINDOW

mkdir -p "$out/corpus" "$out/artifacts"
# The transport without verbs.cpp: no exported API, no symbol versions.
sources=("$src/wire.cpp" "$src/config.cpp" "$src/log.cpp" "$src/device.cpp" "$src/socket_io.cpp"
         "$src/engine.cpp" "$src/faults.cpp" "$src/qp1.cpp" "$src/cq.cpp"
         "$src/requester.cpp" "$src/completer.cpp" "$src/responder.cpp" "$src/qp_state.cpp"
         "$HERE/uroce_rx_fuzz.cpp")
flags=(-std=c++20 -g -I"$src" -I"$ROOT/userspace-roce/tests/unit")
libs=(-lz -lpthread)

echo "run_fuzz: building $out/uroce_rx_fuzz"
"$cxx" "${flags[@]}" -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
       "${sources[@]}" "${libs[@]}" -o "$out/uroce_rx_fuzz"
"$cxx" "${flags[@]}" -O1 -DUROCE_RX_SEED_MODE "${sources[@]}" "${libs[@]}" -o "$out/uroce_rx_seed"

rm -rf "$out/seeds"
mkdir -p "$out/seeds"
"$out/uroce_rx_seed" "$out/seeds"
echo "run_fuzz: $(ls "$out/seeds" | wc -l) seeds, $(ls "$out/corpus" | wc -l) inputs in the corpus;" \
     "fuzzing for $duration s (log: $out/fuzz.log)"

# New interesting inputs go to corpus/ (the first directory); seeds/ is only read.
# -max_len 9000: a few jumbo-sized datagrams (a 4096-byte MTU packet is 4096 + 32 bytes).
set +e
"$out/uroce_rx_fuzz" "$out/corpus" "$out/seeds" \
    -max_len=9000 -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/" >"$out/fuzz.log" 2>&1
rc=$?
set -e

execs=$(sed -n 's/.*stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$out/fuzz.log" | tail -n1)
rate=$(sed -n 's/.*stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$out/fuzz.log" | tail -n1)
echo "run_fuzz: ${execs:-?} executions in $duration s (${rate:-?}/s); corpus now $(ls "$out/corpus" | wc -l) inputs"
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
  artifacts=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$out/fuzz.log")
  for a in $artifacts; do
    echo "run_fuzz: the input is in $a; reproduce with: $out/uroce_rx_fuzz $a" >&2
  done
  exit "$rc"
fi
echo "run_fuzz: clean"
