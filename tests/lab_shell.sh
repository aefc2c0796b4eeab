#!/usr/bin/env bash
# The lab you can sit in, driven by a script (registered with ctest as lab_shell, label
# lab): `lab.sh shell` and `lab.sh attach client` with commands on stdin instead of a
# keyboard. In the two shells: `rdma link` shows rxe0, ibv_devices lists it, the shells
# have the lab's environment, ibv_rc_pingpong runs between them (the server under
# lab-ready, the client after lab-wait), the client pings the server; then each shell
# exits. Afterwards both shells must have exited by themselves (exit 0), and no qemu of
# this lab may be left. Logs: $BUILD_DIR/lab-runs/shell/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
out="$BUILD_DIR/lab-runs/shell"
rm -rf "$out"
mkdir -p "$out"

# The server leaves only once the client's shell has exited (its guest announces
# client-shell-exited once it has recorded the shell's exit code): the lab ends with the
# server's shell, and stops a client guest still running then.
cat >"$out/server.in" <<'EOF'
echo "== server: rdma link"; rdma link
echo "== server: ibv_devices"; ibv_devices
echo "== server: env: $LAB_ROLE $LAB_IP $(pwd) $_STDBUF_O"
lab-ready pp --tcp-listen 18515 -- ibv_rc_pingpong -g "$LAB_GID_INDEX" -n 20
lab-wait --timeout 300 client-shell-exited
echo "== server: leaving"
exit
EOF
cat >"$out/client.in" <<'EOF'
echo "== client: rdma link"; rdma link
lab-wait --timeout 300 pp && ibv_rc_pingpong -g "$LAB_GID_INDEX" -n 20 "$LAB_SERVER_IP"
busybox ping -c 2 -W 10 "$LAB_SERVER_IP"
exit
EOF

t0=$SECONDS
"$ROOT/scripts/lab/lab.sh" shell --out "$out" --timeout 600 <"$out/server.in" >"$out/server.out" 2>&1 &
lab=$!
# attach waits (bounded) for the client guest's shell to come up.
client_rc=0
"$ROOT/scripts/lab/lab.sh" attach client --out "$out" <"$out/client.in" >"$out/client.out" 2>&1 || client_rc=$?
lab_rc=0
wait "$lab" || lab_rc=$?
echo "lab_shell: the lab ran for $((SECONDS - t0)) s (lab.sh shell exit $lab_rc, attach exit $client_rc)"

failed=0
# plain FILE: FILE without carriage returns and terminal escape sequences (bash's
# bracketed-paste switch before each prompt).
plain() { tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g'; }
# expect FILE REGEX WHAT: a line of FILE matches REGEX.
expect() {
  if plain "$1" | grep -Eq -- "$2"; then
    echo "lab_shell: ok: $3"
  else
    echo "lab_shell: FAILED: $3 (no line matching /$2/ in $1)"
    failed=1
  fi
}
s="$out/server.out" c="$out/client.out"
expect "$s" "^link rxe0/1 state ACTIVE .*netdev eth0" "server: rdma link shows rxe0 on eth0"
expect "$s" "^[[:space:]]+rxe0[[:space:]]+[0-9a-f]{16}$" "server: ibv_devices lists rxe0"
expect "$s" "^== server: env: server 10\.0\.0\.1 $ROOT L$" "server: the lab's environment, in the repository"
expect "$s" "^lab-ready: pp is ready \(TCP port 18515 listens" "server: lab-ready announced the pingpong server"
expect "$s" "^20 iters in " "server: ibv_rc_pingpong completed 20 iterations"
expect "$s" "^lab-wait: client-shell-exited is ready \(announced by client" "server: lab-wait saw the client finish"
expect "$s" "^lab: server: the shell exited with 0; the guest powered off" "server: the shell exited by itself"
expect "$s" "^lab: client: the shell exited with 0; the guest powered off" "client: the shell exited by itself"
expect "$c" "^link rxe0/1 state ACTIVE .*netdev eth0" "client: rdma link shows rxe0 on eth0"
expect "$c" "^lab-wait: pp is ready \(announced by server" "client: lab-wait saw the server listen"
expect "$c" "^20 iters in " "client: ibv_rc_pingpong completed 20 iterations"
expect "$c" "^2 packets transmitted, 2 packets received" "client: ping across the lab's wire"
expect "$c" "^lab: the client guest closed its shell port: the guest is off" "client: attach ended with the guest"
[ $lab_rc -eq 0 ] || { echo "lab_shell: FAILED: lab.sh shell exited with $lab_rc"; failed=1; }
[ $client_rc -eq 0 ] || { echo "lab_shell: FAILED: lab.sh attach client exited with $client_rc"; failed=1; }
# No qemu of this lab is left (its command line names $out).
left=$(ps -eo pid=,args= | grep -F -- "$out/" | grep -F qemu-system || true)
if [ -n "$left" ]; then
  echo "lab_shell: FAILED: qemu still running after the lab ended:"; echo "$left"
  failed=1
else
  echo "lab_shell: ok: no qemu of this lab is left"
fi
if [ $failed -ne 0 ]; then
  for f in "$s" "$c"; do echo "---- $f"; plain "$f" | tail -n 40; done
  exit 1
fi
echo "lab_shell: OK"
