#!/usr/bin/env bash
# Run one lesson's smoke.sh in the Soft-RoCE lab VMs (registered with ctest, label smoke).
#
#   tests/lab_smoke.sh LESSON local   one guest: `smoke.sh local`
#   tests/lab_smoke.sh LESSON pair    two guests: `smoke.sh server` on 10.0.0.1 and
#                                     `smoke.sh client 10.0.0.1` on 10.0.0.2, the wire
#                                     recorded by qemu, then `smoke.sh check-capture` on
#                                     that recording (here on the host, with tshark)
#
# In pair mode the client role starts once the server role's first server listens on the
# smoke's port (lab-ready on the server guest: a TCP listener for lessons 01 and 05, an
# RDMA CM id for 02-04; lab-wait on the client guest), so the guests' boot does not show
# as refused connects. The server role's later servers start as the one before ends; the
# lessons' clients wait for those with their own --connect-timeout.
#
# LESSON is a directory name under lessons/ (e.g. 01-verbs-send-recv). Logs go to
# $BUILD_DIR/lab-runs/LESSON-ROLE/. BUILD_DIR must be the build tree the lessons are in.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lesson=${1:?usage: lab_smoke.sh LESSON local|pair}
mode=${2:?usage: lab_smoke.sh LESSON local|pair}
: "${BUILD_DIR:=$ROOT/build}"
smoke="lessons/$lesson/smoke.sh"
[ -x "$ROOT/$smoke" ] || { echo "lab_smoke: no $smoke" >&2; exit 2; }
out="$BUILD_DIR/lab-runs/$lesson-$mode"
rm -rf "$out"
mkdir -p "$out"
env_prefix="BUILD_DIR=$BUILD_DIR"
# How long the guests' commands may run: lesson 07's pair smoke, the longest, takes about
# 220 s on a quiet 2-CPU host and went past 300 s while other programs kept both host
# CPUs busy (the guests are emulated, so they slow down with the host). ctest allows
# 1500 s for each smoke: this, lab.sh's 90 s boot margin and check-capture fit in it,
# and so does a second attempt after a stuck NIC (scripts/lab/lab.sh), which the
# pair smokes finish in 20-230 s.
guest_timeout=600

case $mode in
  local)
    "$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout "$guest_timeout" \
      --server "$env_prefix $smoke local"
    ;;
  pair)
    # The smoke's port: its SMOKE_PORT default.
    port=$(sed -n 's/^: "${SMOKE_PORT:=\([0-9]*\)}"$/\1/p' "$ROOT/$smoke")
    [ -n "$port" ] || { echo "lab_smoke: no SMOKE_PORT default in $smoke" >&2; exit 2; }
    case $lesson in
      01-*|05-*|06-*|07-*) listening="--tcp-listen $port" ;;
      *) listening="--cm-listen $port" ;;
    esac
    "$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout "$guest_timeout" --capture "$out/wire.pcap" \
      --server "lab-ready -q --timeout 240 server $listening -- env $env_prefix $smoke server" \
      --client "lab-wait -q --timeout 240 server && $env_prefix $smoke client \$LAB_SERVER_IP"
    # The guests' own tcpdump may have checked a capture too; this checks qemu's
    # recording of the wire, which no guest software can influence.
    SMOKE_OUT="$out" "$ROOT/$smoke" check-capture "$out/wire.pcap" "$out"
    ;;
  *) echo "lab_smoke: mode must be local or pair, not '$mode'" >&2; exit 2 ;;
esac
