#!/usr/bin/env bash
# uroce_capture: what the userspace runtime puts on the wire, checked by tools that share
# no code with it. tcpdump records loopback while four programs, none of them changed for
# the runtime, run on it, one pair at a time:
#   - lesson 01's server and client: 10 x 64 B SENDs, then 3 x 20000 B (5 packets each
#     at path MTU 4096: SEND FIRST/MIDDLE/LAST)
#   - ibv_rc_pingpong -g 0 -s 8192 (8 packets a message at its default path MTU 1024)
#   - roce_bench --test verify_rw: RDMA WRITEs of 64 KiB, read back with RDMA READ
#   - the RDMA CM (the runtime's librdmacm.so.1) with Debian's rping: a client asking for
#     a port nobody listens on (ConnectReject), then rping -C 10 -v -V's whole connection
#     (ConnectRequest, ConnectReply, ReadyToUse, the pings, DisconnectRequest and
#     DisconnectReply)
# then tests/tools/roce_wire_check.py (after its --self-test): tshark decodes every packet
# as RRoCE without malformed/expert errors, every ICRC is right (computed by hand and by
# scapy), the opcodes of all those operations are there, and every CM MAD (a UD
# SEND_ONLY to QP 1 with a DETH) is well formed and decoded by tshark as the same CM
# message, each of the six kinds above at least once.
#
# The runtime's processes use fixed addresses (UROCE_ADDR: server 127.0.186.1, client
# 127.0.186.2, outside the 127.0.0.x range other runtime processes pick from) and tcpdump
# records only those, so runtime traffic of tests running at the same time stays out.
# Needs root and tcpdump (else exit 77: skipped; under CI=true a failure, lib.sh's t_skip);
# tshark and python3-scapy for the check.
# TCP ports 18620-18626, RDMA CM ports 18627-18628. Pcap, checker output and logs in
# $BUILD_DIR/userspace-roce/test-out/uroce_capture/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_capture
can_capture || t_skip "$NO_CAPTURE" "$NO_CAPTURE_HOW"
need "$LESSON01/server" "$LESSON01/client" "$BENCH" || t_finish
"$BENCH" client --help 2>/dev/null | grep -q verify_rw \
  || { fail "$BENCH has no --test verify_rw (rebuild it: cmake --build $BUILD_DIR --target roce_bench)"; t_finish; }
for tool in ibv_rc_pingpong ss rping stdbuf; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed (ibverbs-utils, rdmacm-utils, iproute2: scripts/install-deps.sh)"; t_finish; }
done
need_rdmacm
PINGPONG=$(command -v ibv_rc_pingpong)

S_ADDR=127.0.186.1 C_ADDR=127.0.186.2
srv=("$RUNTIME" --addr "$S_ADDR" --)
cli=("$RUNTIME" --addr "$C_ADDR" --)
PCAP="$OUT/wire.pcap"
capture_start "$PCAP" "udp port 4791 and (host $S_ADDR or host $C_ADDR)" || t_finish

# lesson 01: the server takes the message count from the client's HELLO; -s sizes its buffers.
SERVER=("${srv[@]}" "$LESSON01/server" -p 18620 -s 64)
CLIENT=("${cli[@]}" "$LESSON01/client" 127.0.0.1 -p 18620 -n 10 -s 64)
run_pair lesson01-small
check "lesson 01, 10 x 64 B: server" 0 $SRC "$OUT/lesson01-small-server.log" 'server: 10 message\(s\) received, verified and echoed'
check "lesson 01, 10 x 64 B: client" 0 $CRC "$OUT/lesson01-small-client.log" 'client: 10 message\(s\) of up to 64 bytes sent, echoed and verified'

SERVER=("${srv[@]}" "$LESSON01/server" -p 18621 -s 20000)
CLIENT=("${cli[@]}" "$LESSON01/client" 127.0.0.1 -p 18621 -n 3 -s 20000)
run_pair lesson01-large
check "lesson 01, 3 x 20000 B: server" 0 $SRC "$OUT/lesson01-large-server.log" 'server: 3 message\(s\) received, verified and echoed'
check "lesson 01, 3 x 20000 B: client" 0 $CRC "$OUT/lesson01-large-client.log" 'client: 3 message\(s\) of up to 20000 bytes sent, echoed and verified'

pp=(-g 0 -c -p 18622 -s 8192 -n 100)
SERVER=("${srv[@]}" "$PINGPONG" "${pp[@]}")
CLIENT=("${cli[@]}" "$PINGPONG" "${pp[@]}" 127.0.0.1)
run_pair pingpong 18622   # its client does not retry the connect: start it once the server listens
for side in server client; do
  [ $side = server ] && rc=$SRC || rc=$CRC
  check "ibv_rc_pingpong ${pp[*]}: $side" 0 $rc "$OUT/pingpong-$side.log" '^1638400 bytes in' '^100 iters in'
done

# roce_bench verify_rw: 32 x 64 KiB RDMA WRITTEN, READ back and compared on both sides.
bench=(--transport verbs --test verify_rw --size 65536 --iters 32 -p 18623)
BENCH_OK='^RESULT .*test=verify_rw .*bytes=2097152 .*verified=yes$'
SERVER=("${srv[@]}" "$BENCH" server "${bench[@]}")
CLIENT=("${cli[@]}" "$BENCH" client 127.0.0.1 "${bench[@]}")
run_pair bench
check "roce_bench ${bench[*]}: server" 0 $SRC "$OUT/bench-server.log" "$BENCH_OK"
check "roce_bench ${bench[*]}: client" 0 $CRC "$OUT/bench-client.log" "$BENCH_OK"

# RDMA CM: rping's server listens on 18627; a client for 18628 is refused (ConnectReject,
# invalid service ID) and fails; then rping -C 10 -v -V connects, pings and disconnects.
LB=(stdbuf -oL)
SERVER=("${LB[@]}" "$RUNTIME" -- rping -s -v -V -C 10 -a "$S_ADDR" -p 18627)
bg 120 "$OUT/rping-server.log" "${SERVER[@]}"
rping_server=$BG_PID
wait_roce_addr "$S_ADDR" 30 || echo "    (rping's server has no device bound at $S_ADDR:4791 after 30 s)"
timeout -k 5 60 "${LB[@]}" "$RUNTIME" --addr "$C_ADDR" -- rping -c -C 1 -a "$S_ADDR" -p 18628 \
  >"$OUT/rping-rejected.log" 2>&1
check "rping client for port 18628, where nobody listens: refused (ConnectReject, invalid service ID), exit 255" \
  255 $? "$OUT/rping-rejected.log" 'RDMA_CM_EVENT_REJECTED, error 8'
tries=0
while :; do
  tries=$((tries + 1))
  timeout -k 5 60 "${LB[@]}" "$RUNTIME" --addr "$C_ADDR" -- rping -c -v -V -C 10 -a "$S_ADDR" -p 18627 \
    >"$OUT/rping-client.log" 2>&1
  rc=$?
  # Refused because its server did not listen yet: try again (bounded).
  if [ $rc -eq 0 ] || [ $tries -ge 5 ] || ! kill -0 "$rping_server" 2>/dev/null \
     || ! grep -q 'RDMA_CM_EVENT_REJECTED, error 8' "$OUT/rping-client.log"; then
    break
  fi
done
reap "$rping_server"
check "rping -v -V -C 10: server" 0 "$RC" "$OUT/rping-server.log" '^server ping data: rdma-ping-9: '
check "rping -v -V -C 10: client" 0 "$rc" "$OUT/rping-client.log" '^ping data: rdma-ping-9: '

capture_stop || t_finish

# Lower bound of RoCE packets: pingpong alone sends 100 x 2 x 8 SEND packets, the bench
# 32 x 16 WRITE and as many READ response packets, lesson 01 (10 + 3 x 5) x 2 SENDs.
expect=(SEND_ONLY SEND_FIRST SEND_MIDDLE SEND_LAST ACKNOWLEDGE RDMA_WRITE_FIRST RDMA_WRITE_MIDDLE
        RDMA_WRITE_LAST RDMA_READ_REQUEST RDMA_READ_RESPONSE_FIRST RDMA_READ_RESPONSE_MIDDLE
        RDMA_READ_RESPONSE_LAST)
expect+=(UD_SEND_ONLY ConnectRequest ConnectReply ReadyToUse ConnectReject DisconnectRequest DisconnectReply)
args=(--self-test --min-packets 2600)
for op in "${expect[@]}"; do args+=(--expect "$op"); done
wire_check "wire: tshark decodes RRoCE and CM, ICRCs right, opcodes and CM messages ${expect[*]}" "$PCAP" "${args[@]}"
t_finish
