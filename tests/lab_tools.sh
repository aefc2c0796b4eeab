#!/usr/bin/env bash
# What the lab gives every command (registered with ctest as lab_tools, label lab):
#   1. line-buffered output, in order: rping -v between the two guests, the server under
#      `lab-ready --cm-listen`, the client after `lab-wait`; the server's cmd.log must
#      show its three "server ping data" lines (stdout) before its DISCONNECT line
#      (stderr), the order they happened in (block-buffered, stdout would come last);
#      then lab-ready giving up (its program never listens) and the client's lab-wait
#      failing at once with lab-ready's reason, and lab-wait timing out on a NAME nobody
#      announces.
#   2. output surviving the timeout: one guest, `ibv_rc_pingpong` waiting for a client
#      that never comes, killed by --timeout; its "local address" line must be in cmd.log.
# Logs: $BUILD_DIR/lab-runs/lab-tools-{order,timeout}/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
failed=0
ok() { echo "lab_tools: ok: $*"; }
bad() { echo "lab_tools: FAILED: $*"; failed=1; }
# expect FILE REGEX WHAT
expect() { if grep -Eq -- "$2" "$1"; then ok "$3"; else bad "$3 (no line matching /$2/ in $1)"; fi; }

# --- 1. order, lab-ready / lab-wait --------------------------------------------------
out="$BUILD_DIR/lab-runs/lab-tools-order"
rm -rf "$out"
t0=$SECONDS
# `lab-ready never` gives up after 5 s: nothing listens on port 18599.
"$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 300 \
  --server 'lab-ready rping --cm-listen 7174 -- rping -s -v -a "$LAB_IP" -C 3 || exit 1
            lab-ready --timeout 5 never --tcp-listen 18599 -- sleep 60; [ $? -eq 1 ]' \
  --client 'lab-wait rping && rping -c -v -a "$LAB_SERVER_IP" -C 3 || exit 1
            lab-wait never; [ $? -eq 1 ] || exit 1
            lab-wait --timeout 2 nobody; [ $? -eq 1 ]' \
  || bad "lab.sh run (order) failed"
echo "lab_tools: the pair ran for $((SECONDS - t0)) s"
s="$out/server/cmd.log" c="$out/client/cmd.log"
expect "$s" "^lab-ready: rping is ready \(an RDMA CM id listens on port 7174" "lab-ready saw rping's CM id listen"
expect "$c" "^lab-wait: rping is ready \(announced by server" "lab-wait returned once rping listened"
pings=$(grep -n "^server ping data: rdma-ping-" "$s" | cut -d: -f1 | tail -n 1)
disconnect=$(grep -n "^server DISCONNECT EVENT" "$s" | cut -d: -f1 | head -n 1)
if [ "$(grep -c "^server ping data: rdma-ping-" "$s")" -eq 3 ] && [ -n "$disconnect" ] &&
   [ "$pings" -lt "$disconnect" ]; then
  ok "the server's three pings (stdout, lines up to $pings) come before its DISCONNECT (stderr, line $disconnect)"
else
  bad "rping's server log is out of order or incomplete (last ping line '${pings:-none}', DISCONNECT line '${disconnect:-none}'): $s"
fi
expect "$c" "^client DISCONNECT EVENT" "the client's rping ran to its end"
expect "$s" "^lab-ready: never: not ready after 5 s: waited for: TCP port 18599 listens" "lab-ready gives up, naming what it waited for"
expect "$c" "^lab-wait: never: will not be ready: the lab-ready on the server gave up: not ready after 5 s" "lab-wait fails at once with lab-ready's reason"
expect "$c" "^lab-wait: nobody: not announced within 2 s .*announced so far: .*rping \(by server, over\)" "lab-wait times out, naming NAME, the time and what was announced"

# --- 2. output kept when the timeout kills the command --------------------------------
out="$BUILD_DIR/lab-runs/lab-tools-timeout"
rm -rf "$out"
t0=$SECONDS
if "$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 30 \
     --server 'ibv_rc_pingpong -g "$LAB_GID_INDEX"'; then
  bad "lab.sh run (timeout) succeeded, but its command should have been killed"
fi
echo "lab_tools: the single guest ran for $((SECONDS - t0)) s"
[ -f "$out/server/timed-out" ] && ok "the command hit --timeout" || bad "no $out/server/timed-out"
expect "$out/server/cmd.log" "^  local address:  LID 0x[0-9a-f]+, QPN 0x[0-9a-f]+" \
  "ibv_rc_pingpong's output, printed before it was killed, is in cmd.log"

[ $failed -eq 0 ] && echo "lab_tools: OK"
exit $failed
