#!/usr/bin/env bash
# uroce_bench: the benchmark (userspace-roce/bench/run.sh --quick) runs from end to end.
# It checks that every measurement was made, never how fast: this machine's speed decides
# the numbers and their PASS/MISS verdicts, and a test must not depend on it.
#   - run.sh exits 0: roce_bench's four runs (verbs and TCP, bandwidth and ping-pong),
#     perftest's ib_write_bw and ib_send_lat on the runtime and udp_ceiling all succeeded,
#     both sides of each pair; roce_bench refuses to print a number for data that did not
#     check out, so that includes "the bytes were right".
#   - its results.txt holds the seven RESULT lines, each with the size and the iterations
#     asked for (--quick: 1000 bandwidth and 3000 ping-pong iterations) and a positive
#     measurement: GB/s for the bandwidth runs and the ceiling (which must have received
#     datagrams), median and p99 one-way microseconds for the ping-pongs, 0 < median <= p99.
#   - its table has the four target rows, each with a ratio and a verdict (PASS or MISS),
#     none saying "no number".
# TCP ports 18600-18605 (run.sh's own). Logs in $BUILD_DIR/userspace-roce/test-out/uroce_bench/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_bench
need "$BENCH" "$BUILD_DIR/userspace-roce/bench/udp_ceiling"
for tool in ib_write_bw ib_send_lat ss; do
  command -v "$tool" >/dev/null \
    || { fail "$tool is not installed (perftest, iproute2: scripts/install-deps.sh)"; t_finish; }
done

# run.sh waits for nothing without a bound: roce_bench --timeout 60 (seconds without
# progress, sized for a loaded machine), and every process is killed after BENCH_GUARD.
rc=0
BENCH_GUARD=240 timeout 600 "$ROOT/userspace-roce/bench/run.sh" --quick --timeout 60 \
  --port 18600 --out "$OUT/run" >"$OUT/run.log" 2>&1 || rc=$?
cat "$OUT/run.log"
if [ "$rc" -eq 0 ]; then
  pass "run.sh --quick exited 0: every run succeeded"
else
  fail "run.sh --quick exited $rc (log above; the runs' logs in $OUT/run)"
fi

# result PATTERN: the RESULT line in results.txt matching PATTERN (a grep -E expression).
RESULTS="$OUT/run/results.txt"
result() { grep -E "^RESULT .*$1" "$RESULTS" 2>/dev/null | head -n 1; }
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
positive() { awk -v v="$1" 'BEGIN { exit !(v + 0 > 0) }'; }

# check_bw LABEL PATTERN SIZE ITERS: a bandwidth RESULT line for SIZE x ITERS, GB/s > 0.
check_bw() {
  local line
  line=$(result "$2")
  if [ -z "$line" ]; then fail "$1: no RESULT line in $RESULTS"; return; fi
  if [ "$(kv "$line" size)" = "$3" ] && [ "$(kv "$line" iters)" = "$4" ] \
     && positive "$(kv "$line" gbytes_per_s)"; then
    pass "$1: $3 B x $4, $(kv "$line" gbytes_per_s) GB/s"
  else
    fail "$1: expected size=$3 iters=$4 and gbytes_per_s > 0 in: $line"
  fi
}
# check_lat LABEL PATTERN MEDIAN_KEY ITERS: a 64-byte ping-pong line for ITERS round trips
# with 0 < median <= p99.
check_lat() {
  local line med p99
  line=$(result "$2")
  if [ -z "$line" ]; then fail "$1: no RESULT line in $RESULTS"; return; fi
  med=$(kv "$line" "$3") p99=$(kv "$line" p99_us)
  if [ "$(kv "$line" size)" = 64 ] && [ "$(kv "$line" iters)" = "$4" ] && positive "$med" \
     && awk -v m="$med" -v p="$p99" 'BEGIN { exit !(m <= p) }'; then
    pass "$1: 64 B x $4, one way $med us ($3), p99 $p99 us"
  else
    fail "$1: expected size=64 iters=$4 and 0 < $3 <= p99_us in: $line"
  fi
}
check_bw "roce_bench verbs write_bw" "transport=verbs test=write_bw" 65536 1000
check_bw "roce_bench tcp write_bw" "transport=tcp test=write_bw" 65536 1000
check_lat "roce_bench verbs pingpong" "transport=verbs test=pingpong" median_us 3000
check_lat "roce_bench tcp pingpong" "transport=tcp test=pingpong" median_us 3000
check_bw "perftest ib_write_bw" "program=ib_write_bw" 65536 1000
check_lat "perftest ib_send_lat" "program=ib_send_lat" typical_us 3000
udp=$(result "transport=udp test=datagram_ceiling")
if [ -n "$udp" ] && [ "$(kv "$udp" size)" = 4112 ] && positive "$(kv "$udp" received)" \
   && positive "$(kv "$udp" gbytes_per_s)"; then
  pass "udp_ceiling: $(kv "$udp" received) of $(kv "$udp" datagrams) datagrams of 4112 B, $(kv "$udp" gbytes_per_s) GB/s"
else
  fail "udp_ceiling: expected size=4112, received > 0 and gbytes_per_s > 0 in: ${udp:-(no RESULT line in $RESULTS)}"
fi

# The table: each target row has a ratio and a verdict.
ROW_RE='[0-9]+\.[0-9]+ +(>=|<=) [0-9.]+ +(PASS|MISS)$'
for label in "roce_bench write_bw 64 KiB" "ib_write_bw 64 KiB" "roce_bench pingpong 64 B" \
             "ib_send_lat 64 B"; do
  row=$(grep -F "  $label " "$OUT/run.log" | head -n 1)
  if [[ $row =~ $ROW_RE ]]; then
    pass "table row '$label': ratio and verdict ${BASH_REMATCH[2]}"
  else
    fail "table row '$label' has no ratio and verdict: ${row:-(missing)}"
  fi
done
t_finish
