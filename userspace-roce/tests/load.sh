#!/usr/bin/env bash
# uroce_load: big messages on a busy machine whose stderr is read slowly. perftest's
# ib_send_bw, ib_write_bw and ib_read_bw (Debian's, unmodified) move 100 messages of
# 8 MiB each (2048 packets a message at path MTU 4096: 800 MiB, some 200000 packets per
# run) through the userspace runtime while
#   - one busy loop per CPU keeps every CPU busy, at the same priority as perftest, and
#   - both sides run with UROCE_LOG=2 (a stderr line per packet) into a pipe read by a
#     slow reader: 4 KiB at a time with a 50 ms pause after each, about 80 KB/s, far
#     less than the runtime writes, so the pipe stays full and a write to it blocks.
# The pauses are the load being applied, not a way to wait for anything.
# Each run must end with both sides exiting 0 and their result tables (100 x 8 MiB,
# nonzero bandwidth), and no side may report a retry error (IBV_WC_RETRY_EXC_ERR, status
# 12, "transport retry counter exceeded"): with both peers alive, a slow CPU or a slow
# log reader must never look like a dead peer. The slow readers must have received the
# runtime's per-packet lines (so the log was on), and the busy loops must still be
# running at the end (so the load lasted).
# Each perftest process may take LOAD_RUN_TIMEOUT seconds (default 60; a run takes 4-20 s
# here). Registered RUN_SERIAL, since it is meant to take every CPU. TCP ports
# 18790-18799. Logs in $BUILD_DIR/userspace-roce/test-out/uroce_load/ (NAME-SIDE.log:
# perftest's stdout; NAME-SIDE.stderr: what the slow reader received).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_load
PORT=18790
SIZE=8388608 ITERS=100
RUN_TIMEOUT=${LOAD_RUN_TIMEOUT:-60}   # seconds each perftest process may take
[[ $RUN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || { fail "LOAD_RUN_TIMEOUT must be a whole number of seconds, not '$RUN_TIMEOUT'"; t_finish; }
START=$SECONDS

for tool in ib_send_bw ib_write_bw ib_read_bw ss "$PYTHON"; do
  command -v "$tool" >/dev/null \
    || { fail "$tool is not installed (perftest, iproute2, python3: scripts/install-deps.sh)"; t_finish; }
done

# The slow reader: 4 KiB, then a 50 ms pause, until end of file; keeps what it read.
SLOW_READER='
import os, sys, time
with open(sys.argv[1], "wb") as out:
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        out.write(chunk)
        time.sleep(0.05)
'

# --- the load: one busy loop per CPU, for the whole test -----------------------------------
CPUS=$(nproc)
HOGS=()
for ((i = 0; i < CPUS; i++)); do
  bg $((3 * RUN_TIMEOUT + 60)) "$OUT/busy-$i.log" bash -c 'while :; do :; done'
  HOGS+=("$BG_PID")
done
echo "    $CPUS busy loop(s) running (one per CPU), pids ${HOGS[*]}"

# start_side NAME SIDE PORT ARGS...: perftest with UROCE_LOG=2, its stdout to NAME-SIDE.log
# and its stderr into a pipe drained by the slow reader (into NAME-SIDE.stderr). The
# reader opens the pipe first; it ends when perftest (every writer) has closed it.
# Sets SIDE_PID (perftest's timeout) and READER_PID.
start_side() {
  local name=$1 side=$2 port=$3; shift 3
  local fifo="$OUT/$name-$side.fifo"
  rm -f "$fifo" && mkfifo "$fifo"
  timeout -k 5 $((RUN_TIMEOUT + 30)) "$PYTHON" -c "$SLOW_READER" "$OUT/$name-$side.stderr" <"$fifo" &
  READER_PID=$!
  T_PIDS+=("$READER_PID")
  local peer=()
  [ "$side" = client ] && peer=(127.0.0.1)
  timeout -k 5 "$RUN_TIMEOUT" "$RUNTIME" --log 2 -- "$@" -d uroce0 -x 0 -p "$port" "${peer[@]}" \
    >"$OUT/$name-$side.log" 2>"$fifo" </dev/null &
  SIDE_PID=$!
  T_PIDS+=("$SIDE_PID")
}

# retry_errors FILE...: the lines that report a retry error.
retry_errors() {
  grep -HEi 'retry counter exceeded|RETRY_EXC|Failed status 12\b' "$@" 2>/dev/null | head -n 5
}

# under_load NAME PROGRAM: one server/client pair under the load, and its checks.
under_load() {
  local name=$1 prog=$2 port=$PORT
  PORT=$((PORT + 1))
  local t0=$SECONDS args=("$prog" -s "$SIZE" -n "$ITERS")
  start_side "$name" server "$port" "${args[@]}"
  local spid=$SIDE_PID sreader=$READER_PID cpid="" creader=""
  local deadline=$((SECONDS + 60))
  until [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; do
    if ! kill -0 "$spid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      fail "$prog: the server did not listen on TCP port $port (within 60 s)"; show "$OUT/$name-server.log"
      break
    fi
    sleep 0.05
  done
  if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
    start_side "$name" client "$port" "${args[@]}"
    cpid=$SIDE_PID creader=$READER_PID
  fi
  local crc=125 src
  if [ -n "$cpid" ]; then reap "$cpid"; crc=$RC; fi
  # A server whose client failed (or never started) may wait in accept() for good:
  # 20 s to notice the client is gone, then it is stopped (exit 143).
  if [ "$crc" -ne 0 ]; then
    local grace=$((SECONDS + 20))
    while kill -0 "$spid" 2>/dev/null && [ $SECONDS -lt $grace ]; do sleep 0.1; done
    kill -TERM "$spid" 2>/dev/null
  fi
  reap "$spid"; src=$RC
  local secs=$((SECONDS - t0))
  [ -n "$creader" ] && reap "$creader"
  reap "$sreader"

  local side rc log err ok=1 row errors
  for side in server client; do
    [ $side = server ] && rc=$src || rc=$crc
    log="$OUT/$name-$side.log" err="$OUT/$name-$side.stderr"
    errors=$(retry_errors "$log" "$err")
    if [ -n "$errors" ]; then
      fail "$prog under load: $side reports a retry error, though both peers were alive:"
      while IFS= read -r line; do echo "    | $line"; done <<<"$errors"
      ok=0
    fi
    if [ "$rc" -ne 0 ]; then
      local why="exit $rc"
      [ "$rc" -eq 124 ] && why="timed out after $RUN_TIMEOUT s (killed by timeout)"
      [ "$rc" -eq 125 ] && why="not started"
      [ "$rc" -eq 143 ] && why="stopped: still running 20 s after its client had failed"
      fail "$prog under load: $side $why, expected exit 0 (stdout: $log, stderr: $err)"
      show "$log" 8; show "$err" 5
      ok=0; continue
    fi
    # The row: 8388608 100 BW_peak BW_average MsgRate, with a nonzero average.
    row=$(awk -v size="$SIZE" -v iters="$ITERS" '/#bytes/ { t = 1; next }
      t && $1 == size && $2 == iters && NF >= 5 && $4 > 0 && $5 > 0 { print $4 " MB/s"; exit }' "$log")
    if [ -z "$row" ]; then
      fail "$prog under load: $side exits 0 but its table has no line for $ITERS x $SIZE B with a nonzero bandwidth (log: $log)"
      show "$log" 8; ok=0; continue
    fi
    if ! grep -q ' tx ' "$err"; then
      fail "$prog under load: the $side's slow reader got no per-packet log line: UROCE_LOG=2 was not in force, so its stderr was no load (file: $err)"
      show "$err" 5; ok=0; continue
    fi
  done
  [ $ok = 1 ] && pass "$prog, $ITERS x 8 MiB under load: both exit 0 in $secs s, $row (client), no retry error; the slow readers took $(stat -c %s "$OUT/$name-server.stderr") + $(stat -c %s "$OUT/$name-client.stderr") bytes of log"
}

under_load send ib_send_bw
under_load write ib_write_bw
under_load read ib_read_bw

alive=0
for pid in "${HOGS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
if [ "$alive" -eq "$CPUS" ]; then
  pass "the $CPUS busy loop(s) ran for the whole test ($((SECONDS - START)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
else
  fail "only $alive of $CPUS busy loops still run at the end: the load did not last (logs: $OUT/busy-*.log)"
fi
t_finish
