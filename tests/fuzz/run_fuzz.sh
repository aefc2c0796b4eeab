#!/usr/bin/env bash
# Fuzz one of the project's decoders of untrusted bytes with libFuzzer, under
# AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer, which ASan includes).
#
#   tests/fuzz/run_fuzz.sh [TARGET] [SECONDS]      TARGET default lambda, SECONDS default 60
#
# TARGET is one of (each is TARGET_fuzz.cpp here; its first comment says what it fuzzes,
# how one input is used and which invariants it checks):
#   lambda             lesson 04's bytecode verifier, interpreter and assembler
#   exchange           common/exchange: HELLO, READY, ERROR, QP_INFO, DONE, TEST, BREAK from a byte stream
#   private_data       common/private_data: what the RDMA CM lessons read from the CM
#   lesson04_protocol  lesson 04's request and response, and its server's execute()
#   lesson05_framing   lesson 05's TlsChannel::receive over a real TLS 1.3 connection, and
#                      the QP_INFO and ERROR bodies its server and client decode
#
# Builds with clang, from only the sources the target needs, into $BUILD_DIR/fuzz/TARGET/
# (BUILD_DIR defaults to <repo>/build). Seeds the corpus with the messages the project's
# own encoders write (the same file built with -DFUZZ_SEED_MODE, or -DLAMBDA_SEED_MODE),
# with the bytes recorded in captures/*/ (capture_seeds.py; lambda: the example programs
# instead), and with any input that once failed, kept in tests/fuzz/regressions/TARGET/.
# Then fuzzes for SECONDS and exits with libFuzzer's status: non-zero on any crash,
# sanitizer report, broken invariant (a trap), timeout or leak, after printing where the
# input that caused it was saved. The corpus it grows is kept in $BUILD_DIR/fuzz/TARGET/
# corpus/ for the next run. Needs clang and libclang-rt-dev (libFuzzer), tshark (the
# capture seeds), the libibverbs/librdmacm headers and OpenSSL; scripts/install-deps.sh
# installs them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
target=lambda
# `run_fuzz.sh 60` (the form lesson 04's README shows) is the lambda target.
if [ $# -ge 1 ] && [[ $1 != *[!0-9]* ]]; then
  duration=$1
else
  target=${1:-lambda}
  duration=${2:-60}
fi
cxx=${FUZZ_CXX:-clang++}
lesson04=$ROOT/lessons/04-lambda
lesson05=$ROOT/lessons/05-tls-psn
common=$ROOT/common

case $duration in
  '' | *[!0-9]*) echo "usage: $0 [TARGET] [SECONDS]" >&2; exit 2 ;;
esac
command -v "$cxx" >/dev/null ||
  { echo "run_fuzz: $cxx not found; run scripts/install-deps.sh (clang, libclang-rt-dev)" >&2; exit 1; }

out=$BUILD_DIR/fuzz/$target
flags=(-std=c++20 -g -O1 -I"$ROOT")
libs=()
seed_define=-DFUZZ_SEED_MODE
max_len=()     # libFuzzer's -max_len: the largest input that means something to the harness
case $target in
  lambda)
    sources=("$lesson04/bytecode/vm.cpp" "$lesson04/bytecode/assembler.cpp")
    flags+=(-I"$lesson04")
    seed_define=-DLAMBDA_SEED_MODE
    ;;
  exchange)
    sources=("$common/exchange.cpp" "$common/errors.cpp" "$common/log.cpp")
    max_len=(-max_len=4096)  # several messages; the largest, an ERROR, is 524 bytes
    ;;
  private_data)
    sources=("$common/private_data.cpp" "$common/errors.cpp" "$common/log.cpp")
    max_len=(-max_len=256)   # the CM's largest private data field is a REP's 196 bytes
    ;;
  lesson04_protocol)
    # The harness compiles lessons/04-lambda/server.cpp itself (see its first comment).
    sources=("$lesson04/protocol.cpp" "$lesson04/bytecode/vm.cpp" "$common/log.cpp")
    flags+=(-I"$lesson04")
    max_len=(-max_len=4100)  # the immediate value and the server's 4096-byte request region
    ;;
  lesson05_framing)
    sources=("$lesson05/tls.cpp" "$common/exchange.cpp" "$common/errors.cpp" "$common/log.cpp"
             "$common/net.cpp")
    flags+=(-I"$lesson05" "-DFUZZ_CERTS_DIR=\"$out/certs\"")
    libs=(-lssl -lcrypto -lpthread)
    max_len=(-max_len=4096)
    ;;
  *)
    echo "run_fuzz: unknown target '$target' (lambda, exchange, private_data, lesson04_protocol," \
         "lesson05_framing)" >&2
    exit 2
    ;;
esac
sources+=("$HERE/${target}_fuzz.cpp")

mkdir -p "$out/corpus" "$out/artifacts"
if [ "$target" = lesson05_framing ]; then
  "$ROOT/scripts/make-certs.sh" "$out/certs" >/dev/null
fi

# The fuzzer and the seed writer (run once: -O0 compiles faster), side by side (two cores
# on CI).
echo "run_fuzz: building $out/${target}_fuzz"
build_start=$SECONDS
"$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
       "${sources[@]}" "${libs[@]}" -o "$out/${target}_fuzz" &
fuzz_build=$!
fuzz_rc=0 seed_rc=0
"$cxx" "${flags[@]}" -O0 "$seed_define" "${sources[@]}" "${libs[@]}" -o "$out/${target}_seed" || seed_rc=$?
wait "$fuzz_build" || fuzz_rc=$?
if [ "$fuzz_rc" -ne 0 ] || [ "$seed_rc" -ne 0 ]; then
  echo "run_fuzz: building $target failed (see the compiler's messages above)" >&2
  exit 1
fi
echo "run_fuzz: built in $((SECONDS - build_start)) s"

rm -rf "$out/seeds"
mkdir -p "$out/seeds"
if [ "$target" = lambda ]; then
  "$out/lambda_seed" "$out/seeds" "$lesson04"/programs/*.lasm
  cp "$lesson04"/programs/*.lasm "$out/seeds/"
else
  "$out/${target}_seed" "$out/seeds"
  python3 "$HERE/capture_seeds.py" "$target" "$out/seeds"
fi
if [ -d "$HERE/regressions/$target" ]; then
  cp "$HERE/regressions/$target"/* "$out/seeds/"
fi
echo "run_fuzz: $(ls "$out/seeds" | wc -l) seeds, $(ls "$out/corpus" | wc -l) inputs in the corpus;" \
     "fuzzing $target for $duration s (log: $out/fuzz.log)"

# New interesting inputs go to corpus/ (the first directory); seeds/ is only read.
set +e
"$out/${target}_fuzz" "$out/corpus" "$out/seeds" "${max_len[@]}" \
    -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" >"$out/fuzz.log" 2>&1
rc=$?
set -e

execs=$(sed -n 's/.*stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$out/fuzz.log" | tail -n1)
rate=$(sed -n 's/.*stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$out/fuzz.log" | tail -n1)
cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p' "$out/fuzz.log" | tail -n1)
echo "run_fuzz: $target: ${execs:-?} executions in $duration s (${rate:-?}/s), ${cov:-cov ?};" \
     "corpus now $(ls "$out/corpus" | wc -l) inputs"
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
    echo "run_fuzz: the input is in $a; reproduce with: $out/${target}_fuzz $a" >&2
  done
  exit "$rc"
fi
echo "run_fuzz: clean"
