# Shared by the userspace runtime's test scripts (sourced, not run): where things are,
# PASS/FAIL counting, bounded background processes that are cleaned up on exit, waiting
# (bounded) for a TCP listener or a log line, and recording loopback with tcpdump.
#
# The sourcing script calls `t_init NAME` first and `t_finish` last. Every process it
# starts runs under `timeout`, and the EXIT trap stops whatever is still running.
#
# Environment: BUILD_DIR (default <repo>/build): the build tree with the runtime
# (userspace-roce/lib), the lessons and roce_bench.

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$TESTS_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
RUNTIME="$ROOT/scripts/userspace-roce.sh"
WIRE_CHECK="$ROOT/tests/tools/roce_wire_check.py"
LESSON01="$BUILD_DIR/lessons/01-verbs-send-recv"
BENCH="$BUILD_DIR/userspace-roce/bench/roce_bench"
PYTHON=/usr/bin/python3   # Debian's python3-scapy is only visible to this one

T_NAME="" OUT="" T_PASSED=0 T_FAILED=0
T_PIDS=()   # background processes still to be stopped on exit

pass() { T_PASSED=$((T_PASSED + 1)); echo "$T_NAME: PASS $*"; }
fail() { T_FAILED=$((T_FAILED + 1)); echo "$T_NAME: FAIL $*"; }
# show LOG: the last lines of a log, indented.
show() { echo "    --- tail of $1"; tail -n "${2:-20}" "$1" 2>/dev/null | sed 's/^/    | /'; }

# t_init NAME: logs go to $BUILD_DIR/userspace-roce/test-out/NAME/ (emptied first).
t_init() {
  T_NAME=$1
  OUT="$BUILD_DIR/userspace-roce/test-out/$T_NAME"
  rm -rf "$OUT"
  mkdir -p "$OUT"
  trap t_cleanup EXIT
  trap 'echo "$T_NAME: FAIL interrupted"; exit 1' INT TERM
  if [ ! -e "$BUILD_DIR/userspace-roce/lib/libibverbs.so.1" ]; then
    echo "$T_NAME: FAIL no runtime at $BUILD_DIR/userspace-roce/lib/libibverbs.so.1 (cmake --build $BUILD_DIR --target uroce_verbs)"
    exit 1
  fi
  echo "$T_NAME: logs in $OUT"
}

# t_finish: the tally; exit 0 only if something passed and nothing failed.
t_finish() {
  echo "$T_NAME: $T_PASSED passed, $T_FAILED failed"
  [ "$T_FAILED" -eq 0 ] && [ "$T_PASSED" -gt 0 ] && exit 0
  exit 1
}

# t_cleanup: stop every background process still running (each is a `timeout`, which
# passes the signal on to its program; -k makes sure it dies).
t_cleanup() {
  local pid
  for pid in "${T_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
  T_PIDS=()
}

# t_skip WHY HOW: this host lacks what the test needs to check what it is for (WHY: what
# is missing; HOW: how to get it, or how to run the test with it). Exit 77, which ctest
# reports as skipped; but under CI=true (or 1, as CI services set it) a FAIL and exit 1:
# a skipped check would let CI pass without it. CI must have every package the tests need
# (scripts/test.sh runs scripts/install-deps.sh first) and run as root for the captures.
t_skip() {
  case ${CI:-} in
    true|TRUE|True|1)
      echo "${T_NAME:-$(basename "$0")}: FAIL $1 (CI=$CI: in CI a skip is a failure); $2"
      exit 1 ;;
  esac
  echo "${T_NAME:-$(basename "$0")}: SKIP $1; $2"
  exit 77
}

# need FILE...: executables the test needs; a missing one is a failure (not a skip).
need() {
  local f ok=0
  for f in "$@"; do
    [ -x "$f" ] || { fail "$f is not built (cmake --build $BUILD_DIR)"; ok=1; }
  done
  return $ok
}

# bg SECONDS LOG CMD...: start CMD in the background under timeout; BG_PID is its pid.
bg() {
  local secs=$1 log=$2; shift 2
  timeout -k 5 "$secs" "$@" >"$log" 2>&1 </dev/null &
  BG_PID=$!
  T_PIDS+=("$BG_PID")
}

# reap PID: wait for a background process, RC is its exit status (124: timed out).
reap() {
  wait "$1"; RC=$?
  local keep=() p
  for p in "${T_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  T_PIDS=("${keep[@]}")
}

# wait_listen PORT SECONDS: until something listens on TCP PORT (bounded), for clients
# that do not retry their connect (ibv_rc_pingpong).
wait_listen() {
  local deadline=$((SECONDS + $2))
  until [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.05
  done
}

# need_rdmacm: the runtime's librdmacm.so.1 must be built next to its libibverbs.so.1, and
# the loader must pick it for Debian's RDMA CM programs (rping); else FAIL and finish.
need_rdmacm() {
  local lib="$BUILD_DIR/userspace-roce/lib/librdmacm.so.1" found
  if [ ! -e "$lib" ]; then
    fail "no RDMA CM in the runtime: $lib is missing (cmake --build $BUILD_DIR --target uroce_rdmacm)"
    t_finish
  fi
  found=$(LD_LIBRARY_PATH="$BUILD_DIR/userspace-roce/lib" ldd "$(command -v rping)" 2>&1 | awk '$1 == "librdmacm.so.1" { print $3 }')
  if [ "$(readlink -f "$found")" != "$(readlink -f "$lib")" ]; then
    fail "rping would load librdmacm.so.1 from '${found:-nowhere}', not the runtime's $lib"
    t_finish
  fi
}

# wait_roce_addr ADDR SECONDS: until a runtime process has its device bound at ADDR (a UDP
# socket on ADDR:4791), bounded; 1 if none is.
wait_roce_addr() {
  local deadline=$((SECONDS + $2))
  until [ -n "$(ss -Hlun "src $1:4791" 2>/dev/null)" ]; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.05
  done
}

# wait_for_line LOG REGEX SECONDS: until a line appears in the log (bounded).
wait_for_line() {
  local deadline=$((SECONDS + $3))
  until grep -Eq -- "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.05
  done
}

# run_pair NAME [LISTEN_PORT]: the commands in the arrays SERVER and CLIENT, both on this
# host, each under `timeout 120`; the server starts first. Clients that retry their
# connect start at once; with LISTEN_PORT the client starts only once the server listens
# on that TCP port (bounded). Logs: $OUT/NAME-server.log, $OUT/NAME-client.log.
# Sets SRC and CRC (exit statuses; 124 = timed out).
SERVER=() CLIENT=()
run_pair() {
  local name=$1 listen=${2:-}
  bg 120 "$OUT/$name-server.log" "${SERVER[@]}"
  local spid=$BG_PID
  if [ -n "$listen" ] && ! wait_listen "$listen" 30; then
    echo "    ($name: the server did not listen on TCP port $listen within 30 s)"
  fi
  bg 120 "$OUT/$name-client.log" "${CLIENT[@]}"
  local cpid=$BG_PID
  reap "$cpid"; CRC=$RC
  reap "$spid"; SRC=$RC
}

# cm_pair NAME ADDR REJECTED [READY]: an RDMA CM server and client, the commands in the
# arrays SERVER and CLIENT, each under `timeout 120`. The server starts first, at ADDR
# (its command binds there, or runs with --addr); the client starts once a line matching
# READY is in the server's log (the runtime's "librdmacm: listening on" at --log 1), or
# without READY once a runtime device is bound at ADDR (bounded: 30 s). A ConnectRequest
# that arrives after the server's device is up but before it listens is refused (invalid
# service ID), and a client without retries then fails: while the client's log has a
# line matching REJECTED (empty: never) and the server is still running, the client is
# run again, at most 5 times in all. Logs:
# $OUT/NAME-server.log, $OUT/NAME-client.log (earlier tries: NAME-client.try-N.log). A
# server still running 30 s after its client ended is stopped (SIGTERM: 143). Sets SRC
# and CRC (exit statuses; 124 = timed out), TRIES, and CLIENT_T0 (when the last try of
# the client started: seconds since the epoch, as tcpdump's timestamps).
cm_pair() {
  local name=$1 addr=$2 rejected=$3 ready=${4:-}
  bg 120 "$OUT/$name-server.log" "${SERVER[@]}"
  local spid=$BG_PID
  if [ -n "$ready" ]; then
    wait_for_line "$OUT/$name-server.log" "$ready" 30 \
      || echo "    ($name: no line matching /$ready/ in the server's log within 30 s; the client starts all the same)"
  else
    wait_roce_addr "$addr" 30 \
      || echo "    ($name: no runtime device bound at $addr:4791 within 30 s; the client starts all the same)"
  fi
  TRIES=0
  while :; do
    TRIES=$((TRIES + 1))
    CLIENT_T0=$(date +%s.%N)
    bg 120 "$OUT/$name-client.log" "${CLIENT[@]}"
    reap "$BG_PID"; CRC=$RC
    if [ "$CRC" -eq 0 ] || [ $TRIES -ge 5 ] || [ -z "$rejected" ] || ! kill -0 "$spid" 2>/dev/null \
       || ! grep -Eq -- "$rejected" "$OUT/$name-client.log"; then
      break
    fi
    echo "    ($name: try $TRIES refused before the server listened: $(grep -Em1 -- "$rejected" "$OUT/$name-client.log"); again)"
    mv "$OUT/$name-client.log" "$OUT/$name-client.try-$TRIES.log"
  done
  # A server whose client is gone gets 30 s to notice before it is stopped (143).
  local deadline=$((SECONDS + 30))
  while kill -0 "$spid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  kill -TERM "$spid" 2>/dev/null
  reap "$spid"; SRC=$RC
}

# expect_rc WHAT WANT GOT LOG: the exit status; on a mismatch, FAIL with the log tail.
expect_rc() {
  [ "$3" -eq "$2" ] && return 0
  local why="exit $3, expected $2"
  [ "$3" -eq 124 ] && why="timed out (killed by timeout), expected exit $2"
  fail "$1: $why (log: $4)"; show "$4"
  return 1
}
# expect_lines WHAT LOG REGEX...: lines the log must contain.
expect_lines() {
  local what=$1 log=$2 re; shift 2
  for re in "$@"; do
    grep -Eq -- "$re" "$log" && continue
    fail "$what: no line matching /$re/ in $log"; show "$log"
    return 1
  done
}
# check WHAT WANT_RC GOT_RC LOG [REGEX...]: exit status and lines together, one PASS.
check() {
  local what=$1 want=$2 got=$3 log=$4; shift 4
  expect_rc "$what" "$want" "$got" "$log" || return 1
  expect_lines "$what" "$log" "$@" || return 1
  pass "$what"
}

# --- capture ---------------------------------------------------------------------------
# can_capture: root and tcpdump present; else 1, with NO_CAPTURE saying what is missing
# and NO_CAPTURE_HOW the remedy, for the caller's t_skip.
NO_CAPTURE="" NO_CAPTURE_HOW=""
can_capture() {
  if [ "$(id -u)" -ne 0 ]; then
    NO_CAPTURE="not root (uid $(id -u)): tcpdump needs root to capture lo"
    NO_CAPTURE_HOW="run it as root: cd $BUILD_DIR && sudo ctest -R '^$T_NAME\$'"
    NO_CAPTURE_HOW+=" (CI: run scripts/test.sh as root)"
    return 1
  fi
  if ! command -v tcpdump >/dev/null; then
    NO_CAPTURE="no tcpdump"
    NO_CAPTURE_HOW="install it with scripts/install-deps.sh (as root), then run this test again"
    return 1
  fi
}

# capture_start PCAP FILTER: tcpdump on lo into PCAP, in the background (at most 600 s);
# returns once tcpdump says it is listening (bounded: 15 s), 1 if it never does.
CAP_PID="" CAP_FILE="" CAP_LOG=""
capture_start() {
  CAP_FILE=$1 CAP_LOG="${1%.pcap}-tcpdump.log"
  # -Z root: keep writing as root into the build tree; -U --immediate-mode: every
  # packet written as it comes. In immediate mode libpcap's ring has one slot of the
  # snapshot length per packet (up to lo's MTU, 64 KiB, by default), so a burst of
  # runtime packets would soon overflow it: -s 8000 (a RoCE packet at path MTU 4096 is
  # under 4200 bytes) with -B 65536 (64 MiB) gives it about 8000 slots. nice -n -10: the
  # runtime's busy-polling programs must not starve the capture of CPU.
  bg 600 "$CAP_LOG" nice -n -10 tcpdump -Z root -i lo -s 8000 -B 65536 -U --immediate-mode \
    -w "$CAP_FILE" "$2"
  CAP_PID=$BG_PID
  if ! wait_for_line "$CAP_LOG" "listening on" 15; then
    fail "tcpdump did not start listening on lo within 15 s"; show "$CAP_LOG"
    return 1
  fi
}

# capture_stop: let tcpdump write out what it has (the file stops growing; at most 10 s),
# stop it with SIGINT and wait for it. If the kernel dropped packets because tcpdump fell
# behind (a loaded machine), the capture misses some: that is said, not failed, since the
# checks hold for every packet captured (a missing packet never makes a retransmission).
capture_stop() {
  local size=-1 now deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ]; do
    now=$(stat -c %s "$CAP_FILE" 2>/dev/null || echo 0)
    [ "$now" = "$size" ] && break
    size=$now
    sleep 0.3
  done
  kill -INT "$CAP_PID" 2>/dev/null
  reap "$CAP_PID"
  if [ "$RC" -ne 0 ]; then
    fail "tcpdump exited $RC"; show "$CAP_LOG"; return 1
  fi
  local captured dropped
  captured=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$CAP_LOG")
  dropped=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$CAP_LOG")
  if [ -z "$captured" ] || [ -z "$dropped" ]; then
    fail "tcpdump did not report its packet counts"; show "$CAP_LOG"; return 1
  fi
  echo "    capture: $captured packets captured, $dropped dropped by the kernel -> $CAP_FILE"
  if [ "$dropped" != 0 ]; then
    echo "    NOTE: tcpdump fell behind and the kernel dropped packets (tcpdump counts each"
    echo "    loopback packet twice): the capture is incomplete; every check below holds for the"
    echo "    packets it has"
  fi
}

# wire_check WHAT PCAP ARGS...: roce_wire_check.py on PCAP (output in PCAP.check.txt,
# summary in PCAP.check.json); PASS or FAIL with its FAIL lines.
wire_check() {
  local what=$1 pcap=$2; shift 2
  local txt="${pcap%.pcap}-check.txt" json="${pcap%.pcap}-check.json"
  timeout -k 5 300 "$PYTHON" "$WIRE_CHECK" "$pcap" --json "$json" "$@" >"$txt" 2>&1
  local rc=$?
  sed -n '/^capture:/,$p' "$txt" | grep -v '^  frame ' | sed 's/^/    /'
  if [ $rc -eq 0 ] && grep -q '^result: OK' "$txt"; then
    pass "$what"
    return 0
  fi
  fail "$what: roce_wire_check.py exited $rc (output: $txt)"
  grep -m 20 '^FAIL' "$txt" | sed 's/^/    | /'
  [ $rc -eq 2 ] && show "$txt"
  return 1
}
