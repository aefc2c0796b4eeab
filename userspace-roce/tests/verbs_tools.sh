#!/usr/bin/env bash
# uroce_verbs_tools: Debian's own verbs programs (ibverbs-utils), unmodified, on the
# userspace runtime (scripts/userspace-roce.sh puts its libibverbs.so.1 first):
#   - ibv_devices, ibv_devinfo and ibv_devinfo -v list uroce0: PORT_ACTIVE, link layer
#     Ethernet, GID[0] ::ffff:127.0.0.x of type RoCE v2
#   - ibv_rc_pingpong -g 0 -c (server and client, data checked) in four shapes: the default
#     (4096 B messages over the default 1024 B path MTU), -e (completion events),
#     -s 65536 -m 1024 (64 packets a message), -s 8192 -m 4096 -e
#   - refusals, bounded: ibv_rc_pingpong without -g on both sides fails (RoCE needs a
#     GRH, modify_qp to RTR returns EINVAL) instead of hanging; and a client without -g
#     given a peer address without a GID (pingpong_peer.py) fails the same way.
# TCP ports 18610-18619. Logs in $BUILD_DIR/userspace-roce/test-out/uroce_verbs_tools/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_verbs_tools
PORT=18610

for tool in ibv_devices ibv_devinfo ibv_rc_pingpong ss; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed (ibverbs-utils, iproute2: scripts/install-deps.sh)"; t_finish; }
done
PINGPONG=$(command -v ibv_rc_pingpong)

# --- the device as the tools see it ---------------------------------------------------
timeout -k 5 30 "$RUNTIME" -- ibv_devices >"$OUT/ibv_devices.log" 2>&1
check "ibv_devices lists uroce0" 0 $? "$OUT/ibv_devices.log" '^[[:space:]]+uroce0[[:space:]]+[0-9a-f]{16}$'

timeout -k 5 30 "$RUNTIME" -- ibv_devinfo >"$OUT/ibv_devinfo.log" 2>&1
check "ibv_devinfo: uroce0, port 1 PORT_ACTIVE, link layer Ethernet" 0 $? "$OUT/ibv_devinfo.log" \
  '^hca_id:[[:space:]]+uroce0$' 'port:[[:space:]]+1$' 'state:[[:space:]]+PORT_ACTIVE \(4\)' \
  'link_layer:[[:space:]]+Ethernet'

timeout -k 5 30 "$RUNTIME" -- ibv_devinfo -v >"$OUT/ibv_devinfo-v.log" 2>&1
check "ibv_devinfo -v: GID[0] ::ffff:127.0.0.x, RoCE v2" 0 $? "$OUT/ibv_devinfo-v.log" \
  '^hca_id:[[:space:]]+uroce0$' 'state:[[:space:]]+PORT_ACTIVE \(4\)' 'link_layer:[[:space:]]+Ethernet' \
  'GID\[ *0\]:[[:space:]]+::ffff:127\.0\.0\.([2-9]|[1-9][0-9]|1[0-9][0-9]|2[0-5][0-9]), RoCE v2$'

timeout -k 5 30 "$RUNTIME" -- ibv_devinfo -d uroce0 -i 1 >"$OUT/ibv_devinfo-d.log" 2>&1
check "ibv_devinfo -d uroce0 -i 1" 0 $? "$OUT/ibv_devinfo-d.log" '^hca_id:[[:space:]]+uroce0$' 'PORT_ACTIVE'

# --- ibv_rc_pingpong ----------------------------------------------------------------
# pingpong NAME SIZE ITERS ARGS...: one server/client run; both must exit 0 and report
# SIZE * ITERS * 2 bytes and ITERS iterations, with the peer's RoCE v2 GID.
# (ibv_rc_pingpong's client does not retry its connect: it starts once the server listens.)
pingpong() {
  local name=$1 size=$2 iters=$3 port=$PORT; shift 3
  PORT=$((PORT + 1))
  local args=(-g 0 -c -p "$port" -s "$size" -n "$iters" "$@")
  SERVER=("$RUNTIME" -- "$PINGPONG" "${args[@]}")
  CLIENT=("$RUNTIME" -- "$PINGPONG" "${args[@]}" 127.0.0.1)
  run_pair "$name" "$port"
  local side rc re_bytes="^$((size * iters * 2)) bytes in [0-9.]+ seconds"
  for side in server client; do
    [ $side = server ] && rc=$SRC || rc=$CRC
    check "ibv_rc_pingpong ${args[*]}: $side" 0 "$rc" "$OUT/$name-$side.log" \
      'remote address: .*GID ::ffff:127\.0\.0\.[0-9]+' "$re_bytes" "^$iters iters in [0-9.]+ seconds"
  done
}
pingpong default 4096 1000                 # default size and path MTU: 4 packets a message
pingpong events 4096 1000 -e               # completion channel + ibv_req_notify_cq
pingpong seg64 65536 200 -m 1024           # 64 packets a message
pingpong mtu4096-events 8192 1000 -m 4096 -e

# --- refusals -----------------------------------------------------------------------
# Without -g the QP's address vector has no GRH; RoCE cannot address a packet without
# one, so modify_qp(RTR) must fail with EINVAL, and both sides must exit, not hang.
GRH_REFUSED='modify_qp refused: RoCE needs a GRH .*\(EINVAL\)'
port=$PORT; PORT=$((PORT + 1))
SERVER=("$RUNTIME" --log 1 -- "$PINGPONG" -p "$port" -n 10)
CLIENT=("$RUNTIME" --log 1 -- "$PINGPONG" -p "$port" -n 10 127.0.0.1)
run_pair no-gid "$port"
check "no -g, server: modify_qp(RTR) refused with EINVAL, exit 1" 1 $SRC "$OUT/no-gid-server.log" \
  '^Failed to modify QP to RTR$' "$GRH_REFUSED"
# The server closes the connection before it sends its address: the client gives up.
check "no -g, client: exits 1 when the server refuses (no hang)" 1 $CRC "$OUT/no-gid-client.log" \
  "Couldn't read/write remote address"

port=$PORT; PORT=$((PORT + 1))
bg 60 "$OUT/no-gid-peer.log" "$PYTHON" "$TESTS_DIR/pingpong_peer.py" "$port" --timeout 30
peer=$BG_PID
if wait_for_line "$OUT/no-gid-peer.log" "^listening on $port" 15; then
  timeout -k 5 60 "$RUNTIME" --log 1 -- "$PINGPONG" -p "$port" -n 10 127.0.0.1 >"$OUT/no-gid-client2.log" 2>&1
  rc=$?
  reap "$peer"
  check "no -g, client given a peer without a GID: modify_qp(RTR) refused, exit 1" 1 $rc \
    "$OUT/no-gid-client2.log" '^Failed to modify QP to RTR$' "$GRH_REFUSED"
  expect_rc "pingpong_peer.py (the exchange)" 0 "$RC" "$OUT/no-gid-peer.log"
else
  fail "pingpong_peer.py did not listen on $port within 15 s"; show "$OUT/no-gid-peer.log"
fi

t_finish
