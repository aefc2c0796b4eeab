#!/usr/bin/env bash
# bench.sh - lesson 06's committed run: steps 1-7 at 64 B, the size sweep, the plots.
#
# Usage:
#   lessons/06-performance/bench.sh [--runtime userspace|kernel] [--quick] [--out DIR]
#                                   [--port P] [--sizes LIST] [-n ITERS]
#   lessons/06-performance/bench.sh --help
#
# Two runs of lesson 06, each a server (which serves one client, then exits) and a client
# on this machine, one after the other on the same TCP port:
#   steps 1-7   client --steps 1-7 -s 64: every technique once at 64 bytes, one table
#               (printed here; also steps1-7.txt and steps1-7.csv)
#   sweep       client --steps 8 --csv sweep.csv: every technique at every size of
#               --sizes (the client's default: 2 B .. 1 MiB, powers of two)
# then lessons/06-performance/plot.sh sweep.csv, which draws latency.svg and
# bandwidth.svg (with the path MTU the server's log names) and writes tables.md, all in
# --out.
# With --runtime userspace (the default) server and client each run through
# scripts/userspace-roce.sh (each its own 127.0.0.x, device uroce0, GID index 0); with
# --runtime kernel they run directly on the machine's RDMA device (e.g. rxe0 in a lab
# guest; scripts/softroce-setup.sh makes one). The client starts once `ss` shows the
# server listening (checked every 50 ms, at most 30 s), never after a fixed sleep.
#
# This is a benchmark, not a test: it never judges the numbers. Exit status: 0 when both
# runs succeeded and the plots were drawn, 1 when a run failed (it is named, with the
# tail of its logs) or plot.sh failed, 2 for bad usage. The client exits 0 only when
# every measurement moved verified data, so "succeeded" includes "the bytes were right".
#
# Options:
#   --runtime R   userspace (default) or kernel
#   --quick       a smoke run: -n 1000 and sizes 2,64,1024,4096,65536,1048576 (unless
#                 -n or --sizes say otherwise)
#   --out DIR     where the logs, the CSVs, the plots and tables.md go (default: a new
#                 /tmp/lesson06-bench.XXXXXX)
#   --port P      the TCP port of both runs (default 18606; 18590-18598 are
#                 userspace-roce/bench/run.sh's, 18607-18609 agreement.sh's)
#   --sizes LIST  the sweep's sizes in bytes, comma-separated (client --sizes)
#   -n ITERS      iterations of every measurement (client -n; default: the client's)
#
# Environment:
#   BUILD_DIR            the CMake build tree (default <repo>/build); the programs are
#                        $BUILD_DIR/lessons/06-performance/server and client
#   BENCH06_DEVICE_ARGS  device options for server and client (default "-d uroce0 -g 0"
#                        on the userspace runtime, none on a kernel device, where the
#                        programs pick the first device and its RoCE v2 IPv4 GID; e.g.
#                        "-d rxe0 -g 1")
#   BENCH06_HOST         the address the client connects to (default 127.0.0.1)
#   BENCH06_GUARD        seconds after which a stuck server or client is killed (default
#                        1800; 600 with --quick)
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
export BUILD_DIR   # scripts/userspace-roce.sh finds the runtime there
BIN_DIR="$BUILD_DIR/lessons/06-performance"
ME=bench.sh
HOST=${BENCH06_HOST:-127.0.0.1}
LISTEN_WAIT_S=30   # how long a server may take to listen
EXIT_WAIT_S=30     # how long a server may take to exit once its client is done

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die_usage() {
  printf 'bench.sh: %s\n' "$*" >&2
  echo "Run 'bench.sh --help' for the options." >&2
  exit 2
}
die() { printf 'bench.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --- arguments -----------------------------------------------------------------------
RUNTIME=userspace QUICK=0 OUT="" PORT=18606 SIZES="" ITERS=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --quick) QUICK=1; shift ;;
    --runtime|--out|--port|--sizes|-n)
      [ $# -ge 2 ] || die_usage "$1 needs a value"
      case "$1" in
        --runtime) RUNTIME=$2 ;;
        --out) OUT=$2 ;;
        --port) PORT=$2 ;;
        --sizes) SIZES=$2 ;;
        -n) ITERS=$2 ;;
      esac
      shift 2 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
case "$RUNTIME" in
  userspace|kernel) ;;
  *) die_usage "--runtime must be userspace or kernel, not '$RUNTIME'" ;;
esac
if ! [[ $PORT =~ ^[1-9][0-9]*$ ]] || [ "$PORT" -gt 65535 ]; then
  die_usage "--port must be a TCP port (1-65535), not '$PORT'"
fi
if [ -n "$SIZES" ] && ! [[ $SIZES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
  die_usage "--sizes must be sizes in bytes separated by commas (e.g. 64,4096,65536), not '$SIZES'"
fi
if [ -n "$ITERS" ] && ! [[ $ITERS =~ ^[1-9][0-9]*$ ]]; then
  die_usage "-n must be a positive whole number of iterations, not '$ITERS'"
fi
if [ "$QUICK" = 1 ]; then
  : "${ITERS:=1000}"
  : "${SIZES:=2,64,1024,4096,65536,1048576}"
  GUARD=${BENCH06_GUARD:-600}
else
  GUARD=${BENCH06_GUARD:-1800}
fi
[[ $GUARD =~ ^[1-9][0-9]*$ ]] || die "BENCH06_GUARD must be a whole number of seconds, not '$GUARD'"

# --- prerequisites ---------------------------------------------------------------------
for prog in server client; do
  [ -x "$BIN_DIR/$prog" ] || die "$BIN_DIR/$prog is not built: build it with" \
    "cmake -S $ROOT -B $BUILD_DIR && cmake --build $BUILD_DIR --target lesson06_server lesson06_client" \
    "(or point BUILD_DIR at the build tree)"
done
command -v timeout >/dev/null || die "'timeout' (coreutils) not found"
command -v ss >/dev/null || die "'ss' not found (it tells when the server listens): install iproute2 with scripts/install-deps.sh"
# Before minutes of measuring: the plots need gnuplot.
command -v gnuplot >/dev/null || die "gnuplot is not installed (plot.sh draws with it): install it with scripts/install-deps.sh (Debian package gnuplot-nox)"
PREFIX=()
if [ "$RUNTIME" = userspace ]; then
  LAUNCHER="$ROOT/scripts/userspace-roce.sh"
  [ -e "$BUILD_DIR/userspace-roce/lib/libibverbs.so.1" ] || die "the userspace RoCE runtime is not built in" \
    "$BUILD_DIR: build it with cmake --build $BUILD_DIR --target uroce_verbs (or use --runtime kernel)"
  PREFIX=("$LAUNCHER" --)
  DEVICE_ARGS=${BENCH06_DEVICE_ARGS:-"-d uroce0 -g 0"}
else
  DEVICE_ARGS=${BENCH06_DEVICE_ARGS:-}
  # What libibverbs itself lists (ibv_devices, from ibverbs-utils), else the kernel's view.
  if command -v ibv_devices >/dev/null; then
    # (it fails when there is none: "Failed to get IB devices list")
    if list=$(ibv_devices 2>&1); then
      devices=$(awk 'NR > 2 && NF { n++ } END { print n + 0 }' <<<"$list")
    else
      devices=0
    fi
  elif [ -d /sys/class/infiniband ]; then
    devices=$(find /sys/class/infiniband -mindepth 1 -maxdepth 1 | wc -l)
  else
    devices=0
  fi
  if [ "$devices" -eq 0 ]; then
    die "--runtime kernel, but libibverbs finds no RDMA device here (ibv_devices lists none):" \
      "make one with scripts/softroce-setup.sh, or use --runtime userspace"
  fi
fi
if [ -n "$(ss -Hltn "sport = :$PORT")" ]; then
  die "something already listens on TCP port $PORT (ss -ltnp shows what): stop it or choose another --port"
fi
if [ -z "$OUT" ]; then OUT=$(mktemp -d /tmp/lesson06-bench.XXXXXX); fi
mkdir -p "$OUT" || die "cannot create the output directory '$OUT'"
# Word splitting on purpose: BENCH06_DEVICE_ARGS is a list of options.
# shellcheck disable=SC2206
DEV=($DEVICE_ARGS)

# --- one run: a server and its client (run_pair.sh) ---------------------------------------
source "$LESSON_DIR/run_pair.sh"

N_ARG=()
[ -z "$ITERS" ] || N_ARG=(-n "$ITERS")
SIZES_ARG=()
[ -z "$SIZES" ] || SIZES_ARG=(--sizes "$SIZES")
if [ ${#PREFIX[@]} -gt 0 ]; then how="on the userspace runtime (scripts/userspace-roce.sh)"; else how="on the kernel's RDMA device"; fi
echo "bench.sh: lesson 06 $how${DEVICE_ARGS:+, $DEVICE_ARGS}, TCP port $PORT; files in $OUT"

# run_lesson NAME CLIENT_ARGS...: lesson 06's server and client (with -q: only warnings,
# errors and its result) on PORT, through run_pair.
run_lesson() {
  local name=$1; shift
  run_pair "$name" "$PORT" "$BIN_DIR/server" -p "$PORT" "${DEV[@]}" -- \
    "$BIN_DIR/client" "$HOST" -p "$PORT" "${DEV[@]}" -q "$@" || return 1
  echo "ok"
}

if run_lesson steps1-7 --steps 1-7 -s 64 "${N_ARG[@]}" --csv "$OUT/steps1-7.csv"; then
  # The table alone, without the log lines (what lesson 06's README quotes).
  grep -v '^\[' "$OUT/steps1-7-client.log" >"$OUT/steps1-7.txt"
  echo
  sed 's/^/    /' "$OUT/steps1-7-client.log"
  echo
fi
SWEEP_OK=0
if run_lesson sweep --steps 8 "${SIZES_ARG[@]}" "${N_ARG[@]}" --csv "$OUT/sweep.csv"; then
  if ! [ -s "$OUT/sweep.csv" ] || [ "$(wc -l <"$OUT/sweep.csv")" -lt 2 ]; then
    echo "bench.sh: the sweep succeeded but $OUT/sweep.csv has no measurement (the client's --csv did not write one)" >&2
    FAILED+=(sweep-csv)
  else
    SWEEP_OK=1
  fi
fi
if [ "$SWEEP_OK" = 1 ]; then
  # The CSV has no path MTU; the server's step 0 log line says it ("QP in RTS: path MTU
  # 4096, ..."). Without that line the plots simply have no MTU mark.
  MTU=$(sed -n 's/.*QP in RTS: path MTU \([0-9][0-9]*\).*/\1/p' "$OUT/sweep-server.log" | head -n 1)
  MTU_ARG=()
  [ -z "$MTU" ] || MTU_ARG=(--mtu "$MTU")
  if "$LESSON_DIR/plot.sh" "${MTU_ARG[@]}" "$OUT/sweep.csv" "$OUT"; then
    echo
    echo "bench.sh: the files:"
    echo "  $OUT/steps1-7.txt          the table of steps 1-7 at 64 B (steps1-7.csv: the same as CSV;"
    echo "                             steps1-7-client.log: with the client's log lines)"
    echo "  $OUT/sweep.csv             the size sweep, one row per measurement"
    echo "  $OUT/latency.svg  $OUT/bandwidth.svg  $OUT/tables.md"
    echo "  $OUT/*-server.log, *-client.log   every process's log"
  else
    FAILED+=(plot)
  fi
fi

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "bench.sh: ${#FAILED[@]} step(s) failed: ${FAILED[*]} (logs in $OUT)" >&2
  exit 1
fi
exit 0
