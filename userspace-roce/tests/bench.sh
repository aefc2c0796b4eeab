#!/usr/bin/env bash
# uroce_bench: the benchmark (userspace-roce/bench/run.sh --quick --iters 1000) runs from
# end to end. It checks that every measurement was made, never how fast: this machine's
# speed decides the numbers and their PASS/MISS verdicts, and a test must not depend on it.
#   - run.sh exits 0: roce_bench's four runs (verbs and TCP, bandwidth and ping-pong)
#     and perftest's five on the runtime (ib_write_bw; ib_send_lat and ib_write_lat at
#     64 B and 4 KiB) succeeded on both sides (server and client), and udp_ceiling
#     succeeded, without and with --icrc (which fails if a datagram arrives with the
#     wrong size or an ICRC that does not check out); roce_bench refuses to print a number for data that did not check out,
#     so that includes "the bytes were right".
#   - its results.txt holds exactly eleven RESULT lines, one per run, each with the size
#     and the iterations asked for (1000 of every kind; udp_ceiling's 200000 datagrams)
#     and a positive, finite measurement: GB/s for the bandwidth runs and both ceilings
#     (which must have received datagrams, with --icrc none with a bad ICRC), the median
#     one-way microseconds for the ping-pongs, with their p99 present.
#   - its table has the six target rows, each with a ratio and a verdict (PASS or MISS),
#     none saying "no number", and its information lines have perftest's four t_min and
#     both WRITEs against the ceiling with ICRC.
# Time bounds, sized for a loaded machine (where a 64-byte round trip can take 10 ms of
# scheduler time slices, so 1000 of them 10 s): roce_bench gives up after 60 s without
# progress (--timeout), every process run.sh starts is killed after 120 s (BENCH_GUARD),
# and run.sh's eleven runs take at most 4 x 120 s (roce_bench's four) + 5 x (60 s waiting
# for perftest's server to listen + 120 s) + 2 x 60 s (udp_ceiling) = 1500 s, so the
# whole run is stopped after 1560 s; whatever it left running (each run's `timeout` is in a
# group of its own) is killed with it, by session.
# TCP ports 18590-18598 (run.sh's own). Logs in $BUILD_DIR/userspace-roce/test-out/uroce_bench/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_bench
need "$BENCH" "$BUILD_DIR/userspace-roce/bench/udp_ceiling"
for tool in ib_write_bw ib_send_lat ib_write_lat ss setsid pkill; do
  command -v "$tool" >/dev/null \
    || { fail "$tool is not installed (perftest, iproute2, util-linux, procps: scripts/install-deps.sh)"; t_finish; }
done

# run.sh in a session of its own, whose id it writes down first, so that everything in
# it can be killed if the 1560 s run out.
LIMIT=1560
rc=0
# shellcheck disable=SC2016  # $$ is the inner shell's: the new session's id
BENCH_GUARD=120 timeout -k 10 "$LIMIT" setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ \
  "$OUT/session" "$ROOT/userspace-roce/bench/run.sh" --quick --iters 1000 --timeout 60 --port 18590 \
  --out "$OUT/run" >"$OUT/run.log" 2>&1 || rc=$?
sid=$(cat "$OUT/session" 2>/dev/null)
if [[ $sid =~ ^[1-9][0-9]*$ ]] && [ "$sid" != "$(ps -o sid= $$ | tr -d ' ')" ]; then
  pkill -KILL -s "$sid" 2>/dev/null
fi
cat "$OUT/run.log"
if [ "$rc" -eq 0 ]; then
  pass "run.sh exited 0: every run succeeded"
elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  fail "run.sh did not finish within $LIMIT s (stopped; the runs' logs in $OUT/run)"
else
  fail "run.sh exited $rc (log above; the runs' logs in $OUT/run)"
fi

RESULTS="$OUT/run/results.txt"
if [ ! -s "$RESULTS" ]; then
  fail "run.sh wrote no $RESULTS: no measurement to check"
  t_finish
fi
lines=$(grep -c '^RESULT ' "$RESULTS")
if [ "$lines" -eq 11 ]; then
  pass "results.txt holds 11 RESULT lines"
else
  fail "results.txt holds $lines RESULT lines, not 11: $(tr '\n' '|' <"$RESULTS")"
fi

# result PATTERN: the RESULT line in results.txt matching PATTERN (a grep -E expression).
result() { grep -E "^RESULT .*$1" "$RESULTS" | head -n 1; }
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
# positive V: V is a number above 0 and finite (mawk reads "inf" as a number).
positive() { awk -v v="$1" 'BEGIN { exit !(v ~ /^[0-9.]+$/ && v + 0 > 0 && v + 0 < 1e30) }'; }

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
# check_lat LABEL PATTERN MEDIAN_KEY SIZE ITERS: a ping-pong line of SIZE-byte messages
# for ITERS round trips, its median one way (MEDIAN_KEY) positive and its p99 present
# (both come from the same sorted samples, so p99 >= median is checked only as a sign the
# line was read right).
check_lat() {
  local line med p99
  line=$(result "$2 size=$4 ")
  if [ -z "$line" ]; then fail "$1: no RESULT line in $RESULTS"; return; fi
  med=$(kv "$line" "$3") p99=$(kv "$line" p99_us)
  if [ "$(kv "$line" iters)" = "$5" ] && positive "$med" \
     && positive "$p99" && awk -v m="$med" -v p="$p99" 'BEGIN { exit !(m + 0 <= p + 0) }'; then
    pass "$1: $4 B x $5, one way $med us ($3), p99 $p99 us"
  else
    fail "$1: expected size=$4 iters=$5 and 0 < $3 <= p99_us in: $line"
  fi
}
check_bw "roce_bench verbs write_bw" "transport=verbs test=write_bw" 65536 1000
check_bw "roce_bench tcp write_bw" "transport=tcp test=write_bw" 65536 1000
check_lat "roce_bench verbs pingpong" "transport=verbs test=pingpong" median_us 64 1000
check_lat "roce_bench tcp pingpong" "transport=tcp test=pingpong" median_us 64 1000
check_bw "perftest ib_write_bw" "program=ib_write_bw" 65536 1000
check_lat "perftest ib_send_lat" "program=ib_send_lat" typical_us 64 1000
check_lat "perftest ib_write_lat" "program=ib_write_lat" typical_us 64 1000
check_lat "perftest ib_send_lat" "program=ib_send_lat" typical_us 4096 1000
check_lat "perftest ib_write_lat" "program=ib_write_lat" typical_us 4096 1000
udp=$(result "transport=udp test=datagram_ceiling ")
if [ -n "$udp" ] && [ "$(kv "$udp" size)" = 4112 ] && [ "$(kv "$udp" datagrams)" = 200000 ] \
   && positive "$(kv "$udp" received)" && positive "$(kv "$udp" gbytes_per_s)"; then
  pass "udp_ceiling: $(kv "$udp" received) of $(kv "$udp" datagrams) datagrams of 4112 B, $(kv "$udp" gbytes_per_s) GB/s"
else
  fail "udp_ceiling: expected size=4112 datagrams=200000, received > 0 and gbytes_per_s > 0 in: ${udp:-(no RESULT line in $RESULTS)}"
fi
udpi=$(result "transport=udp test=datagram_ceiling_icrc ")
if [ -n "$udpi" ] && [ "$(kv "$udpi" size)" = 4112 ] && [ "$(kv "$udpi" datagrams)" = 200000 ] \
   && positive "$(kv "$udpi" received)" && [ "$(kv "$udpi" bad_icrc)" = 0 ] && [ -n "$(kv "$udpi" crc)" ] \
   && positive "$(kv "$udpi" gbytes_per_s)"; then
  pass "udp_ceiling --icrc: $(kv "$udpi" received) of $(kv "$udpi" datagrams) datagrams of 4112 B, none with a bad ICRC (CRC $(kv "$udpi" crc)), $(kv "$udpi" gbytes_per_s) GB/s"
else
  fail "udp_ceiling --icrc: expected size=4112 datagrams=200000, received > 0, bad_icrc=0, crc= and gbytes_per_s > 0 in: ${udpi:-(no RESULT line in $RESULTS)}"
fi
if grep -qE '^  for information: fastest one way \(t_min\), ib_write_lat against ib_send_lat: 64 B [0-9.]+ us / [0-9.]+ us, 4 KiB [0-9.]+ us / [0-9.]+ us$' "$OUT/run.log"; then
  pass "the table's information line has the four t_min"
else
  fail "the table has no line 'for information: fastest one way (t_min) ... 64 B W us / S us, 4 KiB W us / S us': $(grep -F 'fastest one way' "$OUT/run.log" | head -n 1)"
fi
if grep -qE '^  for information: udp with ICRC [0-9.]+ GB/s \(CRC (clmul512|clmul128|table)\), 64 KiB WRITE against it: roce_bench [0-9]+\.[0-9]+, ib_write_bw [0-9]+\.[0-9]+$' "$OUT/run.log"; then
  pass "the table's information line has both WRITEs against the ceiling with ICRC"
else
  fail "the table has no line 'for information: udp with ICRC X GB/s (CRC M), 64 KiB WRITE against it: roce_bench R, ib_write_bw R': $(grep -F 'udp with ICRC' "$OUT/run.log" | head -n 1)"
fi

# The table: each target row has a ratio and a verdict.
ROW_RE='[0-9]+\.[0-9]+ +(>=|<=) [0-9.]+ +(PASS|MISS)$'
for label in "roce_bench write_bw 64 KiB" "ib_write_bw 64 KiB" "roce_bench pingpong 64 B" \
             "ib_send_lat 64 B" "ib_write_lat 64 B" "ib_write_lat 4 KiB"; do
  row=$(grep -F "  $label " "$OUT/run.log" | head -n 1)
  if [[ $row =~ $ROW_RE ]]; then
    pass "table row '$label': ratio and verdict ${BASH_REMATCH[2]}"
  else
    fail "table row '$label' has no ratio and verdict: ${row:-(missing)}"
  fi
done
t_finish
