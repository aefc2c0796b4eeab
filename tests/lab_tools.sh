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
#      After that failed command the guest checks its NIC (guest-init.sh, 4c): it must
#      find that eth0 sends.
#   3. a stuck NIC runs the lab once more (lab.sh, "A NIC that stopped"): a command
#      that leaves <out>/nic-stuck, the guest's verdict on a NIC that stopped sending
#      (written here by the command itself: a real one cannot be made on demand), and
#      fails; the second attempt passes, the first is kept in <DIR>.nic-stuck. Then one
#      that does so every time: the lab runs twice and fails.
# Logs: $BUILD_DIR/lab-runs/lab-tools-{order,timeout,nic-once,nic-twice}/.
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
rm -rf "$out" "$out.nic-stuck"
t0=$SECONDS
if "$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 30 \
     --server 'ibv_rc_pingpong -g "$LAB_GID_INDEX"' 2>&1 | tee "$out.log"; then
  bad "lab.sh run (timeout) succeeded, but its command should have been killed"
fi
echo "lab_tools: the single guest ran for $((SECONDS - t0)) s"
[ -f "$out/server/timed-out" ] && ok "the command hit --timeout" || bad "no $out/server/timed-out"
expect "$out/server/cmd.log" "^  local address:  LID 0x[0-9a-f]+, QPN 0x[0-9a-f]+" \
  "ibv_rc_pingpong's output, printed before it was killed, is in cmd.log"

expect "$out/server/console.log" \
  "^lab-init: NIC check: eth0 transmits \(tx_packets [0-9]+ -> [0-9]+ in [0-9.]+ s; the root qdisc handed [1-9][0-9]* frames to the driver\)" \
  "after the failed command the guest checked its NIC: frames reached the driver and the NIC took them"
[ ! -e "$out.nic-stuck" ] && ! grep -q "once more" "$out.log" &&
  ok "a failure with a NIC that transmits is not run again" || bad "lab.sh ran the lab again, though no NIC was stuck"

# --- 3. a stuck NIC: the lab once more ---------------------------------------------
# The command plays the guest's NIC check: nic-stuck, then a failure. It knows its
# second attempt by the first one's directory, which lab.sh keeps beside DIR.
stuck_cmd() {  # ALWAYS(0|1): prints the command
  printf '%s\n' "if [ $1 = 0 ] && [ -d \"\${LAB_OUT%/server}.nic-stuck\" ]; then echo 'attempt 2: passes'; exit 0; fi
    echo 'attempt: plays a stuck NIC'
    echo 'eth0 took no frame off its transmit ring (written by tests/lab_tools.sh)' >\"\$LAB_OUT/nic-stuck\"
    exit 3"
}
# run_stuck NAME ALWAYS: runs the lab into lab-tools-NAME; sets out and rc.
run_stuck() {
  out="$BUILD_DIR/lab-runs/lab-tools-$1"
  rm -rf "$out" "$out.nic-stuck" "$out.log"
  local t0=$SECONDS
  rc=0
  "$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 60 --capture "$out/wire.pcap" --server "$(stuck_cmd "$2")" \
    >"$out.log" 2>&1 || rc=$?
  echo "lab_tools: the $1 run took $((SECONDS - t0)) s and exited with $rc (output: $out.log)"
}
run_stuck nic-once 0
[ $rc = 0 ] && ok "a run whose first attempt had a stuck NIC passed on its second" || bad "lab.sh run (nic-once) failed"
expect "$out.log" "^lab: server: its NIC stopped sending: eth0 took no frame" "lab.sh names the stuck NIC and what the guest saw"
expect "$out.log" "^lab: the command's failure is the lab's .*running the lab once more; the first attempt is in $out.nic-stuck" \
  "lab.sh says it runs the lab once more, and where the first attempt is"
expect "$out.nic-stuck/server/cmd.log" "^attempt: plays a stuck NIC" "the first attempt's output is kept"
[ -s "$out.nic-stuck/wire.pcap" ] && [ -s "$out/wire.pcap" ] && [ -s "$out.nic-stuck/lab-info" ] &&
  ok "the first attempt's capture and lab-info are kept, and the second attempt has its own capture" ||
  bad "missing: $out.nic-stuck/wire.pcap, $out.nic-stuck/lab-info or $out/wire.pcap"
expect "$out/server/cmd.log" "^attempt 2: passes" "the second attempt ran in DIR"
[ ! -e "$out/server/nic-stuck" ] && ok "DIR holds the second attempt only" || bad "$out/server/nic-stuck is left from the first attempt"

run_stuck nic-twice 1
[ $rc != 0 ] && ok "a run whose NIC was stuck in both attempts fails" || bad "lab.sh run (nic-twice) passed, but its NIC was stuck in both attempts"
[ "$(grep -c "running the lab once more" "$out.log")" = 1 ] && ok "the lab ran once more, not more" ||
  bad "'running the lab once more' is not in $out.log exactly once"
expect "$out.log" "^lab: a NIC was stuck again: this run fails" "lab.sh says why the run fails"
expect "$out.log" "^lab: server: exit 3 " "the second attempt's exit code is reported"

[ $failed -eq 0 ] && echo "lab_tools: OK"
exit $failed
