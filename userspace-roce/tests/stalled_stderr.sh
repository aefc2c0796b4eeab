#!/usr/bin/env bash
# uroce_stalled_stderr: a program whose stderr nobody reads keeps its RDMA traffic going.
# The runtime logs from inside the transport (at UROCE_LOG=2, a line per packet). Here
# both sides of ibv_rc_pingpong log every packet into a pipe that is held open and never
# read: the pipe fills within the first few hundred packets, and a log write from then on
# would wait for ever. The runtime's log never makes the transport wait (it buffers,
# then drops lines), so 200 messages of 64 KiB (64 packets each, 1024-byte path MTU)
# still cross in both directions, both sides exit 0 with the data checked, and each pipe
# is found nearly full afterwards (at least 48 KiB of its 64 KiB; the writes that filled
# it do not always fill its last page): the proof that its writer was stalled.
# TCP port 18625. Logs in $BUILD_DIR/userspace-roce/test-out/uroce_stalled_stderr/.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_init uroce_stalled_stderr
PORT=18625
for tool in ibv_rc_pingpong ss; do
  command -v "$tool" >/dev/null || { fail "$tool is not installed (ibverbs-utils, iproute2: scripts/install-deps.sh)"; t_finish; }
done

# One pipe per side, opened read-write by this shell (so that writers never see EPIPE)
# and never read until both programs have exited.
mkfifo "$OUT/server.stderr" "$OUT/client.stderr"
exec 3<>"$OUT/server.stderr" 4<>"$OUT/client.stderr"
args=(-g 0 -c -p "$PORT" -s 65536 -n 200 -m 1024)
timeout -k 5 120 "$RUNTIME" --log 2 -- ibv_rc_pingpong "${args[@]}" >"$OUT/server.log" 2>&3 </dev/null &
spid=$!
if ! wait_listen "$PORT" 30; then
  echo "    (the server did not listen on TCP port $PORT within 30 s)"
fi
timeout -k 5 120 "$RUNTIME" --log 2 -- ibv_rc_pingpong "${args[@]}" 127.0.0.1 >"$OUT/client.log" 2>&4 </dev/null &
cpid=$!
wait $cpid; crc=$?
wait $spid; src=$?

re_bytes="^$((65536 * 200 * 2)) bytes in [0-9.]+ seconds"
check "server, stderr never read: 200 x 64 KiB both ways, data checked" 0 $src "$OUT/server.log" "$re_bytes" '^200 iters in'
check "client, stderr never read: 200 x 64 KiB both ways, data checked" 0 $crc "$OUT/client.log" "$re_bytes" '^200 iters in'

# What sits in each pipe now: a nearly full pipe buffer of per-packet lines.
for side in server client; do
  fd=3; [ $side = client ] && fd=4
  dd bs=65536 count=1 iflag=nonblock status=none <&$fd >"$OUT/$side.stderr.head" 2>/dev/null
  bytes=$(stat -c %s "$OUT/$side.stderr.head")
  if [ "$bytes" -ge 49152 ] && grep -Eq '^userspace-roce\[[0-9]+\] [0-9.]+: (tx|rx) ' "$OUT/$side.stderr.head"; then
    pass "$side: its stderr pipe was full of per-packet lines ($bytes bytes: writer stalled)"
  else
    fail "$side: expected a nearly full pipe (at least 49152 bytes) of per-packet log lines, found $bytes bytes"
    show "$OUT/$side.stderr.head"
  fi
done
exec 3>&- 4>&-
t_finish
