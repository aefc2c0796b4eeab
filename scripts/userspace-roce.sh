#!/usr/bin/env bash
# Runs a verbs program on the userspace RoCE runtime: no rdma_rxe kernel module, no
# root, no VM. The program is not rebuilt or changed: the dynamic loader finds this
# project's libibverbs.so.1 first (LD_LIBRARY_PATH), which offers one device, "uroce0",
# and speaks RoCE v2 over UDP port 4791. Each process takes its own loopback address
# 127.0.0.x, and its GID is ::ffff:127.0.0.x (GID index 0).
#
#   scripts/userspace-roce.sh [options] -- PROGRAM [ARGS...]
#
# Options (each sets the UROCE_* variable of the same name; see userspace-roce/README.md):
#   --addr IP          bind this address instead of the first free 127.0.0.x
#   --drop P           drop a transmitted packet with probability P (0..1)
#   --duplicate P      send a packet twice with probability P
#   --reorder P        hold a packet back behind the next one with probability P
#   --seed N           the fault injector's seed
#   --log N            1: QP state changes and errors; 2: every packet; 3: responder detail
#   --window N         packets a QP may have unacknowledged (default 128)
#   --print-env        print the environment it would set and exit
#
# Examples:
#   scripts/userspace-roce.sh -- ibv_devinfo -v
#   scripts/userspace-roce.sh -- ibv_rc_pingpong -g 0 &
#   scripts/userspace-roce.sh -- ibv_rc_pingpong -g 0 127.0.0.1
#   scripts/userspace-roce.sh --drop 0.05 --reorder 0.05 -- build/lessons/01-verbs-send-recv/server
#
# Environment: BUILD_DIR (default <repo>/build): where the runtime was built
# (cmake --build "$BUILD_DIR" --target uroce_verbs).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
LIB_DIR="$BUILD_DIR/userspace-roce/lib"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "userspace-roce.sh: $*" >&2; exit 2; }

print_env=0
while [ $# -gt 0 ]; do
  case $1 in
    --addr) [ $# -ge 2 ] || die "--addr needs an IPv4 address"; export UROCE_ADDR=$2; shift 2 ;;
    --drop) [ $# -ge 2 ] || die "--drop needs a probability"; export UROCE_DROP=$2; shift 2 ;;
    --duplicate) [ $# -ge 2 ] || die "--duplicate needs a probability"; export UROCE_DUPLICATE=$2; shift 2 ;;
    --reorder) [ $# -ge 2 ] || die "--reorder needs a probability"; export UROCE_REORDER=$2; shift 2 ;;
    --seed) [ $# -ge 2 ] || die "--seed needs a number"; export UROCE_SEED=$2; shift 2 ;;
    --log) [ $# -ge 2 ] || die "--log needs a level (1-3)"; export UROCE_LOG=$2; shift 2 ;;
    --window) [ $# -ge 2 ] || die "--window needs a packet count"; export UROCE_WINDOW=$2; shift 2 ;;
    --print-env) print_env=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (the program goes after --; see --help)" ;;
  esac
done
for p in UROCE_DROP UROCE_DUPLICATE UROCE_REORDER; do
  v=${!p-}
  [ -z "$v" ] || awk -v v="$v" 'BEGIN { exit !(v ~ /^[0-9]*\.?[0-9]+$/ && v >= 0 && v <= 1) }' \
    || die "$p=$v: a probability is a number between 0 and 1, e.g. 0.05"
done

if [ ! -e "$LIB_DIR/libibverbs.so.1" ]; then
  die "no runtime at $LIB_DIR/libibverbs.so.1: build it first with
  cmake -S $ROOT -B $BUILD_DIR && cmake --build $BUILD_DIR --target uroce_verbs"
fi
export LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ "$print_env" = 1 ]; then
  env | grep -E '^(LD_LIBRARY_PATH|UROCE_[A-Z]+)=' | sort
  exit 0
fi
[ $# -gt 0 ] || die "no program given: scripts/userspace-roce.sh [options] -- PROGRAM [ARGS...]"
exec "$@"
