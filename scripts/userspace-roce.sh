#!/usr/bin/env bash
# Runs a verbs or RDMA CM program on the userspace RoCE runtime: no rdma_rxe kernel
# module, no root, no VM. The program is not rebuilt or changed: the dynamic loader finds
# this project's libibverbs.so.1 and librdmacm.so.1 first (LD_LIBRARY_PATH, one directory
# for both); the first offers one device, "uroce0", and speaks RoCE v2 over UDP port 4791,
# the second speaks the RDMA CM through it. Each process takes an address of its own,
# the first free loopback address 127.0.0.x unless --addr (or the program's
# rdma_bind_addr to a specific address) names one, and its GID is ::ffff: and that
# address (GID index 0).
#
#   scripts/userspace-roce.sh [options] -- PROGRAM [ARGS...]
#
# Options (each sets the UROCE_* variable of the same name; see userspace-roce/README.md):
#   --addr IP|IFACE    bind this address instead of the first free 127.0.0.x, or the
#                      first free address of this interface (eth0: another host's
#                      RoCE peers reach it; see userspace-roce/README.md)
#   --drop P           drop a transmitted packet with probability P (0..1)
#   --duplicate P      send a packet twice with probability P
#   --reorder P        hold a packet back behind the next one with probability P
#   --seed N           the fault injector's seed
#   --log N            1: QP state changes and errors; 2: every packet; 3: responder detail
#   --window N         packets a QP may have unacknowledged (default 128)
#   --ack-delay US     longest wait of an ACK for the application's next request while it
#                      answers every message (ping-pong), in microseconds (default 100;
#                      0: no ACK waits, one goes at the end of each receive batch)
#   --cm-drop LIST     RDMA CM: drop the first of each named message (req,rep,rtu,rej,dreq,drep)
#   --print-env        print the environment it would set (for PROGRAM, if one is given
#                      after --) as VAR=VALUE lines, and exit
#
# The runtime checks its UROCE_* values when the program first asks for the device list
# (or first calls rdma_create_event_channel, rdma_create_id, rdma_getaddrinfo or
# rdma_get_devices, if earlier): a value it cannot use is refused with one stderr line
# saying what is accepted, and the program's ibv_get_device_list then fails with EINVAL.
# UROCE_CM_DROP and UROCE_CM_CONNECT_GATE are checked by the runtime's librdmacm at the
# first of those four rdma_* calls; a wrong one is refused the same way, and those calls
# then fail with EINVAL.
#
# A runtime built with SANITIZE=1 (ASan + UBSan; its lib/ directory then holds
# sanitizer-runtimes.txt) needs those sanitizer runtimes loaded first in every process.
# Programs from the same sanitized build have them already. For any other program
# (Debian's ibv_* tools, perftest, python3, a script) this sets LD_PRELOAD to them and
# ASAN_OPTIONS=detect_leaks=0, since that program's own leaks are not the runtime's (an
# ASAN_OPTIONS of your own comes after it and wins). Only PROGRAM itself is looked at:
# put wrappers outside (`timeout 60 scripts/userspace-roce.sh -- PROGRAM`), or a
# sanitized program under `timeout` would lose its leak check.
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
    --addr) [ $# -ge 2 ] || die "--addr needs an IPv4 address or an interface name"; export UROCE_ADDR=$2; shift 2 ;;
    --drop) [ $# -ge 2 ] || die "--drop needs a probability"; export UROCE_DROP=$2; shift 2 ;;
    --duplicate) [ $# -ge 2 ] || die "--duplicate needs a probability"; export UROCE_DUPLICATE=$2; shift 2 ;;
    --reorder) [ $# -ge 2 ] || die "--reorder needs a probability"; export UROCE_REORDER=$2; shift 2 ;;
    --seed) [ $# -ge 2 ] || die "--seed needs a number"; export UROCE_SEED=$2; shift 2 ;;
    --log) [ $# -ge 2 ] || die "--log needs a level (1-3)"; export UROCE_LOG=$2; shift 2 ;;
    --window) [ $# -ge 2 ] || die "--window needs a packet count"; export UROCE_WINDOW=$2; shift 2 ;;
    --ack-delay) [ $# -ge 2 ] || die "--ack-delay needs a number of microseconds"; export UROCE_ACK_DELAY=$2; shift 2 ;;
    --cm-drop) [ $# -ge 2 ] || die "--cm-drop needs a list of CM messages (req,rep,rtu,rej,dreq,drep)"; export UROCE_CM_DROP=$2; shift 2 ;;
    --print-env) print_env=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (the program goes after --; see --help)" ;;
  esac
done

if [ ! -e "$LIB_DIR/libibverbs.so.1" ]; then
  die "no runtime at $LIB_DIR/libibverbs.so.1: build it first with
  cmake -S $ROOT -B $BUILD_DIR && cmake --build $BUILD_DIR --target uroce_verbs"
fi
[ "$print_env" = 1 ] || [ $# -gt 0 ] \
  || die "no program given: scripts/userspace-roce.sh [options] -- PROGRAM [ARGS...]"
export LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
vars=(LD_LIBRARY_PATH)

# sanitized_elf FILE: FILE is an executable linked with ASan's shared runtime (how GCC
# links -fsanitize=address): it loads the runtimes itself, first, and its leaks are ours.
sanitized_elf() {
  [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] || return 1
  command -v readelf >/dev/null || die "readelf (binutils) is needed to tell whether $1 is sanitized"
  local dynamic
  dynamic=$(readelf -d "$1") || die "readelf -d $1 failed"
  grep -Eq '\(NEEDED\).*\[libasan\.so' <<<"$dynamic"
}

sanitizers="$LIB_DIR/sanitizer-runtimes.txt"
if [ -e "$sanitizers" ]; then
  preload=""
  while IFS= read -r lib; do
    case $lib in '#'* | '') continue ;; esac
    [ -e "$lib" ] || die "the runtime in $LIB_DIR is built with sanitizers and needs $lib, which is gone
  (the compiler changed?): rebuild it with cmake --build $BUILD_DIR --target uroce_verbs"
    preload+="${preload:+:}$lib"
  done <"$sanitizers"
  [ -n "$preload" ] || die "$sanitizers names no library: rebuild the runtime (cmake --build $BUILD_DIR --target uroce_verbs)"
  if [ $# -gt 0 ]; then
    prog=$(command -v -- "$1") || die "no program '$1' (not a file, not in PATH)"
    if ! sanitized_elf "$prog"; then
      export LD_PRELOAD="$preload${LD_PRELOAD:+:$LD_PRELOAD}"
      export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
      vars+=(LD_PRELOAD ASAN_OPTIONS)
    fi
  elif [ "$print_env" = 1 ]; then
    # Without a program: the environment for programs from the same sanitized build
    # (the lessons' smoke tests), which need no preload.
    echo "userspace-roce.sh: the runtime in $LIB_DIR is built with ASan + UBSan; a program" \
         "built without them also needs LD_PRELOAD=$preload (--print-env -- PROGRAM says)" >&2
  fi
fi

if [ "$print_env" = 1 ]; then
  for v in "${vars[@]}"; do echo "$v=${!v}"; done
  env | sed -n '/^UROCE_[A-Z_]*=/p' | sort
  exit 0
fi
exec "$@"
