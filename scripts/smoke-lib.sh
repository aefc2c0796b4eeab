# Shared by every lesson's smoke.sh (sourced, not run): counting checks, waiting for a
# log line, finding this host's address, and recording the wire with tcpdump.
#
# The sourcing script sets SMOKE_OUT (where logs go) and SMOKE_NAME (e.g. "lesson 02")
# before calling anything here; `smoke_finish` prints the tally and sets the exit code.

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "smoke: PASS $*"; }
fail() { failed=$((failed + 1)); echo "smoke: FAIL $*"; }

# expect_exit CASE WANT GOT LOG: the exit code a case must end with.
expect_exit() {
  if [ "$3" -eq "$2" ]; then return 0; fi
  fail "$1: exit $3, expected $2 (log: $4)"; tail -n 15 "$4" | sed 's/^/    | /'
  return 1
}
# expect_line CASE LOG REGEX: a line the log must contain.
expect_line() {
  if grep -Eq -- "$3" "$2"; then return 0; fi
  fail "$1: no line matching /$3/ in $2"; tail -n 15 "$2" | sed 's/^/    | /'
  return 1
}
# check CASE WANT_EXIT GOT_EXIT LOG [REGEX...]: exit code and lines together.
check() {
  local name=$1 want=$2 got=$3 log=$4; shift 4
  expect_exit "$name" "$want" "$got" "$log" || return 0
  local re
  for re in "$@"; do expect_line "$name" "$log" "$re" || return 0; done
  pass "$name"
}

# need_binaries DIR: the lesson's server and client must be built.
need_binaries() {
  [ -x "$1/server" ] && [ -x "$1/client" ] && return 0
  echo "smoke: $1/server and client are not built; run ./scripts/test.sh or cmake --build build" >&2
  exit 2
}

# need_cm_runtime: an RDMA CM lesson on the userspace runtime needs the runtime's
# librdmacm.so.1 next to its libibverbs.so.1 (the system's would look for the kernel's
# /dev/infiniband/rdma_cm). Nothing to check on the kernel runtime.
need_cm_runtime() {
  [ "$SMOKE_RUNTIME" = userspace ] || return 0
  local lib
  lib="$(echo "$LD_LIBRARY_PATH" | cut -d: -f1)/librdmacm.so.1"
  [ -e "$lib" ] && return 0
  echo "smoke: the userspace runtime has no RDMA CM: $lib is missing (cmake --build \$BUILD_DIR --target uroce_rdmacm)" >&2
  exit 2
}

# wait_for_line LOG REGEX SECONDS: poll a log file until a line appears (bounded).
wait_for_line() {
  local deadline=$((SECONDS + $3))
  until grep -Eq -- "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# server_ready CASE LOG READY: wait (at most 60 s) until a server started in the
# background prints its READY line (it listens), so that its client's first
# ConnectRequest finds it. A failure is said, and the client is started all the same.
server_ready() {
  wait_for_line "$2" "$3" 60 || fail "$1: the server printed no line matching /$3/ within 60 s (log: $2)"
}

# stop_summary CASE READY SUMMARY CMD...: start a server (bounded: 120 s), wait (at most
# 60 s) for its READY line, stop it with SIGTERM as `kill` or a service manager would: it
# must print "stopped by SIGTERM" and its SUMMARY line, and exit 143 (common/stop.hpp).
stop_summary() {
  local name=$1 ready=$2 summary=$3 log="$SMOKE_OUT/sigterm-server.log" pid rc; shift 3
  timeout -k 5 120 "$@" >"$log" 2>&1 &
  pid=$!
  set +e
  if wait_for_line "$log" "$ready" 60; then
    pkill -TERM -P "$pid" || fail "$name: the server had already exited (log: $log)"
  else
    fail "$name: no line matching /$ready/ within 60 s (log: $log)"
    pkill -KILL -P "$pid"
  fi
  wait "$pid"; rc=$?
  set -e
  check "$name" 143 $rc "$log" "^stopped by SIGTERM$" "$summary"
}

# The verbs runtime under the lesson: SMOKE_RUNTIME=kernel (the default: whatever
# libibverbs finds, e.g. Soft-RoCE in the lab VMs) or userspace (this project's userspace
# RoCE runtime, userspace-roce/: every process gets a loopback address of its own and
# talks RoCE v2 over loopback, no kernel module needed). `smoke.sh --runtime userspace local` sets it.
: "${SMOKE_RUNTIME:=kernel}"
use_runtime() {
  case "$SMOKE_RUNTIME" in
    kernel) ;;
    userspace)
      local line
      while IFS= read -r line; do export "${line?}"; done \
        < <("$ROOT/scripts/userspace-roce.sh" --print-env) || exit 2
      [ -n "${LD_LIBRARY_PATH:-}" ] || exit 2
      # UROCE_ADDR=<interface> (e.g. eth0), for the server and client roles on two hosts:
      # every process takes the first address of that interface no other process has
      # bound, the server the interface's main one, and the clients connect to it.
      if [ -n "${UROCE_ADDR:-}" ] && [ -e "/sys/class/net/$UROCE_ADDR" ] &&
         { [ "${SMOKE_ROLE:-}" = server ] || [ "${SMOKE_ROLE:-}" = client ]; }; then
        echo "smoke: runtime: userspace RoCE on the addresses of $UROCE_ADDR ($(echo "$LD_LIBRARY_PATH" | cut -d: -f1))"
        return
      fi
      # One address for every process would let only the first bind it.
      if [ -n "${UROCE_ADDR:-}" ]; then
        echo "smoke: UROCE_ADDR=$UROCE_ADDR ignored: every process of the smoke takes an address of its own"
        unset UROCE_ADDR
      fi
      if ! [[ ${SMOKE_PORT:-} =~ ^[1-9][0-9]*$ ]] || [ "$SMOKE_PORT" -lt 256 ] || [ "$SMOKE_PORT" -gt 65535 ]; then
        echo "smoke: SMOKE_PORT='${SMOKE_PORT:-}' cannot give the CM server's address 127.0.<port/256>.<port%256>: use a port from 256 to 65535" >&2
        exit 2
      fi
      SMOKE_SERVER_ADDR=127.0.$((SMOKE_PORT / 256)).$((SMOKE_PORT % 256))
      SERVER_ENV=(env "UROCE_ADDR=$SMOKE_SERVER_ADDR")
      echo "smoke: runtime: userspace RoCE ($(echo "$LD_LIBRARY_PATH" | cut -d: -f1))" ;;
    *) echo "smoke: unknown runtime '$SMOKE_RUNTIME' (kernel or userspace)" >&2; exit 2 ;;
  esac
}

# SERVER_ENV: the prefix that starts an RDMA CM lesson's server where cm_server_ipv4 says
# it is (`timeout 60 "${SERVER_ENV[@]}" "$BIN/server" ...`). Empty on the kernel runtime.
# On the userspace runtime every process has an address of its own (a device bound to
# 127.0.0.x:4791), and a server bound to the wildcard address listens at its process's
# address only: there the servers get the fixed SMOKE_SERVER_ADDR,
# 127.0.<SMOKE_PORT / 256>.<SMOKE_PORT % 256> (UROCE_ADDR), which the clients are told.
# It is never in 127.0.0.x, which the runtime hands to processes that ask for no
# address (the clients), and smokes with different SMOKE_PORTs get different ones.
SERVER_ENV=() SMOKE_SERVER_ADDR=""

# cm_server_ipv4: the address an RDMA CM lesson's clients connect to: local_ipv4 on the
# kernel runtime, SMOKE_SERVER_ADDR on the userspace runtime (set by use_runtime).
cm_server_ipv4() {
  if [ "$SMOKE_RUNTIME" = userspace ]; then echo "$SMOKE_SERVER_ADDR"; return; fi
  local_ipv4
}

# cm_host_up CASE READY CMD... / cm_host_down CASE: the "nobody listens on that port"
# cases need a host whose CM answers a ConnectRequest for a port nobody listens on with a
# ConnectReject (invalid service ID). Every kernel host does; on the userspace runtime a
# host is a process, and the server address answers only while a process holds it. So
# there cm_host_up starts CMD (the lesson's server, listening on another port) with
# SERVER_ENV, bounded (120 s), and waits (at most 60 s) for its READY line; cm_host_down
# stops it (SIGTERM) and waits for it. Both do nothing on the kernel runtime.
CM_HOST_PID="" CM_HOST_SEQ=1
cm_host_up() {
  local name=$1 ready=$2; shift 2
  [ "$SMOKE_RUNTIME" = userspace ] || return 0
  local log="$SMOKE_OUT/cm-host-$CM_HOST_SEQ.log"
  CM_HOST_SEQ=$((CM_HOST_SEQ + 1))
  timeout -k 5 120 "${SERVER_ENV[@]}" "$@" >"$log" 2>&1 &
  CM_HOST_PID=$!
  wait_for_line "$log" "$ready" 60 \
    || fail "$name: the server that keeps the server address alive ($*) printed no line matching /$ready/ within 60 s (log: $log)"
}
cm_host_down() {
  [ -n "$CM_HOST_PID" ] || return 0
  pkill -TERM -P "$CM_HOST_PID" \
    || fail "$1: the server that kept the server address alive had exited before the case ended"
  set +e; wait "$CM_HOST_PID"; set -e
  CM_HOST_PID=""
}

# local_ipv4: this host's first global IPv4 address (RDMA CM needs an address that an
# RDMA device serves; 127.0.0.1 is not one).
local_ipv4() {
  # On the userspace runtime everything runs over loopback (the TCP side channels of
  # lessons 01 and 05; the RDMA CM lessons use cm_server_ipv4).
  if [ "$SMOKE_RUNTIME" = userspace ]; then echo 127.0.0.1; return; fi
  ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}'
}

# start_capture SERVER_IP FILTER: record the wire with tcpdump if we can (root, tcpdump,
# and a server that is not this host, and SMOKE_NO_CAPTURE unset: a run whose wire is
# corrupted on purpose is checked by whoever corrupts it). Waits (bounded) until tcpdump
# is listening. The filter also lets through the end marker stop_capture sends.
CAPTURE_PID="" CAPTURE_FILE="" CAPTURE_SERVER=""
CAPTURE_MARK_FILTER=""
start_capture() {
  [ -z "${SMOKE_NO_CAPTURE:-}" ] || { echo "smoke: SMOKE_NO_CAPTURE is set: no capture"; return 0; }
  command -v tcpdump >/dev/null && [ "$(id -u)" -eq 0 ] || { echo "smoke: no tcpdump or not root: no capture"; return 0; }
  local dev
  dev=$(ip route get "$1" 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | head -n1)
  [ -n "$dev" ] && [ "$dev" != lo ] || { echo "smoke: server $1 is local: no wire to capture"; return 0; }
  CAPTURE_SERVER=$1
  CAPTURE_MARK_FILTER="udp dst port 9 and dst host $1"
  # Write to local disk: tcpdump writes each packet as it comes (-U), and a slow target
  # (a network share) lets it fall behind.
  CAPTURE_FILE=$(mktemp /tmp/smoke-capture.XXXXXX.pcap)
  timeout 300 tcpdump -Z root -i "$dev" -s 0 -U --immediate-mode -w "$CAPTURE_FILE" "($2) or ($CAPTURE_MARK_FILTER)" \
    2>"$SMOKE_OUT/tcpdump.log" &
  CAPTURE_PID=$!
  wait_for_line "$SMOKE_OUT/tcpdump.log" "listening on" 10 || { echo "smoke: tcpdump did not start; see $SMOKE_OUT/tcpdump.log"; kill "$CAPTURE_PID" 2>/dev/null; CAPTURE_PID=""; }
}

# stop_capture: make sure tcpdump has written the run's packets, stop it, and move the
# file to $SMOKE_OUT/client-side.pcap. A barrier, not a guess: once the run's programs
# have ended, one marker datagram goes to the server's UDP port 9 (discard) through the
# captured interface, and tcpdump writes packets in the order the kernel handed them to
# it; so once the marker is in the file, so is every packet this host had received, and
# (barring reordering in its send queues) sent, before the marker, unless tcpdump.log
# reports packets dropped by the kernel. Packets the server sends later may be missing.
# (Stopping on SIGINT drops what tcpdump has not processed yet.) The marker is then left
# out of the kept file.
stop_capture() {
  local mark sent=yes deadline=$((SECONDS + 60))
  mark="smoke-capture-end-$$-$RANDOM$RANDOM"
  if ! { printf '%s' "$mark" >"/dev/udp/$CAPTURE_SERVER/9"; } 2>"$SMOKE_OUT/capture-mark.log"; then
    fail "capture: could not send the end marker to $CAPTURE_SERVER:9 ($(cat "$SMOKE_OUT/capture-mark.log")); the capture may lack the run's last packets"
    sent=no
  fi
  while [ $sent = yes ] && ! grep -qaF "$mark" "$CAPTURE_FILE" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$CAPTURE_PID" 2>/dev/null; then
      fail "capture: tcpdump had exited, or did not write the end marker to $CAPTURE_FILE within 60 s; the capture may lack the run's last packets (see $SMOKE_OUT/tcpdump.log)"
      break
    fi
    sleep 0.1
  done
  # tcpdump may have ended on its own (its timeout): then there is nothing to stop, and
  # its exit status (SIGINT's 130, or timeout's 124) says nothing about the capture.
  set +e
  kill -INT "$CAPTURE_PID" 2>/dev/null
  wait "$CAPTURE_PID" 2>/dev/null
  set -e
  tcpdump -Z root -r "$CAPTURE_FILE" -w "$SMOKE_OUT/client-side.pcap" "not ($CAPTURE_MARK_FILTER)" \
    2>>"$SMOKE_OUT/tcpdump.log" \
    || fail "capture: could not copy $CAPTURE_FILE without its end marker (tcpdump -r; see $SMOKE_OUT/tcpdump.log)"
  rm -f "$CAPTURE_FILE"
}

# smoke_finish: the tally; exit status 0 only if something passed and nothing failed.
smoke_finish() {
  echo "smoke: $SMOKE_NAME: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}

# smoke_main ARGS...: run the role the command line names (the sourcing script defines
# role_local, role_server, role_client and role_check_capture), then the tally.
smoke_main() {
  local usage="usage: $(basename "$0") [--runtime kernel|userspace] local | server | client SERVER_IP | check-capture PCAP DIR"
  if [ "${1:-}" = --runtime ]; then
    [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
    SMOKE_RUNTIME=$2; shift 2
  fi
  SMOKE_ROLE=${1:-}
  use_runtime
  case "${1:-}" in
    local) role_local ;;
    server) role_server ;;
    client) shift; role_client "$@" ;;
    check-capture) shift; [ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }; role_check_capture "$@" ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  smoke_finish
}
