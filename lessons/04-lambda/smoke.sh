#!/usr/bin/env bash
# Lesson 04 smoke test: runs the real server and client on Soft-RoCE and checks what they
# print and how they exit.
#
#   smoke.sh local               both sides on this host (its own IPv4 address): every
#                                catalogue function and every example program, compared
#                                with fetching the data; every bad program refused with
#                                its own status while the server keeps serving; usage
#                                errors; nobody listening; no memory writable and executable
#   smoke.sh server              the server side for a run between two hosts
#   smoke.sh client SERVER_IP    the client side; if tcpdump is here and we are root, it
#                                also records the wire
#   smoke.sh check-capture PCAP DIR   check a capture of the pair run (DIR: its logs)
#
# Environment: BUILD_DIR (default <repo>/build), SMOKE_OUT (logs; default $LAB_OUT or a
# new temporary directory), SMOKE_PORT (default 7474). Exit 0 only if every check passed.
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/lessons/04-lambda"
: "${SMOKE_OUT:=${LAB_OUT:-$(mktemp -d /tmp/smoke04.XXXXXX)}}"
: "${SMOKE_PORT:=7474}"
CHECK_CAPTURE="$ROOT/tests/tools/roce_capture.py"
P="$LESSON_DIR/programs"
mkdir -p "$SMOKE_OUT"
SMOKE_NAME="lesson 04"
source "$ROOT/scripts/smoke-lib.sh"

# The clients of one server, in order: NAME|EXIT|CLIENT ARGS
CLIENTS=(
  "good|0|--compare --slots 10 -r sum -r min -r max -r count_lt:500 -r histogram:100:10 -r $P/sum.lasm -r $P/minmax.lasm -r $P/count_lt.lasm:500 -r $P/histogram.lasm:100:10"
  "bad|3|-r $P/bad_unknown_opcode.lasm -r $P/bad_jump.lasm -r $P/bad_falls_off_end.lasm -r $P/bad_register.lasm -r $P/bad_too_long.lasm -r $P/bad_loop_forever.lasm -r $P/bad_read_oob.lasm -r $P/bad_write_oob.lasm -r $P/bad_div_zero.lasm -r histogram:0:10 -r sum"
  "after|0|-r sum"
)

# check_client NAME RC: what each client must print.
check_client() {
  local name=$1 rc=$2 log="$SMOKE_OUT/$1-client.log" want
  local e n x
  for e in "${CLIENTS[@]}"; do
    IFS='|' read -r n x _ <<<"$e"
    if [ "$n" = "$name" ]; then want=$x; fi
  done
  case $name in
    good)
      check "good: catalogue and programs, each compared with fetching the data" "$want" "$rc" "$log" \
        "step 7: post RDMA_WRITE_WITH_IMM len=72 to the request region, imm_data=1" "client: sum = [0-9]+ " \
        "client: count_lt:500 = [0-9]+" "client: histogram:100:10 = 10, slots \\[[0-9 ]+\\]" \
        "compare: sum: shipped the function: 72 B request \\+ 136 B answer, .* fetched the data: 32768 B READ" \
        "compare: .*histogram.lasm:100:10: .* same answer" "client: 9 task\\(s\\), 0 refused"
      # The program and the catalogue function give the same answers (r0; and the slots
      # where both fill the same ones).
      agree "sum" "$P/sum.lasm" full "$log"
      agree "count_lt:500" "$P/count_lt.lasm:500" full "$log"
      agree "histogram:100:10" "$P/histogram.lasm:100:10" full "$log"
      agree "min" "$P/minmax.lasm" r0 "$log" ;;
    bad)
      check "bad programs: each refused or stopped with its own status; the connection goes on" "$want" "$rc" "$log" \
        "bad_unknown_opcode.lasm refused: unknown_opcode \\(status 4\\): instruction [0-9]+: .*0xff" \
        "bad_jump.lasm refused: jump_out_of_range \\(status 7\\)" \
        "bad_falls_off_end.lasm refused: falls_off_end \\(status 8\\)" \
        "bad_register.lasm refused: bad_register \\(status 5\\)" \
        "bad_too_long.lasm refused: too_long \\(status 3\\)" \
        "bad_loop_forever.lasm refused: step_limit \\(status 9\\)" \
        "bad_read_oob.lasm refused: load_out_of_bounds \\(status 10\\)" \
        "bad_write_oob.lasm refused: store_out_of_bounds \\(status 11\\)" \
        "bad_div_zero.lasm refused: divide_by_zero \\(status 12\\)" \
        "histogram:0:10 refused: bad_request \\(status 14\\)" \
        "^client: sum = [0-9]+" "client: 11 task\\(s\\), 10 refused" ;;
    after)
      check "after: the next client is served" "$want" "$rc" "$log" "^client: sum = [0-9]+" ;;
  esac
}

# answer_of LABEL LOG [r0|full]: what the client printed for one task ("4094513" or
# "10, slots [...]"), without the step count.
answer_of() {
  local line
  line=$(grep -F "client: $1 = " "$2" | head -n1)
  line=${line#*= }
  line=${line% (*}
  [ "${3:-full}" = r0 ] && line=${line%%,*}
  echo "$line"
}

# agree NAME PROGRAM r0|full LOG: a catalogue function and a program give the same answer.
agree() {
  local a b
  a=$(answer_of "$1" "$4" "$3")
  b=$(answer_of "$2" "$4" "$3")
  if [ -n "$a" ] && [ "$a" = "$b" ]; then pass "good: $1 by name and $(basename "$2") as a program agree: $a"
  else fail "good: $1 by name gave '$a', $(basename "$2") as a program gave '$b'"; fi
}

# run_clients SERVER_IP: every entry of CLIENTS, checked at once.
run_clients() {
  local entry name want args rc
  for entry in "${CLIENTS[@]}"; do
    IFS='|' read -r name want args <<<"$entry"
    set +e
    # shellcheck disable=SC2086
    timeout 120 "$BIN/client" "$1" -p "$SMOKE_PORT" --connect-timeout 60 $args >"$SMOKE_OUT/$name-client.log" 2>&1
    rc=$?
    set -e
    check_client "$name" $rc
  done
}

# check_no_wx PID: no mapping of the process is both writable and executable.
check_no_wx() {
  local maps
  maps=$(awk '$2 ~ /w/ && $2 ~ /x/' "/proc/$1/maps" 2>/dev/null || echo "unreadable")
  if [ -z "$maps" ]; then pass "server process $1: no memory mapping is both writable and executable"
  else fail "server process $1 has writable+executable mappings: $maps"; fi
}

role_local() {
  need_binaries "$BIN"; need_cm_runtime
  local ip spid rc pid
  ip=$(cm_server_ipv4)
  [ -n "$ip" ] || { echo "smoke: this host has no global IPv4 address for RDMA CM" >&2; exit 2; }
  echo "smoke: lesson 04, both sides on this host ($ip); logs in $SMOKE_OUT"

  # Nothing in the lesson asks for executable memory.
  if grep -nE "PROT_EXEC|mprotect|MAP_ANON.*EXEC|memfd_create" "$LESSON_DIR"/*.cpp "$LESSON_DIR"/*.hpp "$LESSON_DIR"/bytecode/*.cpp "$LESSON_DIR"/bytecode/*.hpp; then
    fail "the lesson's sources ask for executable memory (lines above)"
  else
    pass "no source of the lesson maps memory executable (no PROT_EXEC, mprotect, memfd_create)"
  fi

  "${SERVER_ENV[@]}" "$BIN/server" -p "$SMOKE_PORT" --clients 3 --accept-timeout 60 >"$SMOKE_OUT/server.log" 2>&1 &
  spid=$!
  wait_for_line "$SMOKE_OUT/server.log" "step 4: wait for CONNECT_REQUEST" 60 \
    || fail "the server did not start listening (log: $SMOKE_OUT/server.log)"
  check_no_wx "$spid"
  run_clients "$ip"
  set +e; timeout 30 tail --pid="$spid" -f /dev/null; wait "$spid"; rc=$?; set -e
  check "server: served three clients, survived every bad program" 0 $rc "$SMOKE_OUT/server.log" \
        "server: 3 client\\(s\\) served" "step 8: program refused by the verifier: unknown_opcode" \
        "request 6: step_limit" "request 11: ok"

  # --- usage and bad local input ---------------------------------------------------
  set +e
  "$BIN/client" >"$SMOKE_OUT/usage.log" 2>&1; rc=$?
  set -e
  check "usage: client without a server address" 2 $rc "$SMOKE_OUT/usage.log" "server is required"
  set +e
  "$BIN/server" --elements 0 >"$SMOKE_OUT/usage2.log" 2>&1; rc=$?
  set -e
  check "usage: server --elements 0" 2 $rc "$SMOKE_OUT/usage2.log" "not in range"
  set +e
  "$BIN/client" "$ip" -r no_such_thing.lasm >"$SMOKE_OUT/nofile.log" 2>&1; rc=$?
  set -e
  check "a task that is neither a function nor a file" 1 $rc "$SMOKE_OUT/nofile.log" "'no_such_thing.lasm' is neither a catalogue function nor a readable file"
  printf 'mov r0, 1\nlod r1, r2, 0\nexit\n' >"$SMOKE_OUT/typo.lasm"
  set +e
  "$BIN/client" "$ip" -r "$SMOKE_OUT/typo.lasm" >"$SMOKE_OUT/typo.log" 2>&1; rc=$?
  set -e
  check "a program with a syntax error is refused before connecting" 1 $rc "$SMOKE_OUT/typo.log" "line 2: .*lod"
  cm_host_up "nobody listening" "step 4: wait for CONNECT_REQUEST" "$BIN/server" -p $((SMOKE_PORT + 2)) --accept-timeout 100
  set +e
  timeout 60 "$BIN/client" "$ip" -p $((SMOKE_PORT + 1)) --connect-timeout 1 >"$SMOKE_OUT/nolistener.log" 2>&1; rc=$?
  set -e
  cm_host_down "nobody listening"
  check "nobody listening" 1 $rc "$SMOKE_OUT/nolistener.log" "nobody listens on $ip:$((SMOKE_PORT + 1))"
  stop_summary "SIGTERM: a persistent server stops with its summary line" "step 4: wait for CONNECT_REQUEST" \
    "^server: 0 client\\(s\\) served, 0 rejected$" "${SERVER_ENV[@]}" "$BIN/server" -p $((SMOKE_PORT + 20)) --persistent --accept-timeout 100
}

role_server() {
  need_binaries "$BIN"; need_cm_runtime
  echo "smoke: lesson 04 server role; logs in $SMOKE_OUT"
  local rc
  set +e
  timeout 200 "${SERVER_ENV[@]}" "$BIN/server" -p "$SMOKE_PORT" --clients 3 --accept-timeout 120 >"$SMOKE_OUT/server.log" 2>&1; rc=$?
  set -e
  check "server: three clients served" 0 $rc "$SMOKE_OUT/server.log" "server: 3 client\\(s\\) served" "request 11: ok"
}

role_client() {
  local server=${1:?usage: smoke.sh client SERVER_IP}
  need_binaries "$BIN"; need_cm_runtime
  echo "smoke: lesson 04 client role against $server; logs in $SMOKE_OUT"
  start_capture "$server" "udp port 4791"
  run_clients "$server"
  if [ -n "$CAPTURE_PID" ]; then
    stop_capture
    echo "smoke: client-side capture in $SMOKE_OUT/client-side.pcap"
  fi
}

# role_check_capture PCAP DIR: requests and answers as WRITE_WITH_IMM, the dataset READ,
# and every RETH inside a region the server (dataset, request region) or the client
# (reply buffer) logged.
role_check_capture() {
  local pcap=$1 dir=$2 rc logs=() log
  for log in "$dir"/*.log "$dir"/server/*.log "$dir"/client/*.log; do
    [ -f "$log" ] && grep -q "rkey=0x" "$log" && logs+=(--server-log "$log")
  done
  set +e
  python3 "$CHECK_CAPTURE" check "$pcap" \
    --require "ConnectRequest,ConnectReply,ReadyToUse,RDMA_WRITE_ONLY_WITH_IMMEDIATE,RDMA_WRITE_FIRST,RDMA_WRITE_LAST_WITH_IMMEDIATE,ACK,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_FIRST,RDMA_READ_RESPONSE_MIDDLE,RDMA_READ_RESPONSE_LAST,DisconnectRequest,DisconnectReply" \
    "${logs[@]}" >"$SMOKE_OUT/capture-check.log" 2>&1
  rc=$?
  set -e
  check "capture: requests and answers as WRITE_WITH_IMM, the dataset READ, RETHs inside logged regions ($pcap)" 0 $rc \
        "$SMOKE_OUT/capture-check.log" "capture: OK"
}

smoke_main "$@"
