#!/usr/bin/env bash
# Lesson 06 smoke test: runs the real server and client on Soft-RoCE (or the userspace
# runtime) and checks what they print and how they exit. Small iteration counts: this
# runs in emulated guests where one round trip takes about a millisecond, so it checks
# that every technique moves verified data, not how fast.
#
#   smoke.sh local               both sides on this host: steps 1-7 at 64 B and at 5000 B
#                                (above the path MTU and max_inline_data: step 4 skipped,
#                                multi-packet messages), a step-8 sweep with its CSV, each
#                                --run kind, then bad input: usage errors, the widest
#                                --window the device allows and one more, no such device,
#                                an unreachable server, a client that vanishes
#                                mid-measurement, a peer whose TEST asks for more than it
#                                announced, and a malformed TEST
#   smoke.sh server              the server side for a run between two hosts; serves the
#                                client role's three runs
#   smoke.sh client SERVER_IP    the client side: steps 1-7 at 64 B and 5000 B, --run write;
#                                if tcpdump is here and we are root, it also records the
#                                wire and checks the RoCE opcodes
#   smoke.sh check-capture PCAP DIR   check a capture against the client role's logs in DIR
#
# Environment: BUILD_DIR (default <repo>/build), SMOKE_OUT (logs; default $LAB_OUT or a
# new temporary directory), SMOKE_PORT (default 18516; local uses it and the next 4).
# Exit 0 only if every check passed.
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
BIN="$BUILD_DIR/lessons/06-performance"
: "${SMOKE_OUT:=${LAB_OUT:-$(mktemp -d /tmp/smoke06.XXXXXX)}}"
: "${SMOKE_PORT:=18516}"
CHECK_CAPTURE="$ROOT/tests/tools/roce_capture.py"
FAKE_PEER="$ROOT/tests/tools/fake_peer.py"
mkdir -p "$SMOKE_OUT"

SMOKE_NAME="lesson 06"
source "$ROOT/scripts/smoke-lib.sh"

# Every wait of the programs (-t) is generous: a slow emulated guest must not turn a
# success into a timeout. Iterations are few: the measurements' numbers are not checked.
T=30
ITERS=20
OK_CLIENT='client: [0-9]+ measurement\(s\), the data of each checked'
OK_SERVER='server: [0-9]+ measurement\(s\) served, the data of each checked'

# run_pair NAME PORT "SERVER ARGS" "CLIENT ARGS": both sides on this host, each bounded
# (120 s). The client retries its TCP connect until the server listens. Sets SERVER_RC,
# CLIENT_RC; logs in $SMOKE_OUT/NAME-{server,client}.log
run_pair() {
  local name=$1 port=$2 sargs=$3 cargs=$4
  timeout 120 "$BIN/server" -p "$port" -t $T --accept-timeout 60 $sargs >"$SMOKE_OUT/$name-server.log" 2>&1 &
  local spid=$!
  set +e
  timeout 120 "$BIN/client" 127.0.0.1 -p "$port" -t $T --connect-timeout 60 $cargs \
    </dev/null >"$SMOKE_OUT/$name-client.log" 2>&1
  CLIENT_RC=$?
  wait "$spid"; SERVER_RC=$?
  set -e
}

# run_alone NAME CMD...: one program by itself (usage errors, no device, nobody
# listening), bounded (30 s); sets RC; log in $SMOKE_OUT/NAME.log.
run_alone() {
  local name=$1; shift
  set +e
  timeout 30 "$@" </dev/null >"$SMOKE_OUT/$name.log" 2>&1; RC=$?
  set -e
}

# measurements LOG: the N of "client: N measurement(s)" (empty if there is no such line).
measurements() { sed -nE 's/^client: ([0-9]+) measurement\(s\).*/\1/p' "$1"; }

# max_inline LOG: max_inline_data the device granted, from a step 0 log line.
max_inline() { sed -nE 's/.*max_inline_data ([0-9]+) \(asked [0-9]+\).*/\1/p' "$1" | head -n 1; }

# steps_pair NAME PORT SIZE: steps 1-7 at SIZE bytes; both sides must say every message
# was verified, and count the same measurements: 14 (steps 1-3 and 5 one each, 4 two, 6
# six, 7 two), 12 where SIZE is above max_inline_data (step 4 skipped).
steps_pair() {
  local name=$1 port=$2 size=$3 inline want
  run_pair "$name" "$port" "" "-s $size -n $ITERS"
  inline=$(max_inline "$SMOKE_OUT/$name-client.log")
  if [ -z "$inline" ]; then
    fail "$name: the client logged no max_inline_data (log: $SMOKE_OUT/$name-client.log)"
    return
  fi
  if [ "$size" -le "$inline" ]; then want=14; else want=12; fi
  check "$name: client, steps 1-7 at $size B ($want measurements of $ITERS messages, max_inline_data $inline)" \
        0 $CLIENT_RC "$SMOKE_OUT/$name-client.log" "^client: $want measurement\\(s\\), the data of each checked$" \
        'step 0: sending QP_INFO: QPN 0x[0-9a-f]{6} PSN 0x[0-9a-f]{6}' 'step 0: QP in RTS' \
        "step 1: send ping-pong: .*verified" "step 2: send window: .*verified" "step 3: send unsignaled: .*verified" \
        "step 5: send chain: .*verified" "step 6: write: .*verified" "step 6: write-imm: .*verified" \
        "step 6: read: .*verified" "step 6: read one at a time: .*verified" \
        "step 7: send ping-pong event: .*verified" "step 7: send chain event: .*verified"
  check "$name: server, $want measurements at $size B" 0 $SERVER_RC "$SMOKE_OUT/$name-server.log" \
        "^server: $want measurement\\(s\\) served, the data of each checked$" \
        "TEST $want: send stream of $size bytes x $ITERS, window [0-9]+, event.*: every message checked"
  if [ "$size" -le "$inline" ]; then
    check "$name: step 4 runs inline at $size B" 0 0 "$SMOKE_OUT/$name-client.log" \
          "step 4: send inline: .*inline, busy poll" "step 4: send ping-pong inline: .*verified"
  else
    check "$name: step 4 skipped at $size B, with its reason" 0 0 "$SMOKE_OUT/$name-client.log" \
          "step 4: skipped at $size bytes: more than max_inline_data $inline, what the device granted"
    if grep -q "step 4: send" "$SMOKE_OUT/$name-client.log"; then
      fail "$name: a step 4 measurement ran at $size B, above max_inline_data $inline"
    fi
  fi
}

# sweep PORT: step 8 at three sizes, 50 messages each; the CSV has its header and one row
# per measurement, each size with the rows the plan gives it.
sweep() {
  local port=$1 csv="$SMOKE_OUT/sweep.csv" inline size want total=0 rows
  rm -f "$csv"
  run_pair sweep "$port" "" "--steps 8 --sizes 2,1024,65536 -n 50 --csv $csv"
  check "sweep: client, step 8 at 2, 1024 and 65536 B" 0 $CLIENT_RC "$SMOKE_OUT/sweep-client.log" "$OK_CLIENT" \
        "step 8: the size sweep: steps 1-7 at 3 sizes from 2 to 65536 bytes" \
        "step 8: 65536 bytes, 50 messages per measurement"
  check "sweep: server" 0 $SERVER_RC "$SMOKE_OUT/sweep-server.log" "$OK_SERVER"
  inline=$(max_inline "$SMOKE_OUT/sweep-client.log")
  if [ -z "$inline" ] || [ ! -f "$csv" ]; then
    fail "sweep: no max_inline_data logged or no CSV $csv (log: $SMOKE_OUT/sweep-client.log)"
    return
  fi
  if [ "$(head -n 1 "$csv")" = "step,technique,kind,op,pattern,size,iters,window,signal_every,chain,inline,wait,seconds,mib_per_s,mmsg_per_s,lat_typical_us,lat_p99_us,cpu_us_per_msg,cpu_percent" ]; then
    pass "sweep: the CSV starts with its header"
  else
    fail "sweep: the CSV's first line is not the header: $(head -n 1 "$csv")"
  fi
  for size in 2 1024 65536; do
    if [ "$size" -le "$inline" ]; then want=14; else want=12; fi
    total=$((total + want))
    rows=$(awk -F, -v s="$size" 'NR > 1 && NF == 19 && $6 == s && $7 == 50' "$csv" | wc -l)
    if [ "$rows" -eq "$want" ]; then
      pass "sweep: $want CSV rows at $size B (max_inline_data $inline), 50 messages each"
    else
      fail "sweep: $rows CSV rows of 19 columns at $size B with 50 messages, expected $want ($csv)"
    fi
  done
  rows=$(($(wc -l <"$csv") - 1))
  if [ "$rows" -eq "$total" ] && [ "$(measurements "$SMOKE_OUT/sweep-client.log")" = "$total" ]; then
    pass "sweep: $total rows, one per measurement the client counted"
  else
    fail "sweep: $rows rows, client counted '$(measurements "$SMOKE_OUT/sweep-client.log")', expected $total ($csv)"
  fi
}

# runs PORT: each --run kind once (one server each), ping-pong asleep on the completion
# channel and write-imm inline, to cover both flags of a TEST.
runs() {
  local port=$1 kind args
  for kind in pingpong send write write-imm read; do
    case $kind in
      pingpong) args="--run pingpong --event" ;;
      write-imm) args="--run write-imm --inline" ;;
      *) args="--run $kind" ;;
    esac
    run_pair "run-$kind" "$port" "" "$args -s 64 -n 50"
    check "--run $kind: client ($args)" 0 $CLIENT_RC "$SMOKE_OUT/run-$kind-client.log" \
          "^client: 1 measurement\\(s\\), the data of each checked$" \
          "^result: kind=(ping-pong|$kind) size=64 iters=50 mib_per_s=[0-9.]+ "
    check "--run $kind: server" 0 $SERVER_RC "$SMOKE_OUT/run-$kind-server.log" \
          "^server: 1 measurement\\(s\\) served, the data of each checked$"
  done
  check "--run pingpong --event: the TEST carried the event flag to the server" 0 0 "$SMOKE_OUT/run-pingpong-server.log" \
        "TEST 1: send ping-pong of 64 bytes x 50, window 1, event: every message checked"
  check "--run write-imm --inline: the TEST carried the inline flag to the server" 0 0 "$SMOKE_OUT/run-write-imm-server.log" \
        "TEST 1: write-imm stream of 64 bytes x 50, window [0-9]+, busy, inline: every immediate checked; every slot holds the last message written to it"
}

# usage_cases: what the client refuses before it opens a device; each one line naming the value.
usage_cases() {
  run_alone usage-no-server "$BIN/client"
  check "usage: client without a server address" 2 $RC "$SMOKE_OUT/usage-no-server.log" "server is required" "Usage:"
  run_alone usage-size-0 "$BIN/client" 127.0.0.1 -s 0
  check "usage: client -s 0" 2 $RC "$SMOKE_OUT/usage-size-0.log" "--size: Value 0 not in range"
  run_alone usage-size-big "$BIN/client" 127.0.0.1 -s 8388609
  check "usage: client -s 8388609 (above 8 MiB)" 2 $RC "$SMOKE_OUT/usage-size-big.log" \
        "^-s 8388609: more than 8388608 bytes, the largest message this lesson registers memory for$"
  run_alone usage-window-0 "$BIN/client" 127.0.0.1 --window 0
  check "usage: client --window 0" 2 $RC "$SMOKE_OUT/usage-window-0.log" "--window: Value 0 not in range"
  run_alone usage-steps-9 "$BIN/client" 127.0.0.1 --steps 9
  check "usage: client --steps 9" 1 $RC "$SMOKE_OUT/usage-steps-9.log" "--steps 9: '9' is not within 1-8" \
        "remedy: steps are 1-7"
  run_alone usage-steps-x "$BIN/client" 127.0.0.1 --steps x
  check "usage: client --steps x" 1 $RC "$SMOKE_OUT/usage-steps-x.log" "--steps x: 'x' is not a step or a range" \
        "remedy: write e.g. 1-7"
  run_alone usage-inline "$BIN/client" 127.0.0.1 --inline
  check "usage: client --inline without --run" 2 $RC "$SMOKE_OUT/usage-inline.log" \
        "^--inline and --event go with --run; steps 4 and 7 use them on their own$"
  run_alone usage-run "$BIN/client" 127.0.0.1 --run bogus
  check "usage: client --run bogus" 2 $RC "$SMOKE_OUT/usage-run.log" "--run: bogus not in"
  local log
  for log in usage-steps-9 usage-steps-x; do
    if grep -q "step 0: device" "$SMOKE_OUT/$log.log"; then fail "$log: a device was opened before --steps was checked"; fi
  done
}

role_local() {
  need_binaries "$BIN"
  local p=$SMOKE_PORT rc
  echo "smoke: lesson 06, both sides on this host; logs in $SMOKE_OUT"

  steps_pair steps-64 $p 64
  steps_pair steps-5000 $p 5000
  sweep $p
  runs $p

  # --- bad input ---------------------------------------------------------------
  usage_cases
  # Inline that cannot be. A READ carries no data out: a usage error, before any device.
  run_alone inline-read "$BIN/client" 127.0.0.1 -p $((p + 1)) --run read --inline -s 64
  check "--run read --inline: refused before anything is opened" 2 $RC "$SMOKE_OUT/inline-read.log" \
        "--inline with --run read: a READ request carries no data to put inline"
  if grep -q "step 0: device" "$SMOKE_OUT/inline-read.log"; then fail "--run read --inline: a device was opened"; fi
  # Above max_inline_data: the client learns that number at step 0, so it connects,
  # refuses, and tells the server why.
  run_pair inline-big $((p + 1)) "" "--run send --inline -s 5000"
  check "--run send --inline -s 5000: refused, above max_inline_data" 1 $CLIENT_RC "$SMOKE_OUT/inline-big-client.log" \
        "--inline with -s 5000: more than max_inline_data [0-9]+, what the device granted"
  check "--run send --inline -s 5000: the server is told why" 1 $SERVER_RC "$SMOKE_OUT/inline-big-server.log" \
        "the client gave up: --inline with -s 5000: more than max_inline_data"

  # The device bounds the window: the receive queue holds 2 x --window RECVs (max_qp_wr)
  # and each CQ as many completions (max_cqe). The widest window that fits must run; one
  # more must be refused at step 0, naming the limit, before any connection.
  local limits qp_wr cqe widest
  limits=$(sed -nE 's/.*step 0: device [^:]+: max_qp_wr ([0-9]+), max_cqe ([0-9]+),.*/\1 \2/p' \
             "$SMOKE_OUT/steps-64-client.log" | head -n 1)
  if [ -z "$limits" ]; then
    fail "--window at the device's limit: no max_qp_wr and max_cqe in $SMOKE_OUT/steps-64-client.log"
  else
    qp_wr=${limits% *} cqe=${limits#* }
    widest=$(( (qp_wr < cqe ? qp_wr : cqe) / 2 ))
    run_pair window-widest $((p + 1)) "" "--run send --window $widest -n 100"
    check "--window $widest (2 x $widest RECVs, max_qp_wr $qp_wr, max_cqe $cqe): runs" 0 $CLIENT_RC \
          "$SMOKE_OUT/window-widest-client.log" "^client: 1 measurement" "up to $widest in flight"
    run_alone window-over "$BIN/client" 127.0.0.1 -p $((p + 1)) --window $((widest + 1)) --connect-timeout 1
    check "--window $((widest + 1)): refused at step 0, naming the device's limit" 1 $RC \
          "$SMOKE_OUT/window-over.log" \
          "needs $((2 * widest + 2)), more than this device allows: (max_qp_wr $qp_wr|max_cqe $cqe)" \
          "remedy: use a smaller --window"
    if grep -q "step 0: connect to the server" "$SMOKE_OUT/window-over.log"; then
      fail "--window $((widest + 1)): the client went on to connect after the device refused"
    fi
  fi

  # No such device: each side says so at once, before it listens or connects.
  run_alone nodev-server "$BIN/server" -d no_such_dev -p $((p + 2)) --accept-timeout 60
  check "no such device: server" 1 $RC "$SMOKE_OUT/nodev-server.log" \
        "RDMA device 'no_such_dev' not found; devices present: " "remedy: "
  if grep -q "listening on TCP port" "$SMOKE_OUT/nodev-server.log"; then fail "no such device: the server listened first"; fi
  run_alone nodev-alone-client "$BIN/client" 127.0.0.1 -d no_such_dev -p $((p + 2))
  check "no such device: client" 1 $RC "$SMOKE_OUT/nodev-alone-client.log" "RDMA device 'no_such_dev' not found"

  run_alone unreachable "$BIN/client" 127.0.0.1 -p $((p + 2)) --connect-timeout 1
  check "unreachable server" 1 $RC "$SMOKE_OUT/unreachable.log" \
        "could not connect to 127.0.0.1:$((p + 2)) after [0-9]+ attempts" "remedy: nothing listens on TCP port $((p + 2)) there"

  # A client that vanishes in the middle of a stream of SENDs: the server waits for the
  # next RECV's completion only its -t (3 s here), then says what it waited for. The
  # client runs without a `timeout` wrapper so that the kill hits it; it is killed in
  # any case. A million 64 KiB SENDs take tens of seconds even where this runs fastest,
  # so the kill always lands in the middle of the stream, however loaded the machine.
  timeout 60 "$BIN/server" -p $((p + 3)) -t 3 --accept-timeout 60 >"$SMOKE_OUT/vanished-client-server.log" 2>&1 &
  local spid=$!
  "$BIN/client" 127.0.0.1 -p $((p + 3)) --connect-timeout 60 --run send -s 65536 -n 1000000 \
    </dev/null >"$SMOKE_OUT/vanished-client-client.log" 2>&1 &
  local cpid=$!
  wait_for_line "$SMOKE_OUT/vanished-client-client.log" "step 5: send: the server is READY; measuring" 60 \
    || fail "vanished client: the client never started its measurement (log: $SMOKE_OUT/vanished-client-client.log)"
  kill -9 $cpid 2>/dev/null || fail "vanished client: the client had exited before it was killed"
  local killed=$SECONDS
  set +e; wait $cpid 2>/dev/null; wait $spid; rc=$?; set -e
  # Its -t of 3 s, and a margin for a slow guest: not its 60 s bound.
  if [ $((SECONDS - killed)) -le 20 ]; then
    pass "vanished client: the server ended $((SECONDS - killed)) s after the client was killed"
  else
    fail "vanished client: the server ended only $((SECONDS - killed)) s after the client was killed (its -t is 3 s)"
  fi
  check "vanished client: the server gives up after its -t, naming what it waited for" 1 $rc \
        "$SMOKE_OUT/vanished-client-server.log" \
        "no completion for message [0-9]+ within 3\\.0 s"

  # Peers whose TEST the server must refuse, telling them why.
  fake_test test-size $((p + 4)) 64,1 1,2,65536,1
  check "a TEST larger than the client announced: refused, the peer told why" 1 $SERVER_RC \
        "$SMOKE_OUT/test-size-server.log" \
        "TEST 1 asks for 1 x 65536 = 65536 bytes, more than the ring of 64 bytes registered for this client"
  check "a TEST larger than the client announced: the peer got the ERROR" 0 0 "$SMOKE_OUT/test-size-peer.log" \
        "server sent ERROR: TEST 1 asks for 1 x 65536 = 65536 bytes"
  fake_test test-window $((p + 4)) 64,4 1,2,32,8
  check "a TEST with a wider window than the client announced: refused" 1 $SERVER_RC \
        "$SMOKE_OUT/test-window-server.log" \
        "TEST 1 asks for a window of 8, more than the 4 this client announced"
  fake_test test-malformed $((p + 4)) 64,4 2,1,64,1
  check "a malformed TEST (a ping-pong of WRITEs): refused" 1 $SERVER_RC "$SMOKE_OUT/test-malformed-server.log" \
        "malformed exchange message: TEST ping-pong with an op other than SEND"
}

# fake_test NAME PORT ANNOUNCE TEST: a server against fake_peer.py's test mode (QP_INFO
# announcing SIZE,WINDOW, then TEST OP,PATTERN,SIZE,WINDOW). Its QP_INFO's GID carries
# this host's address, so that RTR can resolve it as a real peer's. Sets SERVER_RC.
fake_test() {
  local name=$1 port=$2 announce=$3 test=$4
  timeout 60 "$BIN/server" -p "$port" -t $T --accept-timeout 60 >"$SMOKE_OUT/$name-server.log" 2>&1 &
  local spid=$!
  set +e
  timeout 60 python3 "$FAKE_PEER" test 127.0.0.1 "$port" --timeout 30 --gid-ip "$(local_ipv4)" \
    --announce "$announce" --test "$test" >"$SMOKE_OUT/$name-peer.log" 2>&1
  wait "$spid"; SERVER_RC=$?
  set -e
}

# The client role's runs, in order; the server role serves as many.
PAIR_RUNS="steps-64 steps-5000 run-write"

role_server() {
  need_binaries "$BIN"
  echo "smoke: lesson 06 server role; logs in $SMOKE_OUT"
  local name rc
  for name in $PAIR_RUNS; do
    set +e
    timeout 300 "$BIN/server" -p "$SMOKE_PORT" -t 60 --accept-timeout 240 >"$SMOKE_OUT/$name-server.log" 2>&1
    rc=$?
    set -e
    case $name in
      steps-64) check "server: steps 1-7 at 64 B" 0 $rc "$SMOKE_OUT/$name-server.log" "$OK_SERVER" \
                      "TEST [0-9]+: send stream of 64 bytes" ;;
      steps-5000) check "server: steps 1-7 at 5000 B" 0 $rc "$SMOKE_OUT/$name-server.log" "$OK_SERVER" \
                        "TEST [0-9]+: write-imm stream of 5000 bytes" ;;
      run-write) check "server: --run write" 0 $rc "$SMOKE_OUT/$name-server.log" \
                       "^server: 1 measurement\\(s\\) served, the data of each checked$" ;;
    esac
  done
}

role_client() {
  local server=${1:?usage: smoke.sh client SERVER_IP}
  need_binaries "$BIN"
  echo "smoke: lesson 06 client role against $server; logs in $SMOKE_OUT"
  start_capture "$server" "udp port 4791 or tcp port $SMOKE_PORT"
  local name args rc
  for name in $PAIR_RUNS; do
    case $name in
      steps-64) args="-s 64 -n $ITERS" ;;
      steps-5000) args="-s 5000 -n $ITERS" ;;
      run-write) args="--run write -s 64 -n 50" ;;
    esac
    set +e
    timeout 300 "$BIN/client" "$server" -p "$SMOKE_PORT" -t 60 --connect-timeout 120 $args \
      </dev/null >"$SMOKE_OUT/$name-client.log" 2>&1
    rc=$?
    set -e
    case $name in
      steps-64) check "client: steps 1-7 at 64 B" 0 $rc "$SMOKE_OUT/$name-client.log" "$OK_CLIENT" \
                      "step 6: read: .*verified" "step 7: send chain event: .*verified" ;;
      steps-5000) check "client: steps 1-7 at 5000 B (above the path MTU)" 0 $rc "$SMOKE_OUT/$name-client.log" \
                        "$OK_CLIENT" "step 4: skipped at 5000 bytes" "step 6: read: .*verified" ;;
      run-write) check "client: --run write" 0 $rc "$SMOKE_OUT/$name-client.log" \
                       "^client: 1 measurement\\(s\\), the data of each checked$" ;;
    esac
  done
  if [ -n "$CAPTURE_PID" ]; then
    stop_capture
    role_check_capture "$SMOKE_OUT/client-side.pcap" "$SMOKE_OUT"
  fi
}

# role_check_capture PCAP DIR: tshark must decode RoCE with the opcodes the steps produce
# (SEND, WRITE, WRITE_WITH_IMM, READ, single- and multi-packet, and ACKs); each run's
# first request must carry the PSN its side logged (client logs in DIR), and every RETH
# must lie inside the ring the server advertised in that run (the clients log it as
# "received QP_INFO: ... ring addr=0x.. rkey=0x.. length=N").
role_check_capture() {
  local pcap=$1 dir=$2 rc logs=() name
  [ -d "$dir/client" ] && dir="$dir/client"   # a lab run's output: the client guest's logs
  for name in $PAIR_RUNS; do logs+=(--client-log "$dir/$name-client.log"); done
  set +e
  python3 "$CHECK_CAPTURE" check "$pcap" --port "$SMOKE_PORT" \
    --require "SEND_ONLY,RDMA_WRITE_ONLY,RDMA_WRITE_ONLY_WITH_IMMEDIATE,RDMA_READ_REQUEST,RDMA_READ_RESPONSE_ONLY,ACK,SEND_FIRST,SEND_MIDDLE,SEND_LAST,RDMA_WRITE_FIRST,RDMA_WRITE_MIDDLE,RDMA_WRITE_LAST,RDMA_WRITE_LAST_WITH_IMMEDIATE,RDMA_READ_RESPONSE_FIRST,RDMA_READ_RESPONSE_MIDDLE,RDMA_READ_RESPONSE_LAST" \
    "${logs[@]}" --server-log "$dir/steps-64-client.log" --server-log "$dir/steps-5000-client.log" \
    --server-log "$dir/run-write-client.log" >"$SMOKE_OUT/capture-check.log" 2>&1
  rc=$?
  set -e
  check "capture: RoCE opcodes, first PSNs, RETHs inside the server's ring ($pcap)" 0 $rc \
        "$SMOKE_OUT/capture-check.log" "capture: OK"
}

smoke_main "$@"
