#!/usr/bin/env bash
# Lesson 03 smoke test: runs the real server and client on Soft-RoCE and checks what they
# print and how they exit.
#
#   smoke.sh local               both sides on this host (its own IPv4 address): the
#                                default run, a run that wraps the ring many times with
#                                messages above the path MTU (credit READs), the RNR
#                                demonstration, a rejected client, usage errors, nobody
#                                listening, a client that vanishes mid-run
#   smoke.sh server              the server side for a run between two hosts
#   smoke.sh client SERVER_IP    the client side; if tcpdump is here and we are root, it
#                                also records the wire
#   smoke.sh check-capture PCAP DIR   check a capture of the pair run (DIR: its logs)
#
# Environment: BUILD_DIR (default <repo>/build), SMOKE_OUT (logs; default $LAB_OUT or a
# new temporary directory), SMOKE_PORT (default 7472). Exit 0 only if every check passed.
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/lessons/03-write-with-imm"
: "${SMOKE_OUT:=${LAB_OUT:-$(mktemp -d /tmp/smoke03.XXXXXX)}}"
: "${SMOKE_PORT:=7472}"
CHECK_CAPTURE="$ROOT/tests/tools/roce_capture.py"
mkdir -p "$SMOKE_OUT"
SMOKE_NAME="lesson 03"
source "$ROOT/scripts/smoke-lib.sh"

READY="step 4: wait for CONNECT_REQUEST"   # the server listens
# The runs, in order, for both local and pair: NAME|SERVER ARGS|CLIENT ARGS
RUNS=(
  "basic||-n 10"
  "wrap|-s 8192 --slots 4|-n 40 -s 5000"
  "rnr|--no-recv|-n 2"
)

# check_run NAME SERVER_RC CLIENT_RC: what each run must print (either side may be "-":
# not run here).
check_run() {
  local name=$1 src=$2 crc=$3 s="$SMOKE_OUT/$1-server.log" c="$SMOKE_OUT/$1-client.log"
  case $name in
    basic)
      [ "$src" = - ] || check "basic: server" 0 "$src" "$s" "step 6: post 8 RECVs" \
        "imm_data=7 -> slot 7 holds message 8 \\(32 bytes\\)" "imm_data=1 -> slot 1 holds message 10" "server: 10 message\\(s\\) received"
      [ "$crc" = - ] || check "basic: client (10 x 32 B, 8 slots)" 0 "$crc" "$c" \
        "step 7: private data: ring=0x[0-9a-f]+ rkey=0x[0-9a-f]{8} slot_size=64 slots=8" "client: 10 message\\(s\\)" ;;
    wrap)
      [ "$src" = - ] || check "wrap: server" 0 "$src" "$s" "slot 3 holds message 40 \\(5000 bytes\\)" "server: 40 message\\(s\\)"
      [ "$crc" = - ] || check "wrap: client (40 x 5000 B through 4 slots: credit READs)" 0 "$crc" "$c" \
        "all 4 slots in flight; READ the server's consumed counter" "client: 40 message\\(s\\)" ;;
    rnr)
      [ "$src" = - ] || check "rnr: server (no RECV posted)" 0 "$src" "$s" "client rnr_retry=1" "slot 0 untouched"
      [ "$crc" = - ] || check "rnr: client (RNR NAK, then IBV_WC_RNR_RETRY_EXC_ERR)" 1 "$crc" "$c" \
        "status=13 \\(RNR retry counter exceeded\\)" "IBV_WC_RNR_RETRY_EXC_ERR\\): no RECV was posted on the server" ;;
  esac
}

role_local() {
  need_binaries "$BIN"; need_cm_runtime
  local ip entry name sargs cargs spid src crc p=$SMOKE_PORT
  ip=$(cm_server_ipv4)
  [ -n "$ip" ] || { echo "smoke: this host has no global IPv4 address for RDMA CM" >&2; exit 2; }
  echo "smoke: lesson 03, both sides on this host ($ip); logs in $SMOKE_OUT"
  for entry in "${RUNS[@]}"; do
    IFS='|' read -r name sargs cargs <<<"$entry"
    # shellcheck disable=SC2086
    timeout 120 "${SERVER_ENV[@]}" "$BIN/server" -p "$p" --accept-timeout 30 $sargs >"$SMOKE_OUT/$name-server.log" 2>&1 &
    spid=$!
    server_ready "$name" "$SMOKE_OUT/$name-server.log" "$READY"
    set +e
    # shellcheck disable=SC2086
    timeout 120 "$BIN/client" "$ip" -p "$p" $cargs >"$SMOKE_OUT/$name-client.log" 2>&1; crc=$?
    wait $spid; src=$?
    set -e
    check_run "$name" $src $crc
    p=$((p + 1))
  done

  # A client whose messages do not fit the slots: the server rejects it, with the reason.
  timeout 60 "${SERVER_ENV[@]}" "$BIN/server" -p "$p" --accept-timeout 30 >"$SMOKE_OUT/toobig-server.log" 2>&1 &
  spid=$!
  server_ready "too big" "$SMOKE_OUT/toobig-server.log" "$READY"
  set +e
  timeout 60 "$BIN/client" "$ip" -p "$p" -s 128 >"$SMOKE_OUT/toobig-client.log" 2>&1; crc=$?
  wait $spid; src=$?
  set -e
  check "too big: the server rejects" 1 $src "$SMOKE_OUT/toobig-server.log" "rejecting the connection: messages of 128 bytes do not fit 64-byte slots"
  check "too big: the client says why" 1 $crc "$SMOKE_OUT/toobig-client.log" "REJECTED .*the server says: messages of 128 bytes do not fit 64-byte slots"

  # A client that vanishes after connecting: the server's wait for the next message ends.
  p=$((p + 1))
  timeout 60 "${SERVER_ENV[@]}" "$BIN/server" -p "$p" -t 3 --accept-timeout 30 >"$SMOKE_OUT/vanished-server.log" 2>&1 &
  spid=$!
  server_ready "vanished client" "$SMOKE_OUT/vanished-server.log" "$READY"
  # The client would write 1000 messages; it is killed as soon as its first one is
  # acknowledged. Its process exit makes the kernel send a DisconnectRequest.
  "$BIN/client" "$ip" -p "$p" -n 1000000 >"$SMOKE_OUT/vanished-client.log" 2>&1 &
  local cpid=$!
  wait_for_line "$SMOKE_OUT/vanished-client.log" "message 2/1000000" 60 \
    || fail "vanished client: its second message never came (log: $SMOKE_OUT/vanished-client.log)"
  kill -9 $cpid 2>/dev/null || fail "vanished client: the client had exited before it was killed"
  set +e; wait $cpid 2>/dev/null; set -e
  set +e; wait $spid; src=$?; set -e
  check "vanished client: the server stops waiting and says so" 1 $src "$SMOKE_OUT/vanished-server.log" \
        "got RDMA_CM_EVENT_DISCONNECTED|no completion for message [0-9]+ .* within 3.0 s"

  # --- usage and nobody listening ------------------------------------------------
  set +e
  "$BIN/server" --slots 0 >"$SMOKE_OUT/usage.log" 2>&1; rc=$?
  set -e
  check "usage: server --slots 0" 2 $rc "$SMOKE_OUT/usage.log" "not in range"
  set +e
  "$BIN/server" --rnr-retry 9 >"$SMOKE_OUT/usage2.log" 2>&1; rc=$?
  set -e
  check "usage: server --rnr-retry 9" 2 $rc "$SMOKE_OUT/usage2.log" "not in range"
  cm_host_up "nobody listening" "$READY" "$BIN/server" -p $((p + 2)) --accept-timeout 100
  set +e
  timeout 60 "$BIN/client" "$ip" -p $((p + 1)) --connect-timeout 1 >"$SMOKE_OUT/nolistener.log" 2>&1; rc=$?
  set -e
  cm_host_down "nobody listening"
  check "nobody listening" 1 $rc "$SMOKE_OUT/nolistener.log" "nobody listens on $ip:$((p + 1)) after [0-9]+ attempts"
  stop_summary "SIGTERM: the server stops with its summary line" "$READY" \
    "^server: 0 message\\(s\\) received through 8 slots" "${SERVER_ENV[@]}" "$BIN/server" -p $((p + 20)) --accept-timeout 100
}

role_server() {
  need_binaries "$BIN"; need_cm_runtime
  echo "smoke: lesson 03 server role; logs in $SMOKE_OUT"
  local entry name sargs cargs rc
  for entry in "${RUNS[@]}"; do
    IFS='|' read -r name sargs cargs <<<"$entry"
    set +e
    # shellcheck disable=SC2086
    timeout 150 "${SERVER_ENV[@]}" "$BIN/server" -p "$SMOKE_PORT" --accept-timeout 120 $sargs >"$SMOKE_OUT/$name-server.log" 2>&1; rc=$?
    set -e
    check_run "$name" $rc -
  done
}

role_client() {
  local server=${1:?usage: smoke.sh client SERVER_IP}
  need_binaries "$BIN"; need_cm_runtime
  echo "smoke: lesson 03 client role against $server; logs in $SMOKE_OUT"
  start_capture "$server" "udp port 4791"
  local entry name sargs cargs rc
  for entry in "${RUNS[@]}"; do
    IFS='|' read -r name sargs cargs <<<"$entry"
    set +e
    # shellcheck disable=SC2086
    timeout 150 "$BIN/client" "$server" -p "$SMOKE_PORT" --connect-timeout 120 $cargs >"$SMOKE_OUT/$name-client.log" 2>&1; rc=$?
    set -e
    check_run "$name" - $rc
  done
  if [ -n "$CAPTURE_PID" ]; then
    stop_capture
    echo "smoke: client-side capture in $SMOKE_OUT/client-side.pcap (checked on the host against the server's log)"
  fi
}

# role_check_capture PCAP DIR: the CM exchange, WRITE_WITH_IMM (ONLY, and FIRST/MIDDLE/
# LAST_WITH_IMMEDIATE above the MTU), the credit READs, the RNR NAKs, and every RETH
# inside the region the server registered (its logs in DIR).
role_check_capture() {
  local pcap=$1 dir=$2 rc logs=() log
  [ -d "$dir/server" ] && dir="$dir/server"   # a lab run's output: the server guest's logs
  for log in "$dir"/*-server.log; do logs+=(--server-log "$log"); done
  set +e
  python3 "$CHECK_CAPTURE" check "$pcap" \
    --require "ConnectRequest,ConnectReply,ReadyToUse,RDMA_WRITE_ONLY_WITH_IMMEDIATE,RDMA_WRITE_FIRST,RDMA_WRITE_MIDDLE,RDMA_WRITE_LAST_WITH_IMMEDIATE,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_ONLY,ACK,RNR_NAK,DisconnectRequest,DisconnectReply" \
    "${logs[@]}" >"$SMOKE_OUT/capture-check.log" 2>&1
  rc=$?
  set -e
  check "capture: CM, WRITE_WITH_IMM, credit READs, RNR NAK, RETHs inside the ring ($pcap)" 0 $rc \
        "$SMOKE_OUT/capture-check.log" "capture: OK"
}

smoke_main "$@"
