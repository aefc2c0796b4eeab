#!/usr/bin/env bash
# uroce_capture: what the userspace runtime puts on the wire, checked by tools that share
# no code with it. tcpdump records loopback while three unmodified programs run on the
# runtime, one pair at a time:
#   - lesson 01's server and client: 10 x 64 B SENDs, then 3 x 20000 B (5 packets each
#     at path MTU 4096: SEND FIRST/MIDDLE/LAST)
#   - ibv_rc_pingpong -g 0 -s 8192 (8 packets a message at its default path MTU 1024)
#   - roce_bench --test verify_rw: RDMA WRITEs of 64 KiB, read back with RDMA READ
# then tests/tools/roce_wire_check.py: tshark decodes every packet as RRoCE without
# malformed/expert errors, every ICRC is right (computed by hand and by scapy), and the
# opcodes of all those operations are there.
#
# The runtime's processes use fixed addresses (UROCE_ADDR: server 127.0.186.1, client
# 127.0.186.2, outside the 127.0.0.x range other runtime processes pick from) and tcpdump
# records only those, so runtime traffic of tests running at the same time stays out.
# Needs root and tcpdump (else exit 77: skipped); tshark and python3-scapy for the check.
# TCP ports 18620-18629. Pcap, checker output and logs in
# $BUILD_DIR/userspace-roce/test-out/uroce_capture/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_capture
can_capture || exit 77
need "$LESSON01/server" "$LESSON01/client" "$BENCH" || t_finish
"$BENCH" client --help 2>/dev/null | grep -q verify_rw \
  || { fail "$BENCH has no --test verify_rw (rebuild it: cmake --build $BUILD_DIR --target roce_bench)"; t_finish; }
for tool in ibv_rc_pingpong ss; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed (ibverbs-utils, iproute2: scripts/install-deps.sh)"; t_finish; }
done
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

capture_stop || t_finish

# Lower bound of RoCE packets: pingpong alone sends 100 x 2 x 8 SEND packets, the bench
# 32 x 16 WRITE and as many READ response packets, lesson 01 (10 + 3 x 5) x 2 SENDs.
expect=(SEND_ONLY SEND_FIRST SEND_MIDDLE SEND_LAST ACKNOWLEDGE RDMA_WRITE_FIRST RDMA_WRITE_MIDDLE
        RDMA_WRITE_LAST RDMA_READ_REQUEST RDMA_READ_RESPONSE_FIRST RDMA_READ_RESPONSE_MIDDLE
        RDMA_READ_RESPONSE_LAST)
args=(--min-packets 2600)
for op in "${expect[@]}"; do args+=(--expect "$op"); done
wire_check "wire: tshark decodes RRoCE, ICRCs right, opcodes ${expect[*]}" "$PCAP" "${args[@]}"
t_finish
