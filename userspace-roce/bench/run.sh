#!/usr/bin/env bash
# run.sh - the userspace RoCE benchmark: this machine's numbers, one table.
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
# then perftest (Debian's, unmodified) on the runtime, server and client again:
#   ib_write_bw -s 65536   RDMA WRITE bandwidth, perftest's default depth (128 in flight)
#   ib_send_lat -s 64      SEND/RECV ping-pong latency
#   ib_write_lat -s 64     RDMA WRITE ping-pong latency (each side watches memory for the
#                          peer's WRITE), and both latencies again at -s 4096
# (-n: the same iterations as roce_bench's runs, --iters),
# and udp_ceiling: bare UDP datagrams of RoCE's size (4112 bytes), sent much as the
# runtime sends them, the most this kernel moves over loopback in that shape; then
# udp_ceiling --icrc: the same datagrams, each with an ICRC the sender computes and the
# receiver checks (the runtime's own CRC code), the most one sending and one receiving
# thread move here when each computes the ICRC in line, as the runtime's do.
# The verbs and perftest runs start server and client each through
# scripts/userspace-roce.sh (so each process gets its own 127.0.0.x and GID index 0 is
# ::ffff:127.0.0.x); the TCP runs start them directly. roce_bench's client connects to
# 127.0.0.1 and retries its TCP connect until the server listens; perftest's client does
# not retry, so it starts once `ss` shows the server listening (at most 30 s, or
# --timeout if longer). Nothing here sleeps to wait for a peer.
#
# (roce_bench has one more test, --test verify_rw: a verified bulk RDMA WRITE + READ-back
# over verbs, for correctness under packet loss rather than speed. run.sh does not run it;
# run it by hand, e.g. (B=build/userspace-roce/bench/roce_bench)
#   scripts/userspace-roce.sh --drop 0.05 --reorder 0.05 -- $B server --test verify_rw &
#   scripts/userspace-roce.sh --drop 0.05 --reorder 0.05 -- $B client 127.0.0.1 --test verify_rw \
#     --size 65536 --iters 64
# and see `roce_bench client --help`.)
#
# Then it prints the targets, each as PASS or MISS:
#   bandwidth: 64 KiB RDMA WRITE (roce_bench, and perftest) / UDP ceiling   >= 0.9
#   latency:   64 B ping-pong one way (roce_bench median, perftest typical) / TCP's
#              median one way                                               <= 0.5
#   WRITE/SEND: ib_write_lat typical / ib_send_lat typical, 64 B and 4 KiB   <= 2
# with TCP's bandwidth, the p99 latencies, perftest's fastest one-way latencies (t_min)
# and the 64 KiB WRITEs against the ceiling with ICRC for information. This is a
# benchmark, not a test: the exit status is 0 whenever every run succeeded (whatever the
# numbers), 1 if a run failed (its log tail is shown), 2 for bad usage. roce_bench itself refuses to
# report a number when the data it moved does not check out, so "succeeded" includes
# "the bytes were right". Without perftest installed (or `ss`, which waits for its
# server), its four rows stay empty and say why; that is not a failure.
#
# Options:
#   --iters N      measured iterations of every run (default: 5000 for the bandwidth runs,
#                  20000 for the latency runs; roce_bench's warmups are 200 / 1000)
#   --quick        fewer iterations (1000 / 3000, warmups 50 / 200): a smoke run
#   --timeout SEC  roce_bench --timeout: seconds any wait may go without progress (15)
#   --port P       first TCP port; the nine runs with a peer (all but udp_ceiling) use
#                  P .. P+8 (default 18590)
#   --out DIR      where the logs go (default: a new /tmp/roce-bench.XXXXXX)
#
# Environment:
#   BUILD_DIR            the CMake build tree (default <repo>/build); the binaries are
#                        $BUILD_DIR/userspace-roce/bench/roce_bench and udp_ceiling
#   ROCE_LAUNCHER        what starts a verbs process (default <repo>/scripts/userspace-roce.sh,
#                        called as `LAUNCHER -- COMMAND ARGS...`); `none` runs roce_bench
#                        and perftest directly, e.g. on a kernel Soft-RoCE device
#   BENCH_VERBS_ARGS     extra roce_bench options for the verbs runs (e.g. "-d rxe0 -g 1")
#   BENCH_PERFTEST_ARGS  perftest's device options (default "-d uroce0 -x 0" with the
#                        runtime, none with ROCE_LAUNCHER=none; e.g. "-d rxe0 -x 1")
#   BENCH_HOST           the address the clients connect to (default 127.0.0.1)
#   BENCH_GUARD          seconds after which a stuck process is killed (default 600)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/userspace-roce/bench/roce_bench"
LAUNCHER=${ROCE_LAUNCHER:-$ROOT/scripts/userspace-roce.sh}
VERBS_ARGS=${BENCH_VERBS_ARGS:-}
if [ "$LAUNCHER" = none ]; then PERFTEST_ARGS=${BENCH_PERFTEST_ARGS:-}; else PERFTEST_ARGS=${BENCH_PERFTEST_ARGS:-"-d uroce0 -x 0"}; fi
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
ITERS="" QUICK=0 TIMEOUT=15 PORT=18590 OUT=""
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
if ! [[ $PORT =~ ^[1-9][0-9]*$ ]] || [ "$PORT" -gt 65527 ]; then
  die_usage "--port must be a TCP port up to 65527 (the runs use P .. P+8), not '$PORT'"
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

# --- perftest ------------------------------------------------------------------------------
# run_perftest NAME PORT PROGRAM ARGS...: perftest's server in the background, its client
# once the server listens on PORT; both must exit 0. Sets PT_LOG to the client's log, ""
# if the run failed (or could not be made: PT_WHY says why).
PT_OK=1 PT_WHY=""
for tool in ib_write_bw ib_send_lat ib_write_lat ss; do
  if ! command -v "$tool" >/dev/null; then
    PT_OK=0 PT_WHY="no $tool here (perftest, iproute2: scripts/install-deps.sh)"
    break
  fi
done
run_perftest() {
  local name=$1 port=$2; shift 2
  local slog="$OUT/$name-server.log" clog="$OUT/$name-client.log"
  local -a pre=("${PREFIX[@]}") dev
  # Word splitting on purpose: BENCH_PERFTEST_ARGS is a list of options.
  # shellcheck disable=SC2206
  dev=($PERFTEST_ARGS)
  PT_LOG=""
  printf 'run.sh: %-16s %s ... ' "perftest" "$*"
  if [ "$PT_OK" = 0 ]; then echo "not run: $PT_WHY"; return 0; fi
  timeout "$GUARD" "${pre[@]}" "$@" "${dev[@]}" -p "$port" >"$slog" 2>&1 </dev/null &
  local spid=$! crc=0 src=0 listen_s not_listening=""
  listen_s=$(awk -v t="$TIMEOUT" 'BEGIN { print (t > 30 ? int(t + 0.999) : 30) }')
  local deadline=$((SECONDS + listen_s))
  until [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; do
    if ! kill -0 "$spid" 2>/dev/null; then not_listening="the server exited before it listened on TCP port $port"; break; fi
    if [ $SECONDS -ge $deadline ]; then not_listening="the server did not listen on TCP port $port within $listen_s s"; break; fi
    sleep 0.05
  done
  if [ -z "$not_listening" ]; then
    timeout "$GUARD" "${pre[@]}" "$@" "${dev[@]}" -p "$port" "$HOST" >"$clog" 2>&1 </dev/null || crc=$?
  fi
  # The server outlives a client that failed (it waits for the next message): stop it.
  [ "$crc" -eq 0 ] && [ -z "$not_listening" ] || kill "$spid" 2>/dev/null || true
  wait "$spid" || src=$?
  if [ -z "$not_listening" ] && [ "$crc" -eq 0 ] && [ "$src" -eq 0 ]; then
    echo "ok"
    PT_LOG=$clog
    return 0
  fi
  if [ -n "$not_listening" ]; then
    echo "FAILED ($not_listening; server exit $src)"
  else
    echo "FAILED (client exit $crc, server exit $src)"
  fi
  FAILED+=("$name")
  local log
  for log in "$slog" "$clog"; do
    [ -e "$log" ] || continue
    echo "    --- $log (last lines)"
    tail -n 8 "$log" | sed 's/^/    | /'
  done
}

# perftest_result LOG PROGRAM KIND SIZE: perftest's table row for SIZE as a RESULT line
# like roce_bench's (bw: gbytes_per_s, from perftest's MB/s of 2^20 bytes; lat: min_us,
# t_min, half the fastest round trip; typical_us, t_typical, the median one-way time; and
# p99_us). Nothing if LOG has no such row.
perftest_result() {
  [ -n "$1" ] || return 0
  awk -v prog="$2" -v kind="$3" -v size="$4" '/#bytes/ { t = 1; next }
    t && $1 == size && kind == "bw" && NF >= 5 {
      printf "RESULT transport=verbs program=%s size=%s iters=%s gbytes_per_s=%.3f\n", prog, $1, $2, $4 * 1048576 / 1e9; exit }
    t && $1 == size && kind == "lat" && NF >= 9 {
      printf "RESULT transport=verbs program=%s size=%s iters=%s min_us=%s typical_us=%s p99_us=%s\n", prog, $1, $2, $3, $5, $8; exit }' "$1"
}

# kv "RESULT ..." KEY: the value of KEY=value in a RESULT line.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "run.sh: roce_bench $BIN"
echo "run.sh: verbs runs via ${PREFIX[*]:-(directly)}${VERBS_ARGS:+ with $VERBS_ARGS}; logs in $OUT"
run_one verbs-write_bw verbs write_bw "$PORT" "$BW_ITERS" "$BW_WARMUP"; VBW=$RESULT
run_one tcp-write_bw tcp write_bw "$((PORT + 1))" "$BW_ITERS" "$BW_WARMUP"; TBW=$RESULT
run_one verbs-pingpong verbs pingpong "$((PORT + 2))" "$PP_ITERS" "$PP_WARMUP"; VPP=$RESULT
run_one tcp-pingpong tcp pingpong "$((PORT + 3))" "$PP_ITERS" "$PP_WARMUP"; TPP=$RESULT
run_perftest perftest-write_bw "$((PORT + 4))" ib_write_bw -s 65536 -n "$BW_ITERS"
PBW=$(perftest_result "$PT_LOG" ib_write_bw bw 65536)
run_perftest perftest-send_lat "$((PORT + 5))" ib_send_lat -s 64 -n "$PP_ITERS"
PLAT=$(perftest_result "$PT_LOG" ib_send_lat lat 64)
# A WRITE's receiver calls no verb: it watches memory for the peer's WRITE, so nothing
# takes that WRITE in but the runtime's engine, unless the delayed ACK (README, "Delayed
# ACKs in ping-pong") let the peer's application take it in with the ACK it polls for.
run_perftest perftest-write_lat "$((PORT + 6))" ib_write_lat -s 64 -n "$PP_ITERS"
PWLAT=$(perftest_result "$PT_LOG" ib_write_lat lat 64)
run_perftest perftest-send_lat4k "$((PORT + 7))" ib_send_lat -s 4096 -n "$PP_ITERS"
PLAT4K=$(perftest_result "$PT_LOG" ib_send_lat lat 4096)
run_perftest perftest-write_lat4k "$((PORT + 8))" ib_write_lat -s 4096 -n "$PP_ITERS"
PWLAT4K=$(perftest_result "$PT_LOG" ib_write_lat lat 4096)
# The kernel's own ceiling for RoCE-sized UDP datagrams on loopback, without and with the
# ICRC (see udp_ceiling.cpp). run_ceiling NAME ARGS...: sets CEILING to its RESULT line, or
# "" and CEILING_WHY.
run_ceiling() {
  local name=$1; shift
  CEILING="" CEILING_WHY=""
  if [ ! -x "$BUILD_DIR/userspace-roce/bench/udp_ceiling" ]; then
    CEILING_WHY="udp_ceiling is not built (cmake --build $BUILD_DIR --target udp_ceiling)"
    return 0
  fi
  printf 'run.sh: %-16s %s... ' "udp_ceiling" "${*:+$* }"
  if CEILING=$(timeout 60 "$BUILD_DIR/userspace-roce/bench/udp_ceiling" "$@" 2>"$OUT/$name.log"); then
    echo "ok"
  else
    echo "FAILED (log: $OUT/$name.log)"; CEILING="" CEILING_WHY="udp_ceiling $* failed"
    tail -n 8 "$OUT/$name.log" | sed 's/^/    | /'
    FAILED+=("$name")
  fi
}
run_ceiling udp_ceiling; UDP=$CEILING UDP_WHY=$CEILING_WHY
run_ceiling udp_ceiling_icrc --icrc; UDPI=$CEILING UDPI_WHY=$CEILING_WHY
printf '%s\n' "$VBW" "$TBW" "$VPP" "$TPP" "$PBW" "$PLAT" "$PWLAT" "$PLAT4K" "$PWLAT4K" "$UDP" "$UDPI" \
  | sed '/^$/d' >"$OUT/results.txt"

# --- the table -------------------------------------------------------------------------
# row LABEL UNIT VALUE REF REF_NAME OP LIMIT WHY: the ratio VALUE/REF against the target
# (OP LIMIT). WHY: what to say when a number is missing.
FMT='  %-28s %12s %15s %7s %8s  %s\n'
row() {
  local label=$1 unit=$2 v=$3 r=$4 rname=$5 op=$6 limit=$7 why=$8
  if [ -z "$v" ] || [ -z "$r" ]; then
    # shellcheck disable=SC2059  # FMT is this script's own format
    printf "$FMT" "$label" "${v:+$v $unit}" "${r:+$r $unit $rname}" "-" "$op $limit" "no number: $why"
    return
  fi
  awk -v fmt="$FMT" -v label="$label" -v unit="$unit" -v v="$v" -v r="$r" -v rname="$rname" \
      -v op="$op" -v limit="$limit" 'BEGIN {
    if (r + 0 <= 0) { printf fmt, label, v " " unit, r " " unit " " rname, "-", op " " limit, "no ratio (the reference is 0)"; exit }
    q = v / r
    ok = (op == ">=") ? (q >= limit) : (q <= limit)
    printf fmt, label, v " " unit, r " " unit " " rname, sprintf("%.2f", q), op " " limit, ok ? "PASS" : "MISS"
  }'
}
failed_why() { if [ -n "$1" ]; then echo "$1"; else echo "a run failed (see above)"; fi; }

echo
if [ ${#PREFIX[@]} -gt 0 ]; then how="via $(basename "$LAUNCHER")"; else how="directly"; fi
echo "roce_bench and perftest: verbs ($how${VERBS_ARGS:+, roce_bench $VERBS_ARGS}${PERFTEST_ARGS:+, perftest $PERFTEST_ARGS}), on $(hostname) ($(nproc) CPUs)"
# shellcheck disable=SC2059
printf "$FMT" "measurement" "verbs" "reference" "ratio" "target" "verdict"
udp_gb=$(kv "$UDP" gbytes_per_s) tcp_med=$(kv "$TPP" median_us)
row "roce_bench write_bw 64 KiB" GB/s "$(kv "$VBW" gbytes_per_s)" "$udp_gb" udp ">=" 0.9 "$(failed_why "$UDP_WHY")"
row "ib_write_bw 64 KiB" GB/s "$(kv "$PBW" gbytes_per_s)" "$udp_gb" udp ">=" 0.9 "$(failed_why "${PT_WHY:-$UDP_WHY}")"
row "roce_bench pingpong 64 B" us "$(kv "$VPP" median_us)" "$tcp_med" tcp "<=" 0.5 "$(failed_why "")"
row "ib_send_lat 64 B" us "$(kv "$PLAT" typical_us)" "$tcp_med" tcp "<=" 0.5 "$(failed_why "$PT_WHY")"
row "ib_write_lat 64 B" us "$(kv "$PWLAT" typical_us)" "$(kv "$PLAT" typical_us)" send "<=" 2 "$(failed_why "$PT_WHY")"
row "ib_write_lat 4 KiB" us "$(kv "$PWLAT4K" typical_us)" "$(kv "$PLAT4K" typical_us)" send "<=" 2 "$(failed_why "$PT_WHY")"
# or_dash VALUE UNIT: "VALUE UNIT", or "-" when there is no number.
or_dash() { if [ -n "$1" ]; then echo "$1 $2"; else echo "-"; fi; }
# ratio V R: V / R to two places, or "-".
ratio() { awk -v v="$1" -v r="$2" 'BEGIN { if (v != "" && r + 0 > 0) printf "%.2f", v / r; else printf "-" }'; }
echo "  for information: fastest one way (t_min), ib_write_lat against ib_send_lat:" \
     "64 B $(or_dash "$(kv "$PWLAT" min_us)" us) / $(or_dash "$(kv "$PLAT" min_us)" us)," \
     "4 KiB $(or_dash "$(kv "$PWLAT4K" min_us)" us) / $(or_dash "$(kv "$PLAT4K" min_us)" us)"
udpi_gb=$(kv "$UDPI" gbytes_per_s)
echo "  for information: udp with ICRC $(or_dash "$udpi_gb" GB/s)${UDPI:+ (CRC $(kv "$UDPI" crc))}${UDPI_WHY:+ ($UDPI_WHY)}, 64 KiB WRITE against it:" \
     "roce_bench $(ratio "$(kv "$VBW" gbytes_per_s)" "$udpi_gb"), ib_write_bw $(ratio "$(kv "$PBW" gbytes_per_s)" "$udpi_gb")"
echo "  for information: tcp write_bw 64 KiB $(or_dash "$(kv "$TBW" gbytes_per_s)" GB/s) (TCP loopback moves 64 KiB"
echo "  segments); p99 one way at 64 B: roce_bench $(or_dash "$(kv "$VPP" p99_us)" us), ib_send_lat" \
     "$(or_dash "$(kv "$PLAT" p99_us)" us), tcp $(or_dash "$(kv "$TPP" p99_us)" us)"
echo "  udp: udp_ceiling, bare 4112-byte datagrams sent much as the runtime sends them (this kernel's"
echo "  ceiling for RoCE at MTU 4096); udp with ICRC: the same, each datagram's ICRC computed and"
echo "  checked by the runtime's CRC code; bandwidth: roce_bench 16 WRITEs in flight, ib_write_bw 128;"
echo "  latency one way: roce_bench median of round trip / 2, ib_send_lat t_typical (its median);"
echo "  ib_write_lat t_typical against ib_send_lat's of the same size (send), both at run.sh's own"
echo "  priority (nice $(nice))"
echo "  (GB/s = 10^9 bytes/s; RESULT lines in $OUT/results.txt)"

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "run.sh: ${#FAILED[@]} run(s) failed: ${FAILED[*]} (logs in $OUT)" >&2
  exit 1
fi
exit 0
