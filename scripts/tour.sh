#!/usr/bin/env bash
# The guided tour: install what is missing, build, boot the Soft-RoCE lab VMs, and run
# every lesson between them (server on 10.0.0.1, client on 10.0.0.2) with the wire
# recorded. Ends with where the logs and captures are.
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
