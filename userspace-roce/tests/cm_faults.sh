#!/usr/bin/env bash
# uroce_cm_faults: the CM's own retransmissions, on the wire. The runtime's test hook
# UROCE_CM_DROP=MSG drops the first transmission of that CM message in the process that
# sends it, before it reaches the wire. A REQ, REP or DREQ is sent again when the CM's
# timer runs out (the kernel's arithmetic: 2 x 1024 ms packet life + 4096 ms response
# time = 6144 ms on the active side, 4096 ms on the passive side); an RTU is sent again
# when the REP it answers comes again. For each of REQ, REP, RTU and DREQ, a
# pair of Debian's programs runs with the hook on the side that sends that message, while
# tcpdump records the pair:
#   - REQ, REP, RTU: rping -v -V -C 5 (the client sends REQ and RTU, the server the REP)
#   - DREQ: ucmatose -C 5, whose server disconnects first and then waits for its
#     DISCONNECTED event. (rping's client disconnects and destroys its id at once; as in
#     the kernel, whose cm_destroy_id stops resending a DREQ, a lost DREQ is then never
#     resent, and the peer learns of the end only from its own QP.)
# and the test asserts:
#   - both sides exit 0 with their data: the connection forms and closes
#   - the sending side says on stderr that the hook dropped the first one
#   - the capture has the message (the one there is the second transmission), and at
#     least 3 s lie between it and what it follows: a timer's wait, not an immediate
#     answer. A REQ follows the client's start (it is the first packet), a REP the first
#     REQ, a DREQ the packet before it; an RTU answers a REP, so it follows the first REP:
#     the passive side sends its REP again when no RTU comes (its timer), and the RTU
#     answers that one
#   - for the lost RTU, that REP sent again: a ConnectReply twice with one transaction ID
#   - roce_wire_check.py: every packet decodes (tshark: RRoCE and CM, nothing malformed),
#     every ICRC is right
# Addresses 127.0.190.1 (server) and 127.0.190.2 (client), outside 127.0.0.x; RDMA CM
# ports 18990-18993. Needs root and tcpdump (else 77: skipped; under CI=true a failure,
# lib.sh's t_skip), tshark and python3-scapy. Logs and captures in
# $BUILD_DIR/userspace-roce/test-out/uroce_cm_faults/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_cm_faults
can_capture || t_skip "$NO_CAPTURE" "$NO_CAPTURE_HOW"
for tool in rping ucmatose stdbuf tshark; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed (rdmacm-utils, coreutils, tshark: scripts/install-deps.sh)"; t_finish; }
done
need_rdmacm
S_ADDR=127.0.190.1 C_ADDR=127.0.190.2
LB=(stdbuf -oL)
GAP_MIN=3   # seconds: below the CM's 4096 ms timer, far above an immediate answer
declare -A CM_NAME=([req]=ConnectRequest [rep]=ConnectReply [rtu]=ReadyToUse [dreq]=DisconnectRequest)
declare -A CM_ATTR=([req]=0x0010 [rep]=0x0013 [rtu]=0x0014 [dreq]=0x0015)
# What the message on the wire is timed from: the first frame of that attribute ID
# (REQ 0x0010, REP 0x0013), "start" (the client's start), or "previous" (the frame before).
declare -A CM_AFTER=([req]=start [rep]=0x0010 [rtu]=0x0013 [dreq]=previous)

# drop_case MSG SIDE PORT: one pair (rping; ucmatose for dreq) with UROCE_CM_DROP=MSG on
# SIDE (server|client).
drop_case() {
  local msg=$1 side=$2 port=$3 name="drop-$1"
  local s_env=() c_env=()
  [ "$side" = server ] && s_env=(env "UROCE_CM_DROP=$msg") || c_env=(env "UROCE_CM_DROP=$msg")
  local pcap="$OUT/$name.pcap"
  capture_start "$pcap" "udp port 4791 and (host $S_ADDR or host $C_ADDR)" || return
  local what
  if [ "$msg" = dreq ]; then
    SERVER=("${LB[@]}" "${s_env[@]}" "$RUNTIME" -- ucmatose -b "$S_ADDR" -p "$port" -C 5)
    CLIENT=("${LB[@]}" "${c_env[@]}" "$RUNTIME" --addr "$C_ADDR" -- ucmatose -s "$S_ADDR" -p "$port" -C 5)
    cm_pair "$name" "$S_ADDR" 'RDMA_CM_EVENT_REJECTED, error: 8'
    capture_stop || return
    what="UROCE_CM_DROP=$msg on the $side: ucmatose -C 5"
    check "$what: server, data and disconnect" 0 "$SRC" "$OUT/$name-server.log" '^data transfers complete' '^disconnected' 'return status 0'
    check "$what: client, data and disconnect" 0 "$CRC" "$OUT/$name-client.log" '^data transfers complete' 'return status 0'
  else
    SERVER=("${LB[@]}" "${s_env[@]}" "$RUNTIME" -- rping -s -v -V -C 5 -a "$S_ADDR" -p "$port")
    CLIENT=("${LB[@]}" "${c_env[@]}" "$RUNTIME" --addr "$C_ADDR" -- rping -c -v -V -C 5 -a "$S_ADDR" -p "$port")
    cm_pair "$name" "$S_ADDR" 'RDMA_CM_EVENT_REJECTED, error 8'
    capture_stop || return
    what="UROCE_CM_DROP=$msg on the $side: rping -v -V -C 5"
    check "$what: server, 5 pings" 0 "$SRC" "$OUT/$name-server.log" '^server ping data: rdma-ping-4: '
    check "$what: client, 5 pings" 0 "$CRC" "$OUT/$name-client.log" '^ping data: rdma-ping-4: '
  fi
  expect_lines "$what: the $side's hook" "$OUT/$name-$side.log" "UROCE_CM_DROP: dropped the first $msg " \
    && pass "$what: the $side's hook dropped the first $msg: $(grep -m1 'UROCE_CM_DROP: dropped' "$OUT/$name-$side.log")"

  # The message on the wire, and the wait before it.
  local first
  # The first frame with the message's attribute ID, and the time since what it follows
  # (CM_AFTER; the client's start is CLIENT_T0).
  first=$(tshark -r "$pcap" -n -T fields -e frame.number -e frame.time_epoch -e ip.src \
            -e infiniband.mad.attributeid -e infiniband.mad.transactionid 2>"$OUT/$name-tshark.err" |
          awk -F'\t' -v attr="${CM_ATTR[$msg]}" -v after="${CM_AFTER[$msg]}" -v t0="$CLIENT_T0" '
            BEGIN { prev = t0; ref = "the client started" }
            tolower($4) == attr {
              if (after != "start" && ref == "the client started") exit  # nothing to follow
              printf "%s %s %s %.3f %s\n", $1, $3, $5, $2 - prev, ref; exit
            }
            after == "previous" || (tolower($4) == after && !seen++) { prev = $2; ref = "frame " $1 }')
  if [ -z "$first" ]; then
    fail "$what: no ${CM_NAME[$msg]} on the wire after what it follows ($pcap): it was never sent again"
  else
    local frame src tid gap ref
    read -r frame src tid gap ref <<<"$first"
    if awk -v g="$gap" -v m=$GAP_MIN 'BEGIN { exit !(g >= m) }'; then
      pass "$what: the ${CM_NAME[$msg]} was sent again (frame $frame from $src, transaction ID $tid), $gap s after $ref"
    else
      fail "$what: the ${CM_NAME[$msg]} on the wire (frame $frame from $src) came $gap s after $ref, under $GAP_MIN s: no timer's wait, so not the retransmission of a lost one"
    fi
  fi
  local args=(--expect "${CM_NAME[$msg]}")
  [ "$msg" = rtu ] && args+=(--expect-cm-retransmission ConnectReply)
  wire_check "$what: wire: RRoCE and CM decode, ICRCs right, ${args[*]}" "$pcap" "${args[@]}"
}
drop_case req client 18990
drop_case rep server 18991
drop_case rtu client 18992
drop_case dreq server 18993
t_finish
