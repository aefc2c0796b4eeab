#!/usr/bin/env bash
# Lesson 02 smoke test: runs the real server and client on Soft-RoCE and checks what they
# print and how they exit.
#
#   smoke.sh local               both sides on this host (its own IPv4 address), plus the
#                                bad-input cases: a bad rkey (both QPs end in ERR), short /
#                                wrong-version / no private data (rejected), a READ range
#                                past the buffer, a client that leaves early, no READ
#                                resources asked for or granted (the READ never leaves the
#                                client), usage errors, nobody listening, an address no
#                                RDMA device reaches
#   smoke.sh server              the server side for a run between two hosts: serves the
#                                client role's runs, then ends
#   smoke.sh client SERVER_IP    the client side; if tcpdump is here and we are root, it
#                                also records the wire and checks it
#   smoke.sh check-capture PCAP DIR   check a capture against the logs in DIR (a capture
#                                of the pair run; DIR holds the server's logs)
#
# Environment: BUILD_DIR (default <repo>/build), SMOKE_OUT (logs; default $LAB_OUT or a
# new temporary directory), SMOKE_PORT (default 7471). Exit 0 only if every check passed.
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/lessons/02-cm-write-read"
: "${SMOKE_OUT:=${LAB_OUT:-$(mktemp -d /tmp/smoke02.XXXXXX)}}"
: "${SMOKE_PORT:=7471}"
CHECK_CAPTURE="$ROOT/tests/tools/roce_capture.py"
mkdir -p "$SMOKE_OUT"
SMOKE_NAME="lesson 02"
source "$ROOT/scripts/smoke-lib.sh"

READY="step 7: wait for CONNECT_REQUEST"   # the server listens
OK_CLIENT="client: wrote [0-9]+ bytes, read back [0-9]+ bytes .*verified"
# The runs of one client after another against a persistent server, in this order; the
# server and client roles use the same list on two hosts. NAME|CLIENT ARGS|EXIT|LOG LINE
SEQUENCE=(
  "large|-s 3000 --range 0:64|0|verified: 'client-wrote-thisrstu"
  "badrkey|-s 3000 --bad-rkey|0|refused rkey 0x[0-9a-f]+: NAK \\(remote access error\\) on the wire, IBV_WC_REM_ACCESS_ERR here; our QP is in ERR \\(ibv_query_qp\\)"
  "nordepth|--initiator-depth 0|1|no completion for RDMA_READ within .*: our QP's max_rd_atomic is 0, so our device never sent the READ"
  "short|--bad-private-data short|1|the server says: malformed CM private data: a connect body of 4 bytes; version 1 defines 8"
  "version|--bad-private-data version|1|the server says: malformed CM private data: version 9, this build speaks 1"
  "none|--bad-private-data none|1|the server says: malformed CM private data: all 56 bytes are zero"
  "range|--range 0:5000|1|--range 0:5000 reaches byte 5000 but the server advertised only 4096 bytes; nothing was posted"
  "early|--disconnect-early|0|leaving without writing"
  "after|--message still-serving|0|verified: 'still-serving'"
)

# run_sequence SERVER_IP: the client side of SEQUENCE; each case is checked at once.
run_sequence() {
  local entry name args want re rc
  for entry in "${SEQUENCE[@]}"; do
    IFS='|' read -r name args want re <<<"$entry"
    set +e
    # shellcheck disable=SC2086
    timeout 60 "$BIN/client" "$1" -p "$SMOKE_PORT" --connect-timeout 30 $args >"$SMOKE_OUT/$name-client.log" 2>&1
    rc=$?
    set -e
    check "persistent server, client $name ($args)" "$want" $rc "$SMOKE_OUT/$name-client.log" "$re"
  done
}

# check_persistent_server LOG RC: the server served every accepted client and rejected
# three; the bad rkey put its QP (and only that one) in ERR.
check_persistent_server() {
  check "persistent server: survived every client above" 0 "$2" "$1" \
        "server: 6 client\\(s\\) served, 3 rejected" "rejecting the connection: malformed CM private data: version 9" \
        "buffer after the client: 'still-serving'"
  if [ "$(grep -c "is in ERR: our device refused one of the client's requests" "$1")" -eq 1 ]; then
    pass "persistent server: the bad rkey put the server's own QP in ERR too (that connection only)"
  else
    fail "persistent server: expected exactly one QP in ERR, after the bad rkey (log: $1)"
  fi
}

# check_no_read_resources LOG RC: a server that grants no READ resources.
check_no_read_resources() {
  check "server --responder-resources 0: the client's READ never leaves its own QP" 1 "$2" "$1" \
        "QP dump: .*state=RTS .*max_rd_atomic=0 " \
        "no completion for RDMA_READ within .*: our QP's max_rd_atomic is 0, so our device never sent the READ"
}

role_local() {
  need_binaries "$BIN"; need_cm_runtime
  local ip p=$SMOKE_PORT rc
  ip=$(cm_server_ipv4)
  [ -n "$ip" ] || { echo "smoke: this host has no global IPv4 address for RDMA CM" >&2; exit 2; }
  echo "smoke: lesson 02, both sides on this host ($ip); logs in $SMOKE_OUT"

  # One server, one client: the default run.
  timeout 60 "${SERVER_ENV[@]}" "$BIN/server" -p "$p" --accept-timeout 30 >"$SMOKE_OUT/basic-server.log" 2>&1 &
  local spid=$!
  server_ready basic "$SMOKE_OUT/basic-server.log" "$READY"
  set +e
  timeout 60 "$BIN/client" "$ip" -p "$p" >"$SMOKE_OUT/basic-client.log" 2>&1; rc=$?
  wait $spid; local src=$?
  set -e
  check "basic: client" 0 $rc "$SMOKE_OUT/basic-client.log" "$OK_CLIENT" "step 10: private data: remote addr=0x[0-9a-f]+ rkey=0x[0-9a-f]{8} length=4096" \
        "WC: wr_id=1 status=0 opcode=RDMA_WRITE byte_len=17" "WC: wr_id=2 status=0 opcode=RDMA_READ byte_len=4096" "step 13: readback 'client-wrote-this'"
  check "basic: server" 0 $src "$SMOKE_OUT/basic-server.log" "step 9: rdma_accept; private data: addr=0x[0-9a-f]+ rkey=0x[0-9a-f]{8} length=4096" \
        "buffer after the client: 'client-wrote-this'" "server: 1 client\\(s\\) served"

  # A persistent server and a series of good and bad clients.
  SMOKE_PORT=$((p + 1))
  timeout 300 "${SERVER_ENV[@]}" "$BIN/server" -p "$SMOKE_PORT" --persistent --clients 6 --accept-timeout 120 >"$SMOKE_OUT/persistent-server.log" 2>&1 &
  spid=$!
  server_ready "persistent server" "$SMOKE_OUT/persistent-server.log" "$READY"
  run_sequence "$ip"
  set +e; wait $spid; rc=$?; set -e
  check_persistent_server "$SMOKE_OUT/persistent-server.log" $rc
  SMOKE_PORT=$p

  # A server that grants the client no READ resources: the CM carries the 0 to the
  # client, whose QP then may have no READ in flight.
  timeout 60 "${SERVER_ENV[@]}" "$BIN/server" -p $((p + 2)) --responder-resources 0 --accept-timeout 30 >"$SMOKE_OUT/noresp-server.log" 2>&1 &
  spid=$!
  server_ready "server --responder-resources 0" "$SMOKE_OUT/noresp-server.log" "$READY"
  set +e
  timeout 60 "$BIN/client" "$ip" -p $((p + 2)) --connect-timeout 30 >"$SMOKE_OUT/noresp-client.log" 2>&1; rc=$?
  wait $spid
  set -e
  check_no_read_resources "$SMOKE_OUT/noresp-client.log" $rc

  # --- usage and unreachable peers ----------------------------------------------
  set +e
  "$BIN/client" >"$SMOKE_OUT/usage.log" 2>&1; rc=$?
  set -e
  check "usage: client without a server address" 2 $rc "$SMOKE_OUT/usage.log" "server is required" "Usage:"
  set +e
  "$BIN/client" "$ip" --bad-private-data huge >"$SMOKE_OUT/usage2.log" 2>&1; rc=$?
  set -e
  check "usage: client --bad-private-data huge" 2 $rc "$SMOKE_OUT/usage2.log" "not in \\{short,version,none\\}|huge"
  set +e
  "$BIN/client" "$ip" --range 9:3 >"$SMOKE_OUT/usage3.log" 2>&1; rc=$?
  set -e
  check "usage: client --range 9:3" 2 $rc "$SMOKE_OUT/usage3.log" "--range '9:3' is not START:END with START < END"
  cm_host_up "nobody listening" "$READY" "$BIN/server" -p $((p + 6)) --accept-timeout 100
  set +e
  timeout 60 "$BIN/client" "$ip" -p $((p + 5)) --connect-timeout 2 >"$SMOKE_OUT/nolistener.log" 2>&1; rc=$?
  set -e
  cm_host_down "nobody listening"
  check "nobody listening for 2 s" 1 $rc "$SMOKE_OUT/nolistener.log" "nobody listens on $ip:$((p + 5)) after [0-9]+ attempts"
  stop_summary "SIGTERM: a persistent server stops with its summary line" "$READY" \
    "^server: 0 client\\(s\\) served, 0 rejected$" "${SERVER_ENV[@]}" "$BIN/server" -p $((p + 20)) --persistent --accept-timeout 100
  # An address on our subnet that nobody has: ARP gets no answer, so the CM cannot
  # resolve it to a device and a destination MAC.
  local ghost="${ip%.*}.$(( ${ip##*.} == 99 ? 98 : 99 ))"
  set +e
  timeout 60 "$BIN/client" "$ghost" -p "$p" -t 2 --connect-timeout 1 >"$SMOKE_OUT/ghost.log" 2>&1; rc=$?
  set -e
  check "address that nobody has ($ghost)" 1 $rc "$SMOKE_OUT/ghost.log" "got RDMA_CM_EVENT_ADDR_ERROR \\(status -110: ETIMEDOUT" "remedy: the address did not resolve to an RDMA device"
}

role_server() {
  need_binaries "$BIN"; need_cm_runtime
  echo "smoke: lesson 02 server role; logs in $SMOKE_OUT"
  local rc
  # First the default run (one client), then the sequence against a persistent server.
  set +e
  timeout 150 "${SERVER_ENV[@]}" "$BIN/server" -p "$SMOKE_PORT" --accept-timeout 120 >"$SMOKE_OUT/basic-server.log" 2>&1; rc=$?
  set -e
  check "server: basic" 0 $rc "$SMOKE_OUT/basic-server.log" "buffer after the client: 'client-wrote-this'"
  set +e
  # --clients 6: the six accepted clients of SEQUENCE (three are rejected), then exit.
  timeout 200 "${SERVER_ENV[@]}" "$BIN/server" -p "$SMOKE_PORT" --clients 6 --accept-timeout 120 >"$SMOKE_OUT/persistent-server.log" 2>&1; rc=$?
  set -e
  check_persistent_server "$SMOKE_OUT/persistent-server.log" $rc
}

role_client() {
  local server=${1:?usage: smoke.sh client SERVER_IP}
  need_binaries "$BIN"; need_cm_runtime
  echo "smoke: lesson 02 client role against $server; logs in $SMOKE_OUT"
  start_capture "$server" "udp port 4791"
  local rc
  set +e
  timeout 150 "$BIN/client" "$server" -p "$SMOKE_PORT" --connect-timeout 120 >"$SMOKE_OUT/basic-client.log" 2>&1; rc=$?
  set -e
  check "client: basic" 0 $rc "$SMOKE_OUT/basic-client.log" "$OK_CLIENT"
  run_sequence "$server"
  if [ -n "$CAPTURE_PID" ]; then
    stop_capture
    echo "smoke: client-side capture in $SMOKE_OUT/client-side.pcap (checked on the host against the server's log)"
  fi
}

# role_check_capture PCAP DIR: tshark must decode the CM exchange and the one-sided
# operations, and every RETH must name a buffer the server advertised (its logs in DIR).
role_check_capture() {
  local pcap=$1 dir=$2 rc logs=()
  local log
  [ -d "$dir/server" ] && dir="$dir/server"   # a lab run's output: the server guest's logs
  for log in "$dir"/*-server.log; do logs+=(--server-log "$log"); done
  set +e
  python3 "$CHECK_CAPTURE" check "$pcap" \
    --require "ConnectRequest,ConnectReply,ReadyToUse,ConnectReject,RDMA_WRITE_ONLY,RDMA_WRITE_FIRST,RDMA_WRITE_MIDDLE,RDMA_WRITE_LAST,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_READ_RESPONSE_MIDDLE,RDMA_READ_RESPONSE_LAST,RDMA_READ_RESPONSE_ONLY,ACK,NAK_REMOTE_ACCESS_ERROR,DisconnectRequest,DisconnectReply" \
    "${logs[@]}" >"$SMOKE_OUT/capture-check.log" 2>&1
  rc=$?
  set -e
  check "capture: CM, WRITE, READ, NAK, and RETHs inside the advertised buffers ($pcap)" 0 $rc \
        "$SMOKE_OUT/capture-check.log" "capture: OK"
}

smoke_main "$@"
