#!/usr/bin/env bash
# Fuzz one of the userspace RoCE runtime's network decoders with libFuzzer, under
# AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer, which ASan includes):
#   rx  the packet receive path (Device::handle_packet: wire::parse with the ICRC, then the
#       RC responder and requester of one QP)
#   cm  the RDMA CM (userspace-roce/rdmacm: the MAD decoder, and two Managers driven by
#       arbitrary MADs, consumer calls and time)
#
#   userspace-roce/tests/fuzz/run_fuzz.sh rx|cm [SECONDS]      default 60
#
# Builds with clang into $BUILD_DIR/uroce-fuzz/ or uroce-cm-fuzz/ (BUILD_DIR defaults to
# <repo>/build) from the sources directly, writes the seed corpus (rx: valid packets made
# with wire::encode_headers; cm: the kernel CM's MADs from tests/unit/cm_vectors.hpp and
# command sequences; both by the same file built with -DUROCE_SEED_MODE), fuzzes for
# SECONDS and exits with libFuzzer's status: non-zero on any crash, sanitizer report,
# broken invariant (a trap), timeout or leak, after printing where the input that caused
# it was saved. The corpus it grows is kept in <out>/corpus/ for the next run. Needs clang
# and libclang-rt-dev (libFuzzer), zlib and the libibverbs headers; scripts/install-deps.sh
# installs them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
target=${1:-}
duration=${2:-60}
src=$ROOT/userspace-roce/src
cxx=${FUZZ_CXX:-clang++}

case $target in
  rx)
    out=$BUILD_DIR/uroce-fuzz
    # The transport without verbs.cpp: no exported API, no symbol versions.
    sources=("$src/wire.cpp" "$src/config.cpp" "$src/log.cpp" "$src/device.cpp" "$src/socket_io.cpp"
             "$src/engine.cpp" "$src/faults.cpp" "$src/qp1.cpp" "$src/cq.cpp"
             "$src/requester.cpp" "$src/completer.cpp" "$src/responder.cpp" "$src/qp_state.cpp"
             "$HERE/uroce_rx_fuzz.cpp")
    flags=(-std=c++20 -g -I"$src" -I"$ROOT/userspace-roce/tests/unit")
    libs=(-lz -lpthread)
    # -max_len 9000: a few jumbo-sized datagrams (a 4096-byte MTU packet is 4096 + 32 bytes).
    max_len=9000 ;;
  cm)
    out=$BUILD_DIR/uroce-cm-fuzz
    cm=$ROOT/userspace-roce/rdmacm
    sources=("$cm/cm.cpp" "$cm/cm_mad.cpp" "$HERE/uroce_cm_fuzz.cpp")
    flags=(-std=c++20 -g -I"$cm" -I"$ROOT/userspace-roce/tests/unit")
    libs=()
    max_len=4096 ;;
  *) echo "usage: $0 rx|cm [SECONDS]" >&2; exit 2 ;;
esac
case $duration in
  '' | *[!0-9]*) echo "usage: $0 rx|cm [SECONDS]" >&2; exit 2 ;;
esac
command -v "$cxx" >/dev/null ||
  { echo "run_fuzz: $cxx not found; run scripts/install-deps.sh (clang, libclang-rt-dev)" >&2; exit 1; }

# The runtime's settings come from UROCE_* variables: none of them may change a run.
unset UROCE_ADDR UROCE_DROP UROCE_DUPLICATE UROCE_REORDER UROCE_SEED UROCE_LOG UROCE_WINDOW \
      UROCE_CM_DROP

mkdir -p "$out/corpus" "$out/artifacts"
fuzzer=$out/uroce_${target}_fuzz
echo "run_fuzz: building $fuzzer"
"$cxx" "${flags[@]}" -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
       "${sources[@]}" "${libs[@]}" -o "$fuzzer"
"$cxx" "${flags[@]}" -O1 -DUROCE_SEED_MODE "${sources[@]}" "${libs[@]}" -o "$out/uroce_${target}_seed"

rm -rf "$out/seeds"
mkdir -p "$out/seeds"
"$out/uroce_${target}_seed" "$out/seeds"
echo "run_fuzz: $(ls "$out/seeds" | wc -l) seeds, $(ls "$out/corpus" | wc -l) inputs in the corpus;" \
     "fuzzing for $duration s (log: $out/fuzz.log)"

# New interesting inputs go to corpus/ (the first directory); seeds/ is only read.
set +e
"$fuzzer" "$out/corpus" "$out/seeds" \
    -max_len="$max_len" -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 \
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
    echo "run_fuzz: the input is in $a; reproduce with: $fuzzer $a" >&2
  done
  exit "$rc"
fi
echo "run_fuzz: clean"
