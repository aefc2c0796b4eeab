#!/usr/bin/env bash
# Lesson 01 smoke test: runs the real server and client on Soft-RoCE and checks what they
# print and how they exit.
#
#   smoke.sh local               both sides on this host (one Soft-RoCE device), plus the
#                                bad-input cases: usage, no device, unreachable server,
#                                garbage/short/wrong-version/oversized exchange messages,
#                                a peer that vanishes on either side
#   smoke.sh server              the server side for a run between two hosts; serves the
#                                client role's three runs (counted, large, interactive)
#   smoke.sh client SERVER_IP    the client side; if tcpdump is here and we are root, it
#                                also records the wire and checks the RoCE opcodes
#   smoke.sh check-capture PCAP DIR   check a capture against the client role's logs in DIR
#
# Environment: BUILD_DIR (default <repo>/build), SMOKE_OUT (logs; default $LAB_OUT or a
# new temporary directory), SMOKE_PORT (default 18515). Exit 0 only if every check passed.
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/lessons/01-verbs-send-recv"
: "${SMOKE_OUT:=${LAB_OUT:-$(mktemp -d /tmp/smoke01.XXXXXX)}}"
: "${SMOKE_PORT:=18515}"
CHECK_CAPTURE="$ROOT/tests/tools/roce_capture.py"
FAKE_PEER="$ROOT/tests/tools/fake_peer.py"
mkdir -p "$SMOKE_OUT"

SMOKE_NAME="lesson 01"
source "$ROOT/scripts/smoke-lib.sh"

# run_pair NAME PORT "SERVER ARGS" "CLIENT ARGS" [STDIN]: both sides on this host.
# Sets SERVER_RC, CLIENT_RC; logs in $SMOKE_OUT/NAME-{server,client}.log
run_pair() {
  local name=$1 port=$2 sargs=$3 cargs=$4 input=${5-}
  # The server starts first; the client retries its TCP connect until the server
  # listens, so nothing here waits for the server with a sleep.
  timeout 60 "$BIN/server" -p "$port" $sargs >"$SMOKE_OUT/$name-server.log" 2>&1 &
  local spid=$!
  set +e
  if [ -n "$input" ]; then
    printf '%s' "$input" | timeout 60 "$BIN/client" 127.0.0.1 -p "$port" $cargs >"$SMOKE_OUT/$name-client.log" 2>&1
  else
    timeout 60 "$BIN/client" 127.0.0.1 -p "$port" $cargs </dev/null >"$SMOKE_OUT/$name-client.log" 2>&1
  fi
  CLIENT_RC=$?
  wait "$spid"; SERVER_RC=$?
  set -e
}

# run_server_against_fake NAME PORT MODE "SERVER ARGS" [GID_IP]: a misbehaving TCP peer.
# Its GID carries GID_IP, by default this host's IPv4 address, so that RTR can resolve it
# (ARP) as for a real peer.
run_server_against_fake() {
  local name=$1 port=$2 mode=$3 sargs=$4 ip=${5:-}
  [ -n "$ip" ] || ip=$(local_ipv4)
  timeout 60 "$BIN/server" -p "$port" $sargs >"$SMOKE_OUT/$name-server.log" 2>&1 &
  local spid=$!
  set +e
  timeout 60 python3 "$FAKE_PEER" "$mode" 127.0.0.1 "$port" --gid-ip "${ip:-127.0.0.1}" >"$SMOKE_OUT/$name-peer.log" 2>&1
  wait "$spid"; SERVER_RC=$?
  set -e
}

OK_SERVER='server: [0-9]+ message\(s\) received, verified and echoed'
OK_CLIENT='client: [0-9]+ message\(s\) of up to [0-9]+ bytes sent, echoed and verified'

# gid_cases PORT: what RTR does with the GIDs (kernel Soft-RoCE). PORT+11..13 are used.
gid_cases() {
  local p=$1
  # GID kinds: both sides must use the same kind. Server on GID[1] (IPv4, ::ffff:a.b.c.d),
  # client on GID[0] (IPv6 link-local): RTR fails with EINVAL on both sides, at once.
  run_pair gid-mismatch $((p + 11)) "-g 1" "-g 0 -n 1"
  check "GID kinds differ: the server's RTR fails with EINVAL" 1 $SERVER_RC "$SMOKE_OUT/gid-mismatch-server.log" \
        "ibv_modify_qp\(INIT->RTR\) failed: EINVAL" "remedy: EINVAL usually means our GID and the peer's are of different kinds"
  check "GID kinds differ: the client's RTR fails with EINVAL" 1 $CLIENT_RC "$SMOKE_OUT/gid-mismatch-client.log" \
        "ibv_modify_qp\(INIT->RTR\) failed: EINVAL"
  # Both on GID[0]: RoCE v2 over IPv6 works as well as over IPv4.
  run_pair gid-ipv6 $((p + 12)) "-g 0" "-g 0 -n 2"
  check "both sides on the IPv6 GID[0]: RoCE v2 over IPv6" 0 $CLIENT_RC "$SMOKE_OUT/gid-ipv6-client.log" \
        "GID\[0\] fe80:" "client: 2 message"
  # A peer whose GID is an address nobody has: RTR cannot resolve its MAC (no ARP
  # answer), and fails with ETIMEDOUT.
  local ip ghost
  ip=$(local_ipv4)
  ghost="${ip%.*}.$(( ${ip##*.} == 99 ? 98 : 99 ))"
  run_server_against_fake ghost-gid $((p + 13)) silent-hello "" "$ghost"
  check "a peer GID nobody answers ARP for ($ghost): RTR fails with ETIMEDOUT" 1 $SERVER_RC \
        "$SMOKE_OUT/ghost-gid-server.log" "ibv_modify_qp\(INIT->RTR\) failed: ETIMEDOUT"
}

role_local() {
  need_binaries "$BIN"
  local p=$SMOKE_PORT
  echo "smoke: lesson 01, both sides on this host; logs in $SMOKE_OUT"

  run_pair basic $p "" "-n 10 -s 64"
  check "basic: server" 0 $SERVER_RC "$SMOKE_OUT/basic-server.log" "$OK_SERVER" \
        'GID\[[0-9]+\] .* chosen' 'step 12: send READY' 'step 14: goodbye received'
  check "basic: client (10 x 64 B)" 0 $CLIENT_RC "$SMOKE_OUT/basic-client.log" "client: 10 message" \
        'step 10: sending HELLO: QPN 0x[0-9a-f]{6} PSN 0x[0-9a-f]{6}' 'RTR -> RTS' \
        'step 13: echo of message 10 verified'

  run_pair large $((p + 1)) "-s 8192" "-n 3 -s 5000"
  check "large: server" 0 $SERVER_RC "$SMOKE_OUT/large-server.log" "server: 3 message" "got message 3 \(5000 bytes\)"
  check "large: client (3 x 5000 B, above the path MTU)" 0 $CLIENT_RC "$SMOKE_OUT/large-client.log" "client: 3 message"

  run_pair interactive $((p + 2)) "" "--interactive" $'hello rdma\nsecond line\n'
  check "interactive: server" 0 $SERVER_RC "$SMOKE_OUT/interactive-server.log" "server: 2 message" "'hello rdma'"
  check "interactive: client" 0 $CLIENT_RC "$SMOKE_OUT/interactive-client.log" \
        "server acknowledged #1: echoed 10 bytes 'hello rdma'" "server acknowledged #2"

  # --- bad input ---------------------------------------------------------------
  set +e
  "$BIN/client" >"$SMOKE_OUT/usage.log" 2>&1; rc=$?
  set -e
  check "usage: client without a server address" 2 $rc "$SMOKE_OUT/usage.log" "server is required" "Usage:"
  set +e
  "$BIN/server" -s 0 >"$SMOKE_OUT/usage2.log" 2>&1; rc=$?
  set -e
  check "usage: server -s 0" 2 $rc "$SMOKE_OUT/usage2.log" "not in range"

  set +e
  timeout 30 "$BIN/server" -d no_such_dev -p $((p + 3)) >"$SMOKE_OUT/nodev.log" 2>&1; rc=$?
  set -e
  check "no such device" 1 $rc "$SMOKE_OUT/nodev.log" "RDMA device 'no_such_dev' not found; devices present: " "remedy: "

  set +e
  timeout 30 "$BIN/client" 127.0.0.1 -p $((p + 4)) --connect-timeout 1 >"$SMOKE_OUT/unreachable.log" 2>&1; rc=$?
  set -e
  check "unreachable server" 1 $rc "$SMOKE_OUT/unreachable.log" "could not connect to 127.0.0.1:$((p + 4)) after [0-9]+ attempts" "remedy: nothing listens on TCP port $((p + 4)) there"

  run_server_against_fake garbage $((p + 5)) garbage ""
  check "garbage exchange message" 1 $SERVER_RC "$SMOKE_OUT/garbage-server.log" "malformed exchange message: magic is 47 45 54 20"
  run_server_against_fake truncated $((p + 6)) truncated ""
  check "truncated exchange message" 1 $SERVER_RC "$SMOKE_OUT/truncated-server.log" "closed the connection after 8 of 36 bytes"
  run_server_against_fake version $((p + 7)) version ""
  check "wrong-version exchange message" 1 $SERVER_RC "$SMOKE_OUT/version-server.log" "exchange message has version 9, this build speaks 1"
  run_server_against_fake oversized $((p + 8)) oversized ""
  check "oversized exchange message" 1 $SERVER_RC "$SMOKE_OUT/oversized-server.log" "HELLO with a body of 2147483647 bytes"

  # A client that completes the exchange and then never sends: the server times out.
  run_server_against_fake vanished-client $((p + 9)) silent-hello "-t 2"
  check "vanished client: the server times out" 1 $SERVER_RC "$SMOKE_OUT/vanished-client-server.log" \
        "no completion for message 1 from the client within 2.0 s"

  # GIDs and address resolution: what the kernel's RDMA core does at RTR. The userspace
  # runtime has one GID per process and resolves no MAC address, so these three cases
  # run on kernel Soft-RoCE only.
  if [ "$SMOKE_RUNTIME" = kernel ]; then gid_cases $p; else
    echo "smoke: skipping the GID and ARP cases: the userspace runtime has one GID and does no ARP"; fi

  # A server that dies mid-run: the client's next SEND is never ACKed.
  local fifo_dir fifo
  fifo_dir=$(mktemp -d /tmp/smoke01-fifo.XXXXXX)   # not in SMOKE_OUT: 9p shares hold no FIFOs
  fifo="$fifo_dir/client.stdin"
  mkfifo "$fifo"
  # No `timeout` wrapper here: the kill below must hit the server itself.
  "$BIN/server" -p $((p + 10)) --accept-timeout 30 >"$SMOKE_OUT/vanished-server-server.log" 2>&1 &
  local spid=$!
  timeout 60 "$BIN/client" 127.0.0.1 -p $((p + 10)) --interactive <"$fifo" >"$SMOKE_OUT/vanished-server-client.log" 2>&1 &
  local cpid=$!
  exec 7>"$fifo"
  echo "first line" >&7
  wait_for_line "$SMOKE_OUT/vanished-server-client.log" "server acknowledged #1" 60 \
    || fail "vanished server: the first line was never echoed (log: $SMOKE_OUT/vanished-server-client.log)"
  # The server vanishes without a word.
  kill -9 "$spid" 2>/dev/null || fail "vanished server: the server had exited before it was killed"
  set +e; wait "$spid" 2>/dev/null; set -e
  echo "second line" >&7
  exec 7>&-
  set +e
  wait "$cpid"; rc=$?
  set -e
  rm -rf "$fifo_dir"
  check "vanished server: the client's SEND fails" 1 $rc "$SMOKE_OUT/vanished-server-client.log" \
        "completion for SEND of message 2 failed: status 12 \(transport retry counter exceeded\)|no completion for (SEND|echo) of message 2"
}

role_server() {
  need_binaries "$BIN"
  echo "smoke: lesson 01 server role; logs in $SMOKE_OUT"
  local name args
  # The client role runs these three in the same order.
  for name in basic large interactive; do
    set +e
    timeout 120 "$BIN/server" -p "$SMOKE_PORT" -s 8192 --accept-timeout 90 >"$SMOKE_OUT/$name-server.log" 2>&1
    rc=$?
    set -e
    case $name in
      basic) check "server: basic" 0 $rc "$SMOKE_OUT/$name-server.log" "$OK_SERVER" "server: 10 message" ;;
      large) check "server: large" 0 $rc "$SMOKE_OUT/$name-server.log" "$OK_SERVER" "got message 3 \(5000 bytes\)" ;;
      interactive) check "server: interactive" 0 $rc "$SMOKE_OUT/$name-server.log" "server: 2 message" ;;
    esac
  done
}

role_client() {
  local server=${1:?usage: smoke.sh client SERVER_IP}
  need_binaries "$BIN"
  echo "smoke: lesson 01 client role against $server; logs in $SMOKE_OUT"
  start_capture "$server" "udp port 4791 or tcp port $SMOKE_PORT"
  local c="timeout 120 $BIN/client $server -p $SMOKE_PORT --connect-timeout 60"
  set +e
  $c -n 10 -s 64 </dev/null >"$SMOKE_OUT/basic-client.log" 2>&1; rc=$?
  set -e
  check "client: basic (10 x 64 B)" 0 $rc "$SMOKE_OUT/basic-client.log" "$OK_CLIENT" "client: 10 message" \
        'step 10: sending HELLO: QPN 0x[0-9a-f]{6} PSN 0x[0-9a-f]{6}'
  set +e
  $c -n 3 -s 5000 </dev/null >"$SMOKE_OUT/large-client.log" 2>&1; rc=$?
  set -e
  check "client: large (3 x 5000 B, above the path MTU)" 0 $rc "$SMOKE_OUT/large-client.log" "client: 3 message"
  set +e
  printf 'hello rdma\nsecond line\n' | $c --interactive >"$SMOKE_OUT/interactive-client.log" 2>&1; rc=$?
  set -e
  check "client: interactive" 0 $rc "$SMOKE_OUT/interactive-client.log" "server acknowledged #2"
  if [ -n "$CAPTURE_PID" ]; then
    stop_capture
    role_check_capture "$SMOKE_OUT/client-side.pcap" "$SMOKE_OUT"
  fi
}

# role_check_capture PCAP DIR: tshark must decode RoCE with the opcodes this lesson
# produces (SEND ONLY and ACK; SEND FIRST/MIDDLE/LAST from the run above the path MTU),
# and each run's first SEND must carry the PSN its side logged (client logs in DIR).
role_check_capture() {
  local pcap=$1 dir=$2
  [ -d "$dir/client" ] && dir="$dir/client"   # a lab run's output: the client guest's logs
  set +e
  python3 "$CHECK_CAPTURE" check "$pcap" --port "$SMOKE_PORT" \
    --require "SEND_ONLY,ACK,SEND_FIRST,SEND_MIDDLE,SEND_LAST" \
    --client-log "$dir/basic-client.log" --client-log "$dir/large-client.log" \
    >"$SMOKE_OUT/capture-check.log" 2>&1
  rc=$?
  set -e
  check "capture: RRoCE opcodes and first PSN ($pcap)" 0 $rc "$SMOKE_OUT/capture-check.log" "capture: OK"
}

smoke_main "$@"
