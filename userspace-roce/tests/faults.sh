#!/usr/bin/env bash
# uroce_faults: reliable delivery on a lossy, reordering link. Both sides run with
# --drop 0.05 --reorder 0.05 (the runtime's fault injector, each side with its own fixed
# --seed and fixed address, so a run's faults are repeatable up to timing):
#   - lesson 01's server and client: 20 x 64 B, then 10 x 20000 B (5 packets each at
#     path MTU 4096); both must exit 0 with their own data checks ("verified"), including
#     the teardown, where a lost last ACK is what lesson 01's DONE handshake is for
#   - roce_bench --test verify_rw: 4 MiB RDMA WRITTEN, READ back and compared on both sides
# while tcpdump records them; tests/tools/roce_wire_check.py must find retransmissions
# (dropped packets never reach the wire: the runtime drops them before sending, so what
# the capture shows is their retransmission) and no tshark or ICRC error. The number of
# retransmissions on the wire and of the runtime's ACK timeouts is printed.
#
# Addresses 127.0.186.3 (server) and 127.0.186.4 (client), outside the 127.0.0.x range
# other runtime processes pick from; tcpdump records only those. The capture needs root
# and tcpdump: without them the runs are still made and checked, but the test then ends
# with exit 77 (skipped: the wire was not checked; under CI=true a failure, lib.sh's
# t_skip). tshark and python3-scapy for the check.
# TCP ports 18630-18639. Logs, pcap and checker output in
# $BUILD_DIR/userspace-roce/test-out/uroce_faults/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_faults
capture=1
can_capture || capture=0
need "$LESSON01/server" "$LESSON01/client" "$BENCH" || t_finish
"$BENCH" client --help 2>/dev/null | grep -q verify_rw \
  || { fail "$BENCH has no --test verify_rw (rebuild it: cmake --build $BUILD_DIR --target roce_bench)"; t_finish; }

S_ADDR=127.0.186.3 C_ADDR=127.0.186.4
FAULTS=(--drop 0.05 --reorder 0.05 --log 1)
srv=("$RUNTIME" --addr "$S_ADDR" "${FAULTS[@]}" --seed 18631 --)
cli=("$RUNTIME" --addr "$C_ADDR" "${FAULTS[@]}" --seed 18632 --)
echo "    faults on both sides: ${FAULTS[*]} (seeds 18631 server, 18632 client)"
PCAP="$OUT/wire.pcap"
if [ $capture = 1 ]; then
  capture_start "$PCAP" "udp port 4791 and (host $S_ADDR or host $C_ADDR)" || t_finish
fi

# lesson01 NAME COUNT SIZE PORT: lesson 01's server and client under loss; both must
# exit 0 with their own data checks. -t 10: a wait may take longer than usual while a
# lost packet is retransmitted.
lesson01() {
  local name=$1 n=$2 size=$3 port=$4 what="lesson 01 under loss, $2 x $3 B"
  SERVER=("${srv[@]}" "$LESSON01/server" -p "$port" -s "$size" -t 10)
  CLIENT=("${cli[@]}" "$LESSON01/client" 127.0.0.1 -p "$port" -n "$n" -s "$size" -t 10)
  run_pair "$name"
  local slog="$OUT/$name-server.log" clog="$OUT/$name-client.log"
  local s_ok="server: $n message\\(s\\) received, verified and echoed"
  local c_ok="client: $n message\\(s\\) of up to $size bytes sent, echoed and verified"
  check "$what: server" 0 "$SRC" "$slog" "$s_ok" "got message $n \\($size bytes\\)"
  check "$what: client" 0 "$CRC" "$clog" "$c_ok"
}
lesson01 lesson01-small 20 64 18630
lesson01 lesson01-large 10 20000 18631

# roce_bench verify_rw: 4 MiB (64 x 64 KiB) RDMA WRITTEN, READ back and compared on both
# sides. Not its default 16 MiB: go-back-N under this loss sends several times the 2048
# packets 4 MiB needs (some 15000-30000), a capture of 60-130 MB already.
bench=(--transport verbs --test verify_rw --size 65536 --iters 64 -p 18632)
BENCH_OK='^RESULT .*test=verify_rw .*bytes=4194304 .*verified=yes$'
SERVER=("${srv[@]}" "$BENCH" server "${bench[@]}")
CLIENT=("${cli[@]}" "$BENCH" client 127.0.0.1 "${bench[@]}")
run_pair bench
check "roce_bench ${bench[*]} under loss: server" 0 $SRC "$OUT/bench-server.log" "$BENCH_OK"
check "roce_bench ${bench[*]} under loss: client" 0 $CRC "$OUT/bench-client.log" "$BENCH_OK"

if [ $capture = 1 ]; then capture_stop || t_finish; fi

# No QP may have given up (retry counter exceeded, ERROR state) on either side.
errors=$(grep -c 'moving to ERROR' "$OUT"/*-server.log "$OUT"/*-client.log | awk -F: '{ n += $2 } END { print n + 0 }')
if [ "$errors" -gt 0 ]; then
  fail "a QP moved to ERROR under loss:"; grep -H 'moving to ERROR' "$OUT"/*-server.log "$OUT"/*-client.log | sed 's/^/    | /'
else
  pass "no QP moved to ERROR on either side"
fi
timeouts=$(cat "$OUT"/*-server.log "$OUT"/*-client.log | grep -c 'ACK timeout, resending from PSN')

if [ $capture = 0 ]; then
  echo "    ACK timeouts the runtime logged: $timeouts"
  [ "$T_FAILED" -eq 0 ] || t_finish
  echo "$T_NAME: $T_PASSED passed, 0 failed, and the wire not checked:"
  t_skip "no capture, $NO_CAPTURE" "$NO_CAPTURE_HOW"
fi
wire_check "wire under loss: retransmissions present, tshark decodes RRoCE, ICRCs right" "$PCAP" \
  --min-packets 500 --expect-retransmissions
retrans=$(sed -n 's/^retransmissions: \([0-9]*\)$/\1/p' "$OUT/wire-check.txt")
echo "    retransmissions seen on the wire: ${retrans:-?}; ACK timeouts the runtime logged: $timeouts"
t_finish
