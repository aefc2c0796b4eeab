# run_pair.sh - one run of a server and its client, for bench.sh and agreement.sh (sourced).
#
# The caller sets: ME (its name, for messages), OUT (the log directory), GUARD (seconds
# after which a stuck process is killed), PREFIX (an array: the launcher every process
# starts through, e.g. scripts/userspace-roce.sh --, or empty), LISTEN_WAIT_S (how long a
# server may take to listen), EXIT_WAIT_S (how long it may take to exit once its client
# is done). run_pair appends failed runs' names to the array FAILED.
#
# CPUs. On a machine with two CPUs or more the server runs on CPU 0 and the client on
# CPU 1 (taskset), every run the same. Left to the scheduler, a busy-polling process and
# the userspace runtime's engine threads land on the CPUs differently from run to run,
# and the same measurement comes out at one of two levels about 30 % apart (seen on the
# 2-CPU machines CI uses); pinned, repeated runs agree within a few percent. Both
# programs being compared (lesson 06 and perftest) run pinned the same way.
if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1); else SERVER_CPU=() CLIENT_CPU=(); fi
FAILED=()

# run_pair NAME PORT SERVER_CMD... -- CLIENT_CMD...: the server in the background, the
# client once the server listens on PORT, each under `timeout GUARD` and started through
# PREFIX (the launcher, or nothing); both must exit 0. Prints "NAME ... " and, when the
# run failed, why (the caller says "ok"). Logs: $OUT/NAME-server.log and NAME-client.log.
# Returns 1 (and names NAME in FAILED) when the run failed, after showing the logs' tails.
run_pair() {
  local name=$1 port=$2; shift 2
  local -a server=() client=()
  while [ "$1" != -- ]; do server+=("$1"); shift; done
  shift
  client=("$@")
  local slog="$OUT/$name-server.log" clog="$OUT/$name-client.log"
  local spid crc=0 src=0 why=""
  printf '%s: %-24s ... ' "$ME" "$name"
  timeout "$GUARD" "${SERVER_CPU[@]}" "${PREFIX[@]}" "${server[@]}" >"$slog" 2>&1 </dev/null &
  spid=$!
  local deadline=$((SECONDS + LISTEN_WAIT_S))
  until [ -n "$(ss -Hltn "sport = :$port")" ]; do
    if ! kill -0 "$spid" 2>/dev/null; then why="the server exited before it listened on TCP port $port"; break; fi
    if [ $SECONDS -ge $deadline ]; then why="the server did not listen on TCP port $port within $LISTEN_WAIT_S s"; break; fi
    sleep 0.05
  done
  if [ -z "$why" ]; then
    timeout "$GUARD" "${CLIENT_CPU[@]}" "${PREFIX[@]}" "${client[@]}" >"$clog" 2>&1 </dev/null || crc=$?
    if [ "$crc" -eq 124 ]; then why="client killed after $GUARD s (exit 124)"
    elif [ "$crc" -ne 0 ]; then why="client exit $crc"; fi
  fi
  # The server exits once its client is done (a real one notices a failed client's
  # closed connection too): give it EXIT_WAIT_S, or 5 s after a failed client, then
  # stop it (timeout passes the TERM on). One that never listened is stopped at once.
  local grace=$EXIT_WAIT_S
  [ "$crc" -eq 0 ] || grace=5
  [ -z "$why" ] || [ "$crc" -ne 0 ] || grace=0
  if [ "$grace" -eq 0 ] || ! timeout "$grace" tail -s 0.1 --pid="$spid" -f /dev/null; then
    if kill -0 "$spid" 2>/dev/null; then
      [ -n "$why" ] || why="the server was still running $EXIT_WAIT_S s after its client had finished"
      kill "$spid" 2>/dev/null || echo "$ME: the $name server exited before it was stopped" >&2
    fi
  fi
  wait "$spid" || src=$?
  if [ -z "$why" ] && [ "$src" -ne 0 ]; then why="server exit $src"; fi
  [ -n "$why" ] || return 0
  case "$why" in
    "server exit"*) echo "FAILED ($why)" ;;
    *) echo "FAILED ($why; server exit $src)" ;;
  esac
  FAILED+=("$name")
  local log
  for log in "$slog" "$clog"; do
    [ -e "$log" ] || continue
    echo "    --- $log (last lines)"
    tail -n 12 "$log" | sed 's/^/    | /'
  done
  return 1
}
