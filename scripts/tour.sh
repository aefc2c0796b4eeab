#!/usr/bin/env bash
# The guided tour: install what is missing, build, boot the Soft-RoCE lab VMs, and run
# every lesson between them (server on 10.0.0.1, client on 10.0.0.2) with the wire
# recorded; then lesson 01 once more on the userspace RoCE runtime (no VM, no kernel
# module). Ends with where the logs and captures are.
#
#   scripts/tour.sh                        the tour in the lab VMs (Soft-RoCE)
#   scripts/tour.sh --runtime userspace    the whole tour, lessons 01-05, on this host on
#                                          the userspace RoCE runtime (userspace-roce/):
#                                          no VM, no kernel module; some seconds once
#                                          built. Installing missing packages needs root
#                                          or sudo; with every package present, or with
#                                          --no-setup, no root is needed. Each lesson
#                                          runs the same server and client commands as
#                                          in the lab (captures/NN/scenario.sh), each
#                                          process with its own loopback address; the
#                                          RDMA CM lessons' servers at 127.0.200.N, which
#                                          their clients are given. As root with
#                                          tcpdump, the wire is recorded too.
#   scripts/tour.sh --runtime userspace --no-setup
#                                          the same with what $BUILD_DIR already holds:
#                                          no package check, no build (the test
#                                          tour_userspace runs it so)
#   scripts/tour.sh --help
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lessons=(01-verbs-send-recv 02-cm-write-read 03-write-with-imm 04-lambda 05-tls-psn)
start=$SECONDS

runtime=kernel setup=1
while [ $# -gt 0 ]; do
  case $1 in
    --no-setup) setup=0; shift ;;
    --runtime)
      [ $# -ge 2 ] || { echo "tour.sh: --runtime needs kernel or userspace" >&2; exit 2; }
      runtime=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "tour.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case $runtime in
  kernel|userspace) ;;
  *) echo "tour.sh: unknown runtime '$runtime' (kernel or userspace)" >&2; exit 2 ;;
esac
if [ $setup = 0 ] && [ "$runtime" != userspace ]; then
  echo "tour.sh: --no-setup is for --runtime userspace (the lab tour needs its image and build)" >&2
  exit 2
fi

# userspace_tour: every lesson's lab scenario (captures/NN/scenario.sh: SERVER_CMD and
# CLIENT_CMD, as the lab runs them) on this host on the userspace runtime. The lessons
# with a TCP side channel (01, 05) reach their server at 127.0.0.1 (lesson 05's
# certificate names it), and exchange the runtime addresses over it; an RDMA CM lesson's
# server runs at 127.0.200.N (UROCE_ADDR), where its client connects.
userspace_tour() {
  local tour="$BUILD_DIR/tour/userspace-roce" n=0 lesson
  rm -rf "$tour"
  mkdir -p "$tour"
  "$ROOT/scripts/make-certs.sh" "$BUILD_DIR/certs" >"$tour/make-certs.log" 2>&1 \
    || { cat "$tour/make-certs.log"; echo "tour: scripts/make-certs.sh failed" >&2; exit 1; }
  local line
  while IFS= read -r line; do export "${line?}"; done < <("$ROOT/scripts/userspace-roce.sh" --print-env)
  local capture=0
  if [ "$(id -u)" -eq 0 ] && command -v tcpdump >/dev/null; then capture=1; fi
  for lesson in "${lessons[@]}"; do
    n=$((n + 1))
    local out="$tour/$lesson" addr="127.0.200.$n" server_ip server_env=()
    case $lesson in
      02-*|03-*|04-*) server_ip=$addr; server_env=(env "UROCE_ADDR=$addr") ;;
      *) server_ip=127.0.0.1 ;;
    esac
    step "[$n/${#lessons[@]}] lesson $lesson on the userspace runtime: server at $server_ip, client on this host"
    mkdir -p "$out"
    local SERVER_CMD CLIENT_CMD t0=$SECONDS cap_pid=""
    # shellcheck source=/dev/null
    source "$ROOT/captures/$lesson/scenario.sh"
    # The lab's guests each have their own /tmp; here lesson 05's fifo goes to $LAB_OUT.
    CLIENT_CMD=${CLIENT_CMD//\/tmp\/victim/\$LAB_OUT\/victim}
    if [ $capture = 1 ]; then
      timeout 300 tcpdump -Z root -i lo -s 8000 -U -w "$out/wire.pcap" udp port 4791 >"$out/tcpdump.log" 2>&1 &
      cap_pid=$!
      local deadline=$((SECONDS + 10))
      until grep -q "listening on" "$out/tcpdump.log" || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
    fi
    export LAB_OUT=$out LAB_SERVER_IP=$server_ip LAB_REPO=$ROOT BUILD_DIR
    timeout 120 "${server_env[@]}" bash -c "$SERVER_CMD" &
    local spid=$! src=0 crc=0
    # The client starts once the server's device is up (bounded): before that, no process
    # holds the server's address, and the client's rdma_resolve_addr would wait for one
    # (at most its timeout, 2 s in the lessons; then ADDR_ERROR).
    if [ "$server_ip" = "$addr" ]; then
      local deadline=$((SECONDS + 15))
      until [ -n "$(ss -Hlun "src $addr:4791" 2>/dev/null)" ] || [ $SECONDS -ge $deadline ] \
            || ! kill -0 "$spid" 2>/dev/null; do
        sleep 0.05
      done
    fi
    (cd "$ROOT" && timeout 120 bash -c "$CLIENT_CMD") || crc=$?
    wait "$spid" || src=$?
    if [ -n "$cap_pid" ]; then
      local caprc=0
      kill -INT "$cap_pid" 2>/dev/null
      wait "$cap_pid" || caprc=$?
      [ $caprc -eq 0 ] || echo "    (tcpdump exited $caprc: $out/tcpdump.log)"
    fi
    if [ $src -ne 0 ] || [ $crc -ne 0 ]; then
      for log in "$out"/*.log; do echo "--- $log"; tail -n 15 "$log"; done
      echo "tour: lesson $lesson on the userspace runtime failed: server exit $src, client exit $crc (logs in $out)" >&2
      exit 1
    fi
    grep -h -E "^(server|client): " "$out"/*.log | sed 's/^/    /'
    echo "    ok in $((SECONDS - t0)) s"
  done
  step "done in $((SECONDS - start)) s: every lesson on the userspace runtime"
  for lesson in "${lessons[@]}"; do
    echo "  $lesson"
    local logs=() log
    for log in "$tour/$lesson"/*.log; do [ "${log##*/}" = tcpdump.log ] || logs+=("$log"); done
    echo "    logs:        ${logs[*]}"
    [ $capture = 1 ] && echo "    capture:     $tour/$lesson/wire.pcap   (tshark -r $tour/$lesson/wire.pcap | less)"
    echo "    README:      $ROOT/lessons/$lesson/README.md"
  done
  [ $capture = 1 ] || echo "  (no capture: tcpdump needs root; userspace-roce/README.md says how to record the wire)"
}

if [ $setup = 1 ]; then
  step "packages"
  "$ROOT/scripts/install-deps.sh"
  step "build ($BUILD_DIR)"
  mkdir -p "$BUILD_DIR"
  configure_and_build >"$BUILD_DIR/tour-build.log" 2>&1 || { tail -n 30 "$BUILD_DIR/tour-build.log"; echo "build failed (log: $BUILD_DIR/tour-build.log)" >&2; exit 1; }
  echo "built lessons into $BUILD_DIR/lessons/"
fi
if [ "$runtime" = userspace ]; then
  userspace_tour
  exit 0
fi
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
