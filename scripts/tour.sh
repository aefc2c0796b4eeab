#!/usr/bin/env bash
# The guided tour: install what is missing, build, boot the Soft-RoCE lab VMs, and run
# every lesson between them (server on 10.0.0.1, client on 10.0.0.2) with the wire
# recorded; then lesson 01 once more on the userspace RoCE runtime (no VM, no kernel
# module). Ends with where the logs and captures are.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lessons=(01-verbs-send-recv 02-cm-write-read 03-write-with-imm 04-lambda 05-tls-psn)
start=$SECONDS

step "packages"
"$ROOT/scripts/install-deps.sh"
step "build ($BUILD_DIR)"
mkdir -p "$BUILD_DIR"
configure_and_build >"$BUILD_DIR/tour-build.log" 2>&1 || { tail -n 30 "$BUILD_DIR/tour-build.log"; echo "build failed (log: $BUILD_DIR/tour-build.log)" >&2; exit 1; }
echo "built lessons into $BUILD_DIR/lessons/"
step "lab image (Debian kernel with rdma_rxe + busybox; cached after the first time)"
"$ROOT/scripts/lab/build-image.sh"

tour="$BUILD_DIR/tour"
mkdir -p "$tour"
n=0
for lesson in "${lessons[@]}"; do
  n=$((n + 1))
  step "[$n/${#lessons[@]}] lesson $lesson: server in VM 10.0.0.1, client in VM 10.0.0.2, wire recorded"
  t0=$SECONDS
  if ! "$ROOT/scripts/capture.sh" "$lesson" --out "$tour/$lesson" >"$tour/$lesson.log" 2>&1; then
    tail -n 30 "$tour/$lesson.log"
    echo "tour: lesson $lesson failed after $((SECONDS - t0)) s (full log: $tour/$lesson.log)" >&2
    exit 1
  fi
  grep -h -E "^(server|client): " "$tour/$lesson/server.log" "$tour/$lesson/client.log" | sed 's/^/    /'
  grep -h -E "^capture: " "$tour/$lesson.log" | sed 's/^/    /'
  echo "    ok in $((SECONDS - t0)) s"
done

step "lesson 01 again, on the userspace RoCE runtime: no VM, no kernel module"
# Both sides on this host, each process with its own 127.0.0.x; the same binaries.
urt="$tour/userspace-roce"
mkdir -p "$urt"
t0=$SECONDS
"$ROOT/scripts/userspace-roce.sh" -- "$BUILD_DIR/lessons/01-verbs-send-recv/server" -p 18599 \
  >"$urt/server.log" 2>&1 &
uspid=$!
if ! "$ROOT/scripts/userspace-roce.sh" -- "$BUILD_DIR/lessons/01-verbs-send-recv/client" 127.0.0.1 \
       -p 18599 -n 3 >"$urt/client.log" 2>&1 || ! wait "$uspid"; then
  kill "$uspid" 2>/dev/null || echo "tour: the server had already stopped"
  tail -n 15 "$urt/server.log" "$urt/client.log"
  echo "tour: lesson 01 on the userspace runtime failed (logs in $urt)" >&2
  exit 1
fi
grep -h -E "^(server|client): " "$urt/server.log" "$urt/client.log" | sed 's/^/    /'
grep -h -E "GID\[0\].*chosen" "$urt/client.log" | sed 's/^/    /'
echo "    ok in $((SECONDS - t0)) s (userspace-roce/README.md: how, and how to capture it)"

step "done in $((SECONDS - start)) s"
for lesson in "${lessons[@]}"; do
  cat <<EOT
  $lesson
    logs:        $tour/$lesson/server.log  $tour/$lesson/client.log
    capture:     $(ls "$tour/$lesson"/*.pcap | grep -v wire.pcap)   (all frames: $tour/$lesson/wire.pcap)
    read it:     tshark -r $(ls "$tour/$lesson"/*.pcap | grep -v wire.pcap) | less      (or open it in Wireshark)
    walkthrough: $ROOT/captures/$lesson/walkthrough.md
    README:      $ROOT/lessons/$lesson/README.md
EOT
done
