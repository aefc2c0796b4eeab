#!/usr/bin/env bash
# Interop: kernel Soft-RoCE (rxe) and the userspace RoCE runtime on one wire, in the lab
# (registered with ctest, label interop).
#
#   tests/lab_interop.sh GROUP DIRECTION
#
# GROUP      verbs | cm | netem | corrupt: the steps of tests/lab_interop_guest.sh
# DIRECTION  rxe-server:     the server guest runs kernel rxe, the client guest the runtime
#            runtime-server: the server guest runs the runtime, the client guest kernel rxe
#
# netem runs with `lab.sh --netem-ingress 'loss 3% delay 1ms'` (3 % of what each guest
# receives is lost, after the capture point, so that every loss and its resend are in the
# capture), corrupt with `--netem 'corrupt 2%'` (one bit flipped in 2 % of the frames each
# guest sends, before the capture point, so that the corrupted packets are in it).
#
# Then the wire, as qemu recorded it at the server's NIC (both directions), is checked by
# tests/tools/roce_wire_check.py, which owes nothing to either implementation: every RoCE
# packet decodes in tshark with no malformed packet or expert warning, every ICRC is right
# (computed by hand, cross-checked by scapy on the first packet of each opcode), and
# the opcodes the steps must produce are there; for netem, both sides retransmitted. For
# corrupt, the wire must show corrupted packets (a wrong ICRC) from both sides, which are
# then the only packets allowed to be wrong, with those whose flipped bit the ICRC cannot
# show: in an Ethernet address (one bit off the MAC its IP address has in most frames),
# in the IPv4 header fields it masks (TOS, TTL, the header checksum: seen through the
# header checksum), or in the UDP length (which hides where the ICRC is). A flip in the
# UDP checksum or the BTH's masked byte shows nowhere in this check (a receiver's UDP
# layer drops a packet whose checksum went wrong).
# The programs' own data checks passing means each receiver dropped the packets with a
# wrong ICRC rather than deliver their bytes, and the runtime's log says it did.
# Logs: $BUILD_DIR/lab-runs/interop-GROUP-DIRECTION/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: lab_interop.sh verbs|cm|netem|corrupt rxe-server|runtime-server"
group=${1:?$usage}
direction=${2:?$usage}
: "${BUILD_DIR:=$ROOT/build}"

case $direction in
  rxe-server) runtimes=(--server-runtime kernel --client-runtime userspace) ;;
  runtime-server) runtimes=(--server-runtime userspace --client-runtime kernel) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
netem=() retrans=()
case $group in
  verbs)
    # ibv_rc_pingpong and lesson 01 above the path MTU; lesson 05's WRITE and READ.
    expect=SEND_FIRST,SEND_MIDDLE,SEND_LAST,SEND_ONLY,ACKNOWLEDGE,RDMA_WRITE_ONLY,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_ONLY ;;
  cm)
    expect=ConnectRequest,ConnectReply,ReadyToUse,DisconnectRequest,DisconnectReply,RDMA_WRITE_FIRST,RDMA_WRITE_LAST,RDMA_WRITE_ONLY,RDMA_WRITE_ONLY_WITH_IMMEDIATE,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_READ_RESPONSE_LAST,SEND_ONLY,ACKNOWLEDGE ;;
  netem)
    # On ingress: a lost packet was on the wire before its receiver dropped it, so the
    # capture at the server's NIC holds it and its resend (lab.sh --help, Impairments).
    netem=(--netem-ingress 'loss 3% delay 1ms')
    expect=SEND_ONLY,ACKNOWLEDGE,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_WRITE_FIRST
    # Both ends lose packets, so both must have resent some (the client's runtime or
    # kernel sends from 10.0.0.2, its first address).
    retrans=(--expect-retransmissions-from 10.0.0.1,10.0.0.2) ;;
  corrupt)
    netem=(--netem 'corrupt 2%')
    expect=SEND_ONLY,ACKNOWLEDGE,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_WRITE_FIRST
    retrans=(--expect-bad-icrc-from 10.0.0.1,10.0.0.2) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

out="$BUILD_DIR/lab-runs/interop-$group-$direction"
rm -rf "$out"
mkdir -p "$out"
[ -e "$BUILD_DIR/userspace-roce/lib/librdmacm.so.1" ] \
  || { echo "lab_interop: no runtime in $BUILD_DIR/userspace-roce/lib (build the project first)" >&2; exit 2; }
"$ROOT/scripts/make-certs.sh" "$BUILD_DIR/certs" >"$out/make-certs.log" 2>&1 \
  || { cat "$out/make-certs.log"; exit 1; }

guest="BUILD_DIR=$BUILD_DIR tests/lab_interop_guest.sh $group"
status=0
"$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 600 --capture "$out/wire.pcap" \
  "${runtimes[@]}" "${netem[@]}" \
  --server "$guest server" --client "$guest client" || status=1
for role in server client; do
  echo "--- $role ($(sed -n "s/^${role}_runtime=//p" "$out/lab-info" 2>/dev/null || echo ?)):"
  grep -E "^(interop: |  \| )" "$out/$role/cmd.log" 2>/dev/null | sed 's/^/  /' || echo "  (no log)"
done

echo "--- the wire ($out/wire.pcap):"
if /usr/bin/python3 "$ROOT/tests/tools/roce_wire_check.py" "$out/wire.pcap" --min-packets 100 \
     --expect "$expect" "${retrans[@]}" --json "$out/wire-check.json" >"$out/wire-check.log" 2>&1; then
  grep -E "^(ICRC|corrupted|retransmissions|result)" "$out/wire-check.log" | sed 's/^/  /'
else
  cat "$out/wire-check.log"
  echo "lab_interop: the wire check failed ($out/wire-check.log)"
  status=1
fi
[ $status -eq 0 ] && echo "lab_interop: $group $direction: OK"
exit $status
