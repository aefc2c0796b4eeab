#!/usr/bin/env bash
# run.sh - the userspace RoCE benchmark: four measurements on this machine, one table.
#
# Usage:
#   userspace-roce/bench/run.sh [--iters N] [--quick] [--timeout SEC] [--port P] [--out DIR]
#   userspace-roce/bench/run.sh --help
#
# Runs roce_bench four times, each as a server and a client on this machine:
#   verbs write_bw   RC RDMA WRITE, 64 KiB messages, 16 in flight   (userspace runtime)
#   tcp   write_bw   the same 64 KiB chunks over a TCP loopback socket
#   verbs pingpong   64-byte SEND/RECV round trips                   (userspace runtime)
#   tcp   pingpong   64-byte round trips over TCP loopback (TCP_NODELAY)
# The verbs runs start server and client each through scripts/userspace-roce.sh (so each
# process gets its own 127.0.0.x and GID index 0 is ::ffff:127.0.0.x); the TCP runs start
# them directly. The client connects to 127.0.0.1 and retries its TCP connect until the
# server listens, so nothing here sleeps to wait for a peer.
#
# (roce_bench has one more test, --test verify_rw: a verified bulk RDMA WRITE + READ-back
# over verbs, for correctness under packet loss rather than speed. run.sh does not run it;
# run it by hand, e.g. (B=build/userspace-roce/bench/roce_bench)
#   scripts/userspace-roce.sh --drop 0.05 --reorder 0.05 -- $B server --test verify_rw &
#   scripts/userspace-roce.sh --drop 0.05 --reorder 0.05 -- $B client 127.0.0.1 --test verify_rw \
#     --size 65536 --iters 64
# and see `roce_bench client --help`.)
#
# Then it prints the targets of the issue:
#   bandwidth: verbs / tcp      >= 0.5
#   latency:   verbs / tcp      <= 2.0   (median of round trip / 2)
# as PASS or MISS. This is a benchmark, not a test: the exit status is 0 whenever all four
# runs succeeded (whatever the numbers), 1 if a run failed (its log tail is shown), 2 for
# bad usage. roce_bench itself refuses to report a number when the data it moved does not
# check out, so "succeeded" includes "the bytes were right".
#
# Options:
#   --iters N      measured iterations of every run (default: 5000 for write_bw,
#                  20000 for pingpong; warmups are 200 / 1000 iterations)
#   --quick        fewer iterations (1000 / 3000, warmups 50 / 200): a smoke run
#   --timeout SEC  roce_bench --timeout: seconds any wait may go without progress (15)
#   --port P       first TCP port; the four runs use P .. P+3 (default 18600)
#   --out DIR      where the logs go (default: a new /tmp/roce-bench.XXXXXX)
#
# Environment:
#   BUILD_DIR         the CMake build tree (default <repo>/build); the binary is
#                     $BUILD_DIR/userspace-roce/bench/roce_bench
#   ROCE_LAUNCHER     what starts a verbs process (default <repo>/scripts/userspace-roce.sh,
#                     called as `LAUNCHER -- COMMAND ARGS...`); `none` runs roce_bench
#                     directly, e.g. on a kernel Soft-RoCE device
#   BENCH_VERBS_ARGS  extra roce_bench options for the verbs runs (e.g. "-d rxe0 -g 1")
#   BENCH_HOST        the address the clients connect to (default 127.0.0.1)
#   BENCH_GUARD       seconds after which a stuck process is killed (default 600)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/userspace-roce/bench/roce_bench"
LAUNCHER=${ROCE_LAUNCHER:-$ROOT/scripts/userspace-roce.sh}
VERBS_ARGS=${BENCH_VERBS_ARGS:-}
HOST=${BENCH_HOST:-127.0.0.1}
GUARD=${BENCH_GUARD:-600}

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die_usage() {
  printf 'run.sh: %s\n' "$*" >&2
  echo "Run 'run.sh --help' for the options." >&2
  exit 2
}
die() { printf 'run.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --- arguments -----------------------------------------------------------------------
ITERS="" QUICK=0 TIMEOUT=15 PORT=18600 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --quick) QUICK=1; shift ;;
    --iters|--timeout|--port|--out)
      [ $# -ge 2 ] || die_usage "$1 needs a value"
      case "$1" in
        --iters) ITERS=$2 ;;
        --timeout) TIMEOUT=$2 ;;
        --port) PORT=$2 ;;
        --out) OUT=$2 ;;
      esac
      shift 2 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
if [ -n "$ITERS" ]; then
  [[ $ITERS =~ ^[1-9][0-9]*$ ]] || die_usage "--iters must be a positive whole number, not '$ITERS'"
fi
[[ $TIMEOUT =~ ^[0-9]+([.][0-9]+)?$ ]] || die_usage "--timeout must be a number of seconds, not '$TIMEOUT'"
if ! [[ $PORT =~ ^[1-9][0-9]*$ ]] || [ "$PORT" -gt 65532 ]; then
  die_usage "--port must be a TCP port up to 65532 (the runs use P .. P+3), not '$PORT'"
fi
[[ $GUARD =~ ^[1-9][0-9]*$ ]] || die "BENCH_GUARD must be a number of seconds, not '$GUARD'"

if [ "$QUICK" = 1 ]; then
  BW_ITERS=1000 BW_WARMUP=50 PP_ITERS=3000 PP_WARMUP=200
else
  BW_ITERS=5000 BW_WARMUP=200 PP_ITERS=20000 PP_WARMUP=1000
fi
if [ -n "$ITERS" ]; then BW_ITERS=$ITERS PP_ITERS=$ITERS; fi

# --- prerequisites ---------------------------------------------------------------------
[ -x "$BIN" ] || die "$BIN is not built: build it with" \
  "cmake -S $ROOT -B $BUILD_DIR && cmake --build $BUILD_DIR --target roce_bench uroce_verbs" \
  "(or point BUILD_DIR at the build tree)"
PREFIX=()
if [ "$LAUNCHER" != none ]; then
  [ -x "$LAUNCHER" ] || die "the launcher $LAUNCHER is missing or not executable: the verbs runs" \
    "need it to run on the userspace RoCE runtime (ROCE_LAUNCHER=none uses a kernel RDMA device instead)"
  PREFIX=("$LAUNCHER" --)
fi
if [ -z "$OUT" ]; then OUT=$(mktemp -d /tmp/roce-bench.XXXXXX); fi
mkdir -p "$OUT"
command -v timeout >/dev/null || die "'timeout' (coreutils) not found"

# --- one measurement -----------------------------------------------------------------
# run_one NAME TRANSPORT TEST PORT ITERS WARMUP: server in the background, client in the
# foreground; sets RESULT to the client's RESULT line ("" if the run failed).
FAILED=()
run_one() {
  local name=$1 transport=$2 test=$3 port=$4 iters=$5 warmup=$6
  local slog="$OUT/$name-server.log" clog="$OUT/$name-client.log"
  local -a pre=() extra=()
  if [ "$transport" = verbs ]; then
    pre=("${PREFIX[@]}")
    # Word splitting on purpose: BENCH_VERBS_ARGS is a list of options.
    # shellcheck disable=SC2206
    extra=($VERBS_ARGS)
  fi
  local -a common=(--transport "$transport" --test "$test" -p "$port" --timeout "$TIMEOUT")
  printf 'run.sh: %-16s %s iterations (+%s warmup) ... ' "$transport $test" "$iters" "$warmup"
  timeout "$GUARD" "${pre[@]}" "$BIN" server "${common[@]}" "${extra[@]}" >"$slog" 2>&1 &
  local spid=$! crc=0 src=0
  timeout "$GUARD" "${pre[@]}" "$BIN" client "$HOST" "${common[@]}" -n "$iters" --warmup "$warmup" \
    "${extra[@]}" >"$clog" 2>&1 </dev/null || crc=$?
  # A client that failed before it connected leaves the server waiting for one: stop it
  # (timeout passes the TERM on to roce_bench); it may have exited already.
  [ "$crc" -eq 0 ] || kill "$spid" 2>/dev/null || echo "run.sh: the $name server had already exited" >&2
  wait "$spid" || src=$?
  RESULT=$(sed -n '/^RESULT /{p;q}' "$clog")
  if [ "$crc" -eq 0 ] && [ "$src" -eq 0 ] && [ -n "$RESULT" ]; then
    echo "ok"
    return 0
  fi
  echo "FAILED (client exit $crc, server exit $src)"
  FAILED+=("$name")
  local log
  for log in "$slog" "$clog"; do
    echo "    --- $log (last lines)"
    tail -n 8 "$log" | sed 's/^/    | /'
  done
  RESULT=""
}

# kv "RESULT ..." KEY: the value of KEY=value in a RESULT line.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "run.sh: roce_bench $BIN"
echo "run.sh: verbs runs via ${PREFIX[*]:-(directly)}${VERBS_ARGS:+ with $VERBS_ARGS}; logs in $OUT"
run_one verbs-write_bw verbs write_bw "$PORT" "$BW_ITERS" "$BW_WARMUP"; VBW=$RESULT
run_one tcp-write_bw tcp write_bw "$((PORT + 1))" "$BW_ITERS" "$BW_WARMUP"; TBW=$RESULT
run_one verbs-pingpong verbs pingpong "$((PORT + 2))" "$PP_ITERS" "$PP_WARMUP"; VPP=$RESULT
run_one tcp-pingpong tcp pingpong "$((PORT + 3))" "$PP_ITERS" "$PP_WARMUP"; TPP=$RESULT
# The kernel's own ceiling for RoCE-sized UDP datagrams on loopback (see udp_ceiling.cpp).
UDP=""
if [ -x "$BUILD_DIR/userspace-roce/bench/udp_ceiling" ]; then
  UDP=$(timeout 60 "$BUILD_DIR/userspace-roce/bench/udp_ceiling" 2>"$OUT/udp_ceiling.log") \
    || { echo "run.sh: udp_ceiling failed (log: $OUT/udp_ceiling.log)" >&2; UDP=""; }
fi
printf '%s\n' "$VBW" "$TBW" "$VPP" "$TPP" "$UDP" | sed '/^$/d' >"$OUT/results.txt"

# --- the table -------------------------------------------------------------------------
# row LABEL UNIT VERBS TCP OP LIMIT: ratio verbs/tcp against the target.
row() {
  local label=$1 unit=$2 v=$3 t=$4 op=$5 limit=$6
  if [ -z "$v" ] || [ -z "$t" ]; then
    printf '  %-20s %14s %14s %8s %8s  %s\n' "$label" "${v:+$v $unit}" "${t:+$t $unit}" "-" "$op $limit" "no number (a run failed)"
    return
  fi
  awk -v label="$label" -v unit="$unit" -v v="$v" -v t="$t" -v op="$op" -v limit="$limit" 'BEGIN {
    if (t + 0 <= 0) { printf "  %-20s %14s %14s %8s %8s  %s\n", label, v " " unit, t " " unit, "-", op " " limit, "no ratio (tcp is 0)"; exit }
    r = v / t
    ok = (op == ">=") ? (r >= limit) : (r <= limit)
    printf "  %-20s %14s %14s %8.2f %8s  %s\n", label, v " " unit, t " " unit, r, op " " limit, ok ? "PASS" : "MISS"
  }'
}

echo
if [ ${#PREFIX[@]} -gt 0 ]; then how="via $(basename "$LAUNCHER")"; else how="directly"; fi
echo "roce_bench: verbs ($how${VERBS_ARGS:+, $VERBS_ARGS}) against TCP loopback, on $(hostname) ($(nproc) CPUs)"
printf '  %-20s %14s %14s %8s %8s  %s\n' "measurement" "verbs" "tcp" "ratio" "target" "verdict"
row "write_bw 64 KiB" "GB/s" "$(kv "$VBW" gbytes_per_s)" "$(kv "$TBW" gbytes_per_s)" ">=" 0.5
row "pingpong 64 B med" "us" "$(kv "$VPP" median_us)" "$(kv "$TPP" median_us)" "<=" 2.0
if [ -n "$VPP" ] && [ -n "$TPP" ]; then
  printf '  %-20s %14s %14s   (p99, for information)\n' "pingpong 64 B p99" "$(kv "$VPP" p99_us) us" "$(kv "$TPP" p99_us) us"
fi
if [ -n "$UDP" ]; then
  printf '  %-20s %14s   (UDP datagrams of 4112 bytes, this kernel'"'"'s ceiling for RoCE at MTU 4096)\n' \
         "udp 4 KiB datagrams" "$(kv "$UDP" gbytes_per_s) GB/s"
  awk -v v="$(kv "$VBW" gbytes_per_s)" -v u="$(kv "$UDP" gbytes_per_s)" 'BEGIN { if (v > 0 && u > 0)
    printf "  the runtime reaches %.0f%% of that ceiling\n", 100 * v / u }'
fi
echo "  (GB/s = 10^9 bytes/s; latency = round trip / 2; RESULT lines in $OUT/results.txt)"

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "run.sh: ${#FAILED[@]} run(s) failed: ${FAILED[*]} (logs in $OUT)" >&2
  exit 1
fi
exit 0
