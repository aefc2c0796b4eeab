#!/usr/bin/env bash
# bad_input_NN: a lesson's programs given what a clumsy or hostile user gives them, on this
# host (no VM): every case must end within its stated time with the expected exit status,
# say what was wrong in ONE line that names the value seen and the remedy, and leave no
# process behind.
#
#   tests/bad_input.sh LESSON PORT     (LESSON: a directory under lessons/; PORT: the first
#                                       of the 10 TCP ports this test may use)
#
# Option and file errors need no RDMA device: the programs refuse them before opening
# one. Cases that need a connection run on the userspace RoCE runtime
# (scripts/userspace-roce.sh), for every lesson: a client with nobody listening, a client
# the server refuses, a waiting server stopped with SIGTERM and with SIGINT (Ctrl-C), and
# more per lesson. The RDMA CM servers of lessons 02-04 run at the address
# 127.0.<PORT / 256>.<PORT % 256> (see CM_ADDR below). Logs in
# $BUILD_DIR/userspace-roce/test-out/bad_input_NN/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../userspace-roce/tests/lib.sh"
lesson=${1:?usage: bad_input.sh LESSON PORT}
port=${2:?usage: bad_input.sh LESSON PORT}
n=${lesson:0:2}
t_init "bad_input_$n"
BIN="$BUILD_DIR/lessons/$lesson"
need "$BIN/server" "$BIN/client" || t_finish
U=("$RUNTIME" --)   # run a program on the userspace runtime
CERTS="$BUILD_DIR/certs"

# --- the machinery -----------------------------------------------------------------------
# Every process of a case carries BAD_INPUT_CASE=<id> in its environment, inherited by
# whatever it starts: that is how leftovers are found, whatever they renamed themselves to.
CASE_N=0 CASE_ID="" CASE_LOG=""
new_case() {
  CASE_N=$((CASE_N + 1))
  CASE_ID="bad-input-$n-$$-$CASE_N"
  CASE_LOG="$OUT/$(printf '%02d' "$CASE_N")-$1.log"
}

# pids_of ID [COMM]: the processes whose environment holds BAD_INPUT_CASE=ID (and whose
# command name is COMM).
pids_of() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    grep -qsxz "BAD_INPUT_CASE=$1" "$p/environ" || continue
    [ -z "${2:-}" ] || [ "$(cat "$p/comm" 2>/dev/null)" = "$2" ] || continue
    echo "$pid"
  done
}

# no_leftovers WHAT ID: nothing of the case still runs (it is killed if it does).
no_leftovers() {
  local left
  left=$(pids_of "$2" | tr '\n' ' ')
  [ -z "$left" ] && return 0
  fail "$1: processes left behind: $left($(for p in $left; do cat /proc/$p/comm 2>/dev/null; done | tr '\n' ' '))"
  kill -KILL $left 2>/dev/null
  return 1
}

# re TEXT: TEXT as a regular expression that matches exactly it (for paths in patterns).
re() { printf '%s' "$1" | sed 's/[][\\.^$*+?(){}|]/\\&/g'; }

# once WHAT LOG REGEX: exactly one line of LOG matches (one clear message, not a flood).
once() {
  local count
  count=$(grep -Ec -- "$3" "$2")
  [ "$count" -eq 1 ] && return 0
  fail "$1: $count lines match /$3/ in $2, expected exactly 1"; show "$2"
  return 1
}

# expect WHAT WANT SECONDS MESSAGE REMEDY -- CMD...: run CMD (bounded by SECONDS) and
# check its exit status, that exactly one line matches MESSAGE (which names the value),
# that REMEDY (what to do) is said, and that nothing is left running.
expect() {
  local what=$1 want=$2 secs=$3 message=$4 remedy=$5
  [ "${6:-}" = -- ] || { fail "$what: test script error: expect needs -- before the command"; return; }
  shift 6
  new_case case
  bg "$secs" "$CASE_LOG" env BAD_INPUT_CASE="$CASE_ID" "$@"
  reap "$BG_PID"
  [ "$RC" -eq 124 ] && { fail "$what: still running after ${secs} s (log: $CASE_LOG)"; show "$CASE_LOG"; no_leftovers "$what" "$CASE_ID"; return; }
  expect_rc "$what" "$want" "$RC" "$CASE_LOG" || { no_leftovers "$what" "$CASE_ID"; return; }
  once "$what" "$CASE_LOG" "$message" || { no_leftovers "$what" "$CASE_ID"; return; }
  expect_lines "$what" "$CASE_LOG" "$remedy" || { no_leftovers "$what" "$CASE_ID"; return; }
  no_leftovers "$what" "$CASE_ID" && pass "$what (exit $want)"
}

# start WHAT SECONDS LOG CMD...: a long-running process of the current case (stdin from
# /dev/null); its pid in BG_PID.
start() {
  local secs=$1 log=$2; shift 2
  bg "$secs" "$log" env BAD_INPUT_CASE="$CASE_ID" "$@"
}

# stop_with SIGNAL ID COMM: send SIGNAL to the case's process named COMM.
stop_with() {
  local pids
  pids=$(pids_of "$2" "$3")
  [ -n "$pids" ] || return 1
  kill "-$1" $pids
}

# A timeout option must be a finite number of seconds inside its range: NaN compares false
# with every bound, so a range check alone lets it through (common::seconds_between).
timeout_options() {
  local prog=$1 option=$2 low=$3 high=$4; shift 4   # the rest: arguments the program needs
  local value
  for value in nan inf -inf 1e999 abc; do
    expect "$prog $option $value: refused" 2 30 "$option: '$value' is not a number of seconds" \
      "give one from $low to $high" -- "$BIN/$prog" "$@" "$option" "$value"
  done
  expect "$prog $option -5: out of range" 2 30 "$option: '-5' seconds is out of range" "give $low to $high" \
    -- "$BIN/$prog" "$@" "$option" -5
}

# stopped_by SIGNAL ID WHAT LOG PID SUMMARY: the server of case ID (started with `start`,
# pid PID, output in LOG) gets SIGNAL, TERM as from `kill` or INT as from Ctrl-C: it must
# say "stopped by SIGTERM" or "stopped by SIGINT (Ctrl-C)" once, print its summary line
# (matching SUMMARY) once, end as that signal ends a process (exit 143 or 130 in a shell)
# and leave nothing behind (common/stop.hpp).
stopped_by() {
  local sig=$1 id=$2 what=$3 log=$4 pid=$5 summary=$6 want said
  case $sig in
    TERM) want=143 said="^stopped by SIGTERM$" ;;
    INT) want=130 said="^stopped by SIGINT \\(Ctrl-C\\)$" ;;
    *) fail "$what: test script error: stopped_by takes TERM or INT, not '$sig'"; return ;;
  esac
  stop_with "$sig" "$id" server || fail "$what: no server process to send SIG$sig to (it had exited)"
  reap "$pid"
  if expect_rc "$what" "$want" "$RC" "$log" && once "$what" "$log" "$said" && once "$what" "$log" "$summary"; then
    no_leftovers "$what" "$id" && pass "$what (exit $want)"
  else
    no_leftovers "$what" "$id"
  fi
}

# signal_case SIGNAL READY SUMMARY CMD...: a server (CMD, on the runtime) that waits for
# its client, once it has printed its READY line (bounded: 60 s), gets SIGNAL
# (stopped_by).
signal_case() {
  local sig=$1 ready=$2 summary=$3; shift 3
  new_case "sig${sig,,}"
  start 120 "$CASE_LOG" "$@"; local spid=$BG_PID
  local what="SIG$sig: a server waiting for its client prints its summary line"
  if wait_for_line "$CASE_LOG" "$ready" 60; then
    stopped_by "$sig" "$CASE_ID" "$what" "$CASE_LOG" "$spid" "$summary"
  else
    fail "$what: the server printed no line matching /$ready/ within 60 s"; show "$CASE_LOG"
    stop_with KILL "$CASE_ID" server
    reap "$spid"
    no_leftovers "$what" "$CASE_ID"
  fi
}

# stop_cases READY SUMMARY CMD...: signal_case with SIGTERM, then with SIGINT.
stop_cases() {
  signal_case TERM "$@"
  signal_case INT "$@"
}

# The usage errors every lesson shares.
usage_cases() {
  expect "client without a server address" 2 30 "server is required" "Usage:" -- "$BIN/client"
  expect "an option that does not exist" 2 30 "--no-such-option" "Usage:" -- "$BIN/server" --no-such-option
  expect "server -p 0" 2 30 "--port: Value 0 not in range" "Usage:" -- "$BIN/server" -p 0
  expect "client -s 0" 2 30 "--size: Value 0 not in range" "Usage:" -- "$BIN/client" 127.0.0.1 -s 0
  expect "-v and -q together" 2 30 "-v and -q contradict each other" "pick one" -- "$BIN/client" 127.0.0.1 -v -q
  timeout_options client --timeout 0.1 3600 127.0.0.1
  timeout_options server --timeout 0.1 3600
}

# --- lesson 01: raw verbs, QP details over TCP (connected cases on the runtime) ------------
cases_01() {
  usage_cases
  timeout_options client --connect-timeout 0.1 3600 127.0.0.1
  timeout_options server --accept-timeout 1 86400

  expect "nobody listening: the client gives up after --connect-timeout" 1 60 \
    "could not connect to 127.0.0.1:$((port + 1)) after [0-9]+ attempts in 1.0 s: ECONNREFUSED" \
    "nothing listens on TCP port $((port + 1)) there" -- "${U[@]}" "$BIN/client" 127.0.0.1 -p $((port + 1)) --connect-timeout 1

  # Sizes that do not match: both sides refuse before any RDMA traffic, naming the fix.
  new_case size-mismatch
  local slog="$CASE_LOG.server" clog="$CASE_LOG.client"
  start 120 "$slog" "${U[@]}" "$BIN/server" -p "$port" -s 16 --accept-timeout 60; local spid=$BG_PID
  start 120 "$clog" "${U[@]}" "$BIN/client" 127.0.0.1 -p "$port" -s 64 --connect-timeout 60; local cpid=$BG_PID
  reap "$cpid"; local crc=$RC
  reap "$spid"; local src=$RC
  if expect_rc "size mismatch: the client" 1 "$crc" "$clog" && once "size mismatch: the client" "$clog" "refused: client sends 64-byte messages but the server's RECV buffer is 16 bytes" &&
     expect_rc "size mismatch: the server" 1 "$src" "$slog" && once "size mismatch: the server" "$slog" "ERROR client sends 64-byte messages but the server's RECV buffer is 16 bytes" &&
     expect_lines "size mismatch: the server" "$slog" "remedy: start the server with -s 64 or more" &&
     no_leftovers "size mismatch" "$CASE_ID"; then
    pass "sizes that do not match: both sides refuse, naming the -s to use"
  fi

  # One server, one interactive client that types a line and stays; a second client is
  # told the server is busy; then the first client is killed, and the server notices at
  # once through its TCP connection, not after its 600 s wait for the next line.
  new_case interactive
  local id=$CASE_ID  # expect() below starts a case of its own
  slog="$CASE_LOG.server"; clog="$CASE_LOG.client"
  start 300 "$slog" "${U[@]}" "$BIN/server" -p "$port" --accept-timeout 60; spid=$BG_PID
  local fifo="$OUT/typed-$CASE_N"
  rm -f "$fifo"; mkfifo "$fifo"
  env BAD_INPUT_CASE="$CASE_ID" timeout -k 5 300 "${U[@]}" "$BIN/client" 127.0.0.1 -p "$port" --interactive \
    --connect-timeout 60 <"$fifo" >"$clog" 2>&1 &
  cpid=$!; T_PIDS+=("$cpid")
  local typing
  exec {typing}>"$fifo"
  echo "hello from the keyboard" >&"$typing"
  if ! wait_for_line "$clog" "server acknowledged #1" 120; then
    fail "interactive client: no echo of the first line within 120 s"; show "$clog"; show "$slog"
  else
    expect "a second client while the one-client server is busy: told so" 1 60 \
      "could not connect to 127.0.0.1:$port after [0-9]+ attempts in 1.0 s: ECONNREFUSED" \
      "serves one client per run and is busy with another one" -- "${U[@]}" "$BIN/client" 127.0.0.1 -p "$port" --connect-timeout 1
    stop_with KILL "$id" client || fail "interactive client: no process to kill"
  fi
  reap "$cpid"
  exec {typing}>&-
  rm -f "$fifo"
  reap "$spid"
  if expect_rc "interactive client killed: the server" 1 "$RC" "$slog" &&
     once "interactive client killed: the server" "$slog" "the client 127.0.0.1:[0-9]+ closed its TCP connection while we waited for message 2" &&
     expect_lines "interactive client killed: the server" "$slog" "remedy: the peer exited or was killed before saying goodbye" &&
     no_leftovers "interactive client killed" "$id"; then
    pass "an interactive client killed mid-session: the server notices its TCP connection closing and exits 1"
  fi

  # SIGTERM and Ctrl-C end a waiting server with its summary line.
  stop_cases "listening on TCP port $port" "^server: 0 message\\(s\\) received, verified and echoed$" \
    "${U[@]}" "$BIN/server" -p "$port" --accept-timeout 60

  runtime_config_cases
}

# A userspace runtime that rejects its configuration says so, and the lesson's remedy
# points there (not to /dev/infiniband). [CMD...]: the program that opens the device
# first (default: the server, which opens it before it listens).
runtime_config_cases() {
  local cmd=("$@")
  [ ${#cmd[@]} -gt 0 ] || cmd=("$BIN/server" -p "$port" --accept-timeout 5)
  expect "UROCE_ADDR=garbage: the runtime names it, the lesson points there" 1 60 \
    "UROCE_ADDR='garbage' refused" "remedy: see the line the library printed just above" \
    -- env UROCE_ADDR=garbage "${U[@]}" "${cmd[@]}"
  expect "UROCE_WINDOW=0: refused, not silently replaced" 1 60 \
    "UROCE_WINDOW='0' refused" "remedy: see the line the library printed just above" \
    -- env UROCE_WINDOW=0 "${U[@]}" "${cmd[@]}"
}

# --- lessons 02-04: RDMA CM (connected cases on the runtime) --------------------------------
# On the userspace runtime every process has an address of its own (a device bound to
# 127.0.0.x:4791), and an RDMA CM server bound to the wildcard address listens at its
# process's address only. So the servers here run at CM_ADDR, 127.0.<PORT / 256>.<PORT %
# 256> (UROCE_ADDR), the rule of the smokes' SMOKE_SERVER_ADDR (scripts/smoke-lib.sh):
# never in 127.0.0.x, which the runtime hands to the clients, and another one for every
# PORT, so that two of these tests never share it.
CM_ADDR=127.0.$((port / 256)).$((port % 256))
CM_SERVER=(env "UROCE_ADDR=$CM_ADDR" "${U[@]}" "$BIN/server")
CM_CLIENT=("${U[@]}" "$BIN/client" "$CM_ADDR")

# need_cm_runtime: the runtime's librdmacm.so.1 next to its libibverbs.so.1 (else the
# system's would look for the kernel's /dev/infiniband/rdma_cm).
need_cm_runtime() {
  [ -e "$BUILD_DIR/userspace-roce/lib/librdmacm.so.1" ] && return 0
  fail "no RDMA CM in the runtime: $BUILD_DIR/userspace-roce/lib/librdmacm.so.1 is missing (cmake --build $BUILD_DIR --target uroce_rdmacm)"
  return 1
}

# cm_server_up WHAT READY LOG ARGS...: start the lesson's server at CM_ADDR on PORT (a
# process of the current case) and wait (at most 60 s) for its READY line: it listens.
# Its pid in CM_SPID. If the line never comes: FAIL, the server is killed, and 1.
CM_SPID=""
cm_server_up() {
  local what=$1 ready=$2 log=$3; shift 3
  start 180 "$log" "${CM_SERVER[@]}" -p "$port" "$@"; CM_SPID=$BG_PID
  wait_for_line "$log" "$ready" 60 && return 0
  fail "$what: the server printed no line matching /$ready/ within 60 s"; show "$log"
  stop_with KILL "$CASE_ID" server
  reap "$CM_SPID"
  no_leftovers "$what" "$CASE_ID"
  return 1
}

# cm_connected_cases READY SUMMARY ARGS...: the cases every RDMA CM lesson shares. A
# server started with ARGS (it waits for clients) holds CM_ADDR and listens on PORT: on
# the runtime an address answers a ConnectRequest only while a process holds it, and then
# answers one for a port nobody listens on with a ConnectReject (invalid service ID), as
# a kernel host does for every port. A client asks for PORT + 1 there: it retries for its
# --connect-timeout, then says so once, with the remedy. Then that server, still waiting,
# gets SIGTERM, and another one SIGINT: each prints its summary line (matching SUMMARY).
cm_connected_cases() {
  local ready=$1 summary=$2; shift 2
  new_case cm-host
  local id=$CASE_ID log="$CASE_LOG.server"
  cm_server_up "nobody listening" "$ready" "$log" "$@" || return
  local spid=$CM_SPID
  expect "nobody listening on port $((port + 1)): the client gives up after --connect-timeout" 1 60 \
    "nobody listens on $(re "$CM_ADDR"):$((port + 1)) after [0-9]+ attempts" \
    "remedy: start the server first.*-p" -- "${CM_CLIENT[@]}" -p $((port + 1)) --connect-timeout 1
  stopped_by TERM "$id" "SIGTERM: the server that waited meanwhile prints its summary line" "$log" "$spid" "$summary"
  signal_case INT "$ready" "$summary" "${CM_SERVER[@]}" -p "$port" "$@"
}

# --- lessons 02-04: what is refused before a device is opened, then the connected cases ----
cases_02() {
  usage_cases
  timeout_options client --connect-timeout 0 86400 127.0.0.1
  timeout_options server --accept-timeout 1 86400
  timeout_options server --idle-timeout 1 86400
  expect "--range that is not START:END" 2 30 "--range '5:2' is not START:END with START < END" "Usage:" \
    -- "$BIN/client" 127.0.0.1 --range 5:2
  expect "--initiator-depth 300" 2 30 "--initiator-depth: Value 300 not in range" "Usage:" \
    -- "$BIN/client" 127.0.0.1 --initiator-depth 300
  expect "server --clients 0" 2 30 "--clients: Value 0 not in range" "Usage:" -- "$BIN/server" --clients 0

  need_cm_runtime || return
  local ready="step 7: wait for CONNECT_REQUEST"
  cm_connected_cases "$ready" "^server: 0 client\\(s\\) served, 0 rejected$" --persistent --accept-timeout 60

  # A persistent server rejects what its ConnectRequest says it cannot serve, with the
  # reason in the ConnectReject's private data, and serves the next client. A --range
  # past the buffer the server advertised is refused by the client itself, after
  # connecting: the server counts it as served (its QP saw nothing).
  new_case rejected
  local id=$CASE_ID slog="$CASE_LOG.server" refused="ESTABLISHED, got RDMA_CM_EVENT_REJECTED \\(status 28: .*the server says: "
  cm_server_up "rejected clients" "$ready" "$slog" --persistent --clients 2 --accept-timeout 60 || return
  local spid=$CM_SPID
  expect "client --bad-private-data version: rejected with the server's reason" 1 60 \
    "${refused}malformed CM private data: version 9, this build speaks 1" \
    "remedy: the server refused the connection; its reason is above" \
    -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30 --bad-private-data version
  expect "client -s 5000 against a 4096-byte buffer: rejected, told the -s the server needs" 1 60 \
    "${refused}the client wants to write 5000 bytes; the server's buffer is 4096 \\(start the server with -s 5000\\)" \
    "remedy: the server refused the connection; its reason is above" \
    -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30 -s 5000
  expect "client --range 0:5000 past the advertised 4096 bytes: refused before posting" 1 60 \
    "--range 0:5000 reaches byte 5000 but the server advertised only 4096 bytes; nothing was posted" \
    "remedy: choose END <= 4096" -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30 --range 0:5000
  expect "a good client after them is served" 0 60 "^client: wrote 17 bytes, read back 4096 bytes .*verified" \
    "step 14: DISCONNECTED" -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30
  reap "$spid"
  check "rejected clients: the persistent server carried on, and counts them" 0 "$RC" "$slog" \
       "rejecting the connection: malformed CM private data: version 9" \
       "rejecting the connection: the client wants to write 5000 bytes" \
       "^server: 2 client\\(s\\) served, 2 rejected$"
  no_leftovers "rejected clients" "$id"
}

cases_03() {
  usage_cases
  timeout_options client --connect-timeout 0 86400 127.0.0.1
  timeout_options server --accept-timeout 1 86400
  expect "server --slots 0" 2 30 "--slots: Value 0 not in range" "Usage:" -- "$BIN/server" --slots 0
  expect "server --rnr-retry 8" 2 30 "--rnr-retry: Value 8 not in range" "Usage:" -- "$BIN/server" --rnr-retry 8

  need_cm_runtime || return
  local ready="step 4: wait for CONNECT_REQUEST"
  cm_connected_cases "$ready" "^server: 0 message\\(s\\) received through 8 slots, each announced by its immediate value$" \
    --accept-timeout 60

  # Messages larger than the server's slots: it rejects the client with the reason in the
  # ConnectReject and, serving one client per run, exits 1 naming both remedies.
  new_case too-big
  local id=$CASE_ID slog="$CASE_LOG.server"
  cm_server_up "messages larger than the slots" "$ready" "$slog" --accept-timeout 60 || return
  local spid=$CM_SPID
  expect "client -s 128 against 64-byte slots: rejected, told the -s the server needs" 1 60 \
    "ESTABLISHED, got RDMA_CM_EVENT_REJECTED \\(status 28: .*the server says: messages of 128 bytes do not fit 64-byte slots \\(start the server with -s 128\\)" \
    "remedy: the server refused the connection; its reason is above" -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30 -s 128
  reap "$spid"
  if expect_rc "messages larger than the slots: the server" 1 "$RC" "$slog" &&
     once "messages larger than the slots: the server" "$slog" "ERROR +rejected the client: messages of 128 bytes do not fit 64-byte slots" &&
     expect_lines "messages larger than the slots: the server" "$slog" "remedy: run the client with a smaller -s, or the server with a larger one"; then
    no_leftovers "messages larger than the slots" "$id" && pass "messages larger than the slots: the server rejects the client, says why and exits 1"
  else
    no_leftovers "messages larger than the slots" "$id"
  fi
}

cases_04() {
  usage_cases
  timeout_options client --connect-timeout 0 86400 127.0.0.1
  timeout_options server --accept-timeout 1 86400
  timeout_options server --idle-timeout 1 86400
  expect "server --elements 0" 2 30 "--elements: Value 0 not in range" "Usage:" -- "$BIN/server" --elements 0
  # Program files are read and assembled before anything is connected.
  local files="$OUT/files" remedy="catalogue: sum, min, max"
  mkdir -p "$files"
  : >"$files/empty.lasm"
  printf '; nothing but a comment\n' >"$files/comment.lasm"
  printf 'mov r0, 1\n\001\377\376 exit\n' >"$files/binary.lasm"
  head -c 70000 /dev/zero | tr '\0' ';' >"$files/huge.lasm"
  local f
  f=$(re "$files")
  expect "-r /dev/zero: read no further than 64 KiB" 1 30 "'/dev/zero' has more than 65536 bytes" "at most 256 instructions" -- "$BIN/client" 127.0.0.1 -r /dev/zero
  expect "-r /dev/null: not an empty program" 1 30 "'/dev/null' has no instructions" "a program ends with exit" -- "$BIN/client" 127.0.0.1 -r /dev/null
  expect "-r DIRECTORY" 1 30 "'$f' is a directory, not a program file" "$remedy" -- "$BIN/client" 127.0.0.1 -r "$files"
  expect "-r an empty file" 1 30 "'$f/empty.lasm' has no instructions" "a program ends with exit" -- "$BIN/client" 127.0.0.1 -r "$files/empty.lasm"
  expect "-r a file of comments only" 1 30 "'$f/comment.lasm' has no instructions" "a program ends with exit" -- "$BIN/client" 127.0.0.1 -r "$files/comment.lasm"
  expect "-r a binary file: the byte is named, not printed" 1 30 "is not an assembly text file \\(control byte 0x01 at offset 10\\)" "give a .lasm file of text" -- "$BIN/client" 127.0.0.1 -r "$files/binary.lasm"
  if grep -q $'\001' "$CASE_LOG"; then fail "-r a binary file: its raw bytes reached the message ($CASE_LOG)"; fi
  expect "-r a 70000-byte file: refused by its size" 1 30 "'$f/huge.lasm' has 70000 bytes; a program file has at most 65536" "at most 256 instructions" -- "$BIN/client" 127.0.0.1 -r "$files/huge.lasm"
  expect "-r count_lt: (an empty argument, not 0)" 1 30 "--run 'count_lt:': argument 1 is empty" "e.g. --run count_lt:500" -- "$BIN/client" 127.0.0.1 -r count_lt:
  expect "-r histogram:10:x" 1 30 "argument 2 'x' is not a decimal integer" "e.g. --run count_lt:500" -- "$BIN/client" 127.0.0.1 -r histogram:10:x
  expect "-r sum:1:2:3:4:5" 1 30 "more than 4 arguments" "at most 4 arguments" -- "$BIN/client" 127.0.0.1 -r sum:1:2:3:4:5
  expect "-r no_such_thing.lasm" 1 30 "'no_such_thing.lasm' is neither a catalogue function nor a readable file \\(ENOENT" "$remedy" -- "$BIN/client" 127.0.0.1 -r no_such_thing.lasm

  need_cm_runtime || return
  local ready="step 4: wait for CONNECT_REQUEST"
  cm_connected_cases "$ready" "^server: 0 client\\(s\\) served, 0 rejected$" --persistent --accept-timeout 60

  # Programs the server refuses: one its verifier refuses before it runs, one stopped
  # while it runs. Each client is told which check and where, exits 3, and the server
  # serves the next client.
  new_case refused-programs
  local id=$CASE_ID slog="$CASE_LOG.server" programs="$ROOT/lessons/04-lambda/programs"
  cm_server_up "refused programs" "$ready" "$slog" --clients 3 --accept-timeout 60 || return
  local spid=$CM_SPID
  expect "a jump out of the program: refused by the verifier, exit 3" 3 60 \
    "^client: .*bad_jump.lasm refused: jump_out_of_range \\(status 7\\): instruction 1: " \
    "^client: 1 task\\(s\\), 1 refused or stopped by the server$" \
    -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30 -r "$programs/bad_jump.lasm"
  expect "a division by zero: stopped by the interpreter, exit 3" 3 60 \
    "^client: .*bad_div_zero.lasm refused: divide_by_zero \\(status 12\\): instruction [0-9]+: " \
    "^client: 1 task\\(s\\), 1 refused or stopped by the server$" \
    -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30 -r "$programs/bad_div_zero.lasm"
  expect "the next client is served" 0 60 "^client: sum = [0-9]+" "^client: 1 task\\(s\\), 0 refused" \
    -- "${CM_CLIENT[@]}" -p "$port" --connect-timeout 30 -r sum
  reap "$spid"
  check "refused programs: the server carried on" 0 "$RC" "$slog" \
       "step 8: program refused by the verifier: jump_out_of_range" "divide_by_zero" \
       "^server: 3 client\\(s\\) served, 0 rejected$"
  no_leftovers "refused programs" "$id"
}

# --- lesson 05: TLS, many clients (connected cases on the runtime) -------------------------
cases_05() {
  usage_cases
  timeout_options client --connect-timeout 0 86400 127.0.0.1
  timeout_options server --accept-timeout 0 86400
  timeout_options server --idle-timeout 1 86400
  timeout -k 5 120 "$ROOT/scripts/make-certs.sh" "$CERTS" >"$OUT/make-certs.log" 2>&1 \
    || { fail "scripts/make-certs.sh $CERTS failed"; show "$OUT/make-certs.log"; return; }
  local s
  for s in 1 15; do
    expect "server -s $s: too small for the acknowledgement" 2 30 "-s $s is too small: the server's acknowledgement" \
      "give -s 16 or more" -- "$BIN/server" -s "$s"
    expect "client -s $s: too small for the acknowledgement" 2 30 "-s $s is too small: the server's acknowledgement" \
      "give -s 16 or more" -- "$BIN/client" 127.0.0.1 -s "$s"
  done
  local server=("${U[@]}" "$BIN/server" --certs "$CERTS" -p "$port")
  local client=("${U[@]}" "$BIN/client" 127.0.0.1 -p "$port" --ca "$CERTS/ca.pem" --connect-timeout 60)

  # A client with another -s than the server's: refused over TLS, before any QP.
  new_case size-mismatch
  local id=$CASE_ID slog="$CASE_LOG.server"
  start 120 "$slog" "${server[@]}" --clients 1; local spid=$BG_PID
  expect "client -s 16 against a server with -s 256: refused, told which -s" 1 120 \
    "the server refused us: the client's messages are 16 bytes, this server's slots 256; use the same -s on both sides" \
    "remedy: run this client with -s 256 \\(the server's -s\\)$" -- "${client[@]}" -s 16 -e "send hi"
  reap "$spid"
  check "size mismatch: the server counts the session as failed" 0 "$RC" "$slog" \
    "refused 127.0.0.1:[0-9]+: the client's messages are 16 bytes" "^server: 1 session\\(s\\), 1 failed, 0 refused" &&
    no_leftovers "size mismatch" "$id"

  # A client killed mid-session is a failed session, not a served one.
  # While it holds the server's only slot (--max-clients 1), the next client is refused
  # as "server full", told to come back later.
  new_case killed-client
  id=$CASE_ID slog="$CASE_LOG.server"; local clog="$CASE_LOG.client"
  start 180 "$slog" "${server[@]}" --clients 1 --max-clients 1; spid=$BG_PID
  local fifo="$OUT/typed-$CASE_N"
  rm -f "$fifo"; mkfifo "$fifo"
  env BAD_INPUT_CASE="$CASE_ID" timeout -k 5 120 "${client[@]}" <"$fifo" >"$clog" 2>&1 &
  local cpid=$!; T_PIDS+=("$cpid")
  local typing
  exec {typing}>"$fifo"
  echo "send hello" >&"$typing"
  if wait_for_line "$clog" "server says 'ack 5 bytes" 120; then
    expect "a second client while the only slot is taken: server full, try again later" 1 120 \
      "the server refused us: server full: 1 clients connected; try again later" \
      "remedy: try again later, or ask for more --max-clients$" -- "${client[@]}" -e "send too many"
    stop_with KILL "$id" client || fail "killed client: no process to kill"
  else
    fail "killed client: no acknowledgement within 120 s"; show "$clog"
  fi
  reap "$cpid"
  exec {typing}>&-
  rm -f "$fifo"
  reap "$spid"
  check "a client killed mid-session counts as failed, the one refused as refused" 0 "$RC" "$slog" \
    "closed its TLS connection after 1 message\\(s\\), without a goodbye" "^server: 1 session\\(s\\), 1 failed, 1 refused" &&
    no_leftovers "killed client" "$id"

  # SIGTERM and Ctrl-C end a server waiting for clients with its summary line.
  stop_cases "listening on TCP port $port" "^server: 0 session\\(s\\), 0 failed, 0 refused \\(server full\\)$" \
    "${server[@]}"

  # Out of descriptors: the server says so once with the remedy, backs off instead of
  # spinning, and serves again once descriptors are free. 40 idle TCP connections
  # against a limit of 32 descriptors; each is dropped after -t 3 s without a handshake.
  # Not in a sanitized build (SANITIZE=1): the sanitizers' own checks need descriptors
  # too (UBSan's vptr check reports a false "invalid vptr" when none is left); the plain
  # build runs this case.
  if readelf -d "$BIN/server" 2>/dev/null | grep -Eq 'NEEDED.*lib(asan|ubsan)'; then
    echo "$T_NAME: SKIP EMFILE: $BIN/server is built with sanitizers, which need free descriptors themselves"
    runtime_config_cases
    return
  fi
  new_case emfile
  slog="$CASE_LOG.server"; local plog="$CASE_LOG.peer"
  start 300 "$slog" bash -c 'ulimit -n 32 && exec "$@"' - "${server[@]}" --max-clients 1000 -t 3; spid=$BG_PID
  if wait_listen "$port" 60; then
    start 200 "$plog" python3 -c '
import socket, sys
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60) for _ in range(40)]
print("holding", len(held), "connections", flush=True)
for s in held:
    s.settimeout(120)
    try:
        if s.recv(1) != b"":  # the server drops each silent peer after its -t: end of stream
            sys.exit("the server sent data to a silent peer")
    except ConnectionResetError:
        pass  # or a reset: dropped all the same
    except socket.timeout:
        sys.exit("a silent peer was not dropped within 120 s")
print("all dropped", flush=True)
' "$port"
    local ppid=$BG_PID
    reap "$ppid"
    expect_rc "EMFILE: the idle peers were all dropped" 0 "$RC" "$plog"
    # The peers were all accepted, so accept() worked again after any EMFILE.
    if grep -q "accept failed: EMFILE" "$slog" && ! grep -q "accept works again after" "$slog"; then
      fail "EMFILE: all peers were accepted, but the server never said accept works again"; show "$slog"
    fi
    bg 120 "$CASE_LOG.after" env BAD_INPUT_CASE="$CASE_ID" "${client[@]}" -e "send after"
    reap "$BG_PID"
    check "EMFILE: a good client is served afterwards" 0 "$RC" "$CASE_LOG.after" "server says 'ack 5 bytes"
    stop_with TERM "$CASE_ID" server
  else
    fail "EMFILE: the server did not start listening"; show "$slog"
  fi
  reap "$spid"
  if check "EMFILE, then SIGTERM: the summary line, exit 143" 143 "$RC" "$slog" \
       "accept failed: EMFILE \\(Too many open files\\); remedy: this process may open 32 files \\(ulimit -n\\): raise that limit" \
       "^stopped by SIGTERM$" "^server: [0-9]+ session\\(s\\), [0-9]+ failed, 0 refused"; then
    emfile_backoff "$slog"
  fi
  no_leftovers "EMFILE" "$CASE_ID"

  runtime_config_cases
}

# emfile_backoff LOG: the warning is not repeated for every failed accept(), and the
# attempts between two successes are few (about one a second; a spinning server makes
# thousands in the same time).
emfile_backoff() {
  local warnings recoveries worst
  warnings=$(grep -c "accept failed: EMFILE" "$1")
  recoveries=$(grep -c "accept works again after" "$1")
  worst=$(sed -n 's/.*accept works again after \([0-9]*\) failed attempt.*/\1/p' "$1" | sort -n | tail -n1)
  if [ "$warnings" -le $((recoveries + 1)) ] && [ -n "$worst" ] && [ "$worst" -le 30 ]; then
    pass "EMFILE: $warnings warning(s) for $recoveries recovery(ies); at most $worst failed accept() in a row (one a second)"
  else
    fail "EMFILE: $warnings warnings, $recoveries recoveries, up to '${worst:-?}' failed accept() in a row (log: $1)"
  fi
}

# --- lesson 06: measurements (connected cases on the runtime) --------------------------------
# Its smoke (lessons/06-performance/smoke.sh local) has the lesson's own refusals: the
# usage errors a learner meets first, inline that cannot be, the device's window limit,
# a vanished client, a TEST the server must refuse. Here: every option's range and form.
cases_06() {
  usage_cases
  timeout_options client --connect-timeout 0.1 3600 127.0.0.1
  timeout_options server --accept-timeout 1 86400
  expect "client -s 8388609: above the 8 MiB this lesson registers" 2 30 \
    "^-s 8388609: more than 8388608 bytes, the largest message this lesson registers memory for$" \
    "the largest message this lesson registers memory for" -- "$BIN/client" 127.0.0.1 -s 8388609
  local option value
  for option in "--window 0" "--window 1048577" "--signal-every 0" "--signal-every 8193" "--chain 0" \
                "--chain 1025" "--sizes 0" "--sizes 2,8388609"; do
    value=${option#* }; value=${value##*,}
    expect "client $option: out of range" 2 30 "${option%% *}: Value $value not in range" "Usage:" \
      -- "$BIN/client" 127.0.0.1 $option
  done
  expect "client --sizes 2,x: not a number" 2 30 "--sizes: Value x not in range" "Usage:" \
    -- "$BIN/client" 127.0.0.1 --sizes 2,x
  expect "client --run bogus" 2 30 "--run: bogus not in \\{pingpong,send,write,write-imm,read\\}" "Usage:" \
    -- "$BIN/client" 127.0.0.1 --run bogus
  for option in --inline --event; do
    expect "client $option without --run" 2 30 "^--inline and --event go with --run" "steps 4 and 7 use them on their own" \
      -- "$BIN/client" 127.0.0.1 $option
  done
  # --steps is read before a device is opened or anything connected.
  for value in 9 0 3-1 1-9; do
    expect "client --steps $value: not within 1-8" 1 30 "--steps $value: '$value' is not within 1-8" \
      "remedy: steps are 1-7 \\(techniques\\) and 8 \\(the sweep\\)" -- "$BIN/client" 127.0.0.1 --steps "$value"
  done
  for value in x 1,,2 1-x 2-; do
    expect "client --steps '$value': not a step or a range" 1 30 "is not a step or a range" \
      "remedy: write e.g. 1-7, 8 or 1,3,6" -- "$BIN/client" 127.0.0.1 --steps "$value"
  done
  expect "client --csv in a directory that does not exist" 1 60 \
    "cannot write --csv /nonexistent/x.csv: ENOENT" "remedy: choose a writable path" \
    -- "$BIN/client" 127.0.0.1 -p "$port" --csv /nonexistent/x.csv --connect-timeout 1

  expect "nobody listening: the client gives up after --connect-timeout" 1 60 \
    "could not connect to 127.0.0.1:$((port + 1)) after [0-9]+ attempts in 1.0 s: ECONNREFUSED" \
    "nothing listens on TCP port $((port + 1)) there" -- "${U[@]}" "$BIN/client" 127.0.0.1 -p $((port + 1)) --connect-timeout 1

  # SIGTERM and Ctrl-C end a server waiting for its client with its summary line.
  stop_cases "listening on TCP port $port" "^server: 0 measurement\\(s\\) served, the data of each checked$" \
    "${U[@]}" "$BIN/server" -p "$port" --accept-timeout 60

  # Lesson 06's server opens its device only once a client has said what it needs; the
  # client opens its own before it connects.
  runtime_config_cases "$BIN/client" 127.0.0.1 -p "$port" --connect-timeout 1
}

# --- lesson 07: failures on purpose (connected cases on the runtime) ---------------------
# Its smoke (lessons/07-when-it-breaks/smoke.sh local) has the lesson's own refusals: no
# --break, an unknown case, --list, nobody listening, a BREAK naming no case. Here: every
# option's range and form, and a stopped server.
cases_07() {
  expect "client without --break" 2 30 "--break NAME is required \\(one of: gid-kinds, " "one of:" -- "$BIN/client"
  expect "client --break no-such-case" 1 30 "no case named 'no-such-case'" "remedy: name one of: gid-kinds, " \
    -- "$BIN/client" --break no-such-case 127.0.0.1
  expect "client --break bad-rkey without a server" 1 30 "case bad-rkey needs a server" \
    "remedy: give the server's address: client --break bad-rkey SERVER" -- "$BIN/client" --break bad-rkey
  expect "an option that does not exist" 2 30 "--no-such-option" "Usage:" -- "$BIN/server" --no-such-option
  expect "server -p 0" 2 30 "--port: Value 0 not in range" "Usage:" -- "$BIN/server" -p 0
  expect "-v and -q together" 2 30 "-v and -q contradict each other" "pick one" -- "$BIN/client" --break bad-rkey 127.0.0.1 -v -q
  timeout_options client --timeout 0.1 3600 --break bad-rkey 127.0.0.1
  timeout_options client --connect-timeout 0.1 3600 --break bad-rkey 127.0.0.1
  timeout_options server --timeout 0.1 3600
  timeout_options server --accept-timeout 0.1 3600

  expect "nobody listening: the client gives up after --connect-timeout" 1 60 \
    "could not connect to 127.0.0.1:$((port + 1)) after [0-9]+ attempts in 1.0 s: ECONNREFUSED" \
    "nothing listens on TCP port $((port + 1)) there" \
    -- "${U[@]}" "$BIN/client" --break bad-rkey 127.0.0.1 -p $((port + 1)) --connect-timeout 1

  # SIGTERM and Ctrl-C end a server waiting for its client with its summary line.
  stop_cases "listening on TCP port $port" "^server: no case run \\(stopped while waiting for a client\\)$" \
    "${U[@]}" "$BIN/server" -p "$port" --accept-timeout 60

  # Both programs open their device before anything else.
  runtime_config_cases "$BIN/client" --break bad-rkey 127.0.0.1 -p "$port" --connect-timeout 1
}

case $n in
  01 | 02 | 03 | 04 | 05 | 06 | 07) "cases_$n" ;;
  *) fail "no bad-input cases for lesson '$lesson'" ;;
esac
t_finish
