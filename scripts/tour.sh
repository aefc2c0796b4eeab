#!/usr/bin/env bash
# The guided tour: install what is missing, build the lessons, boot the Soft-RoCE lab VMs
# once and run every lesson between them (server on 10.0.0.1, client on 10.0.0.2) with the
# wire recorded, cut the recording into one capture per lesson, check each and draw its
# ladder diagram; then lesson 01 once more on the userspace RoCE runtime (no VM, no kernel
# module). Ends with where the logs, captures and ladders are, and how long each part took.
#
#   scripts/tour.sh                        the tour in the lab VMs (Soft-RoCE)
#   scripts/tour.sh --runtime userspace    the whole tour, lessons 01-07, on this host on
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
#   scripts/tour.sh --no-setup             either tour with what $BUILD_DIR already
#   scripts/tour.sh --runtime userspace --no-setup
#                                          holds: no package check, no build (the tests
#                                          tour_lab and tour_userspace run them so; the
#                                          lab image is still built if missing)
#   scripts/tour.sh --help
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lessons=(01-verbs-send-recv 02-cm-write-read 03-write-with-imm 04-lambda 05-tls-psn 06-performance 07-when-it-breaks)
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
  export PATH="$ROOT/scripts/lab/bin:$PATH"
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
      grep -q "listening on" "$out/tcpdump.log" ||
        echo "    (tcpdump did not say it listens within 10 s: this lesson's capture may miss frames; $out/tcpdump.log)"
    fi
    # As in the lab: the scenario's server announces itself with lab-ready once it
    # listens, and its client waits with lab-wait (scripts/lab/bin/), here through a
    # directory of this host instead of the guests' shared one.
    mkdir -p "$out/sync"
    export LAB_OUT=$out LAB_SYNC=$out/sync LAB_RUNTIME=userspace LAB_SERVER_IP=$server_ip LAB_REPO=$ROOT BUILD_DIR
    LAB_ROLE=server timeout 120 "${server_env[@]}" bash -c "$SERVER_CMD" &
    local spid=$! src=0 crc=0
    (cd "$ROOT" && LAB_ROLE=client timeout 120 bash -c "$CLIENT_CMD") || crc=$?
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
    sed -n -E '/^(server|client): /s/^/    /p' "$out"/*.log
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

took_packages=0 took_build=0
if [ $setup = 1 ]; then
  step "packages (only what the tour needs)"
  t0=$SECONDS
  "$ROOT/scripts/install-deps.sh" --for tour
  took_packages=$((SECONDS - t0))
  step "build the lessons and the userspace runtime ($BUILD_DIR)"
  t0=$SECONDS
  mkdir -p "$BUILD_DIR"
  configure_and_build lessons uroce_verbs uroce_rdmacm >"$BUILD_DIR/tour-build.log" 2>&1 \
    || { tail -n 30 "$BUILD_DIR/tour-build.log"; echo "build failed (log: $BUILD_DIR/tour-build.log)" >&2; exit 1; }
  took_build=$((SECONDS - t0))
  echo "built lessons into $BUILD_DIR/lessons/ in $took_build s"
fi
if [ "$runtime" = userspace ]; then
  userspace_tour
  exit 0
fi
step "lab image (Debian kernel with rdma_rxe + busybox; cached after the first time)"
t0=$SECONDS
"$ROOT/scripts/lab/build-image.sh"
took_image=$((SECONDS - t0))

# lab_tour DIR: one boot of the guest pair for all seven lessons, one after another, with
# the wire recorded throughout. Each lesson's server and client commands are the ones its
# capture runs (captures/NN/scenario.sh), each with its own subdirectory of LAB_OUT and
# LAB_SYNC (so that lab-ready/lab-wait names such as "server" stay per lesson). A barrier
# separates the lessons: the server guest starts lesson N+1 only once the client guest has
# finished lesson N (lab-ready/lab-wait "client-done"), and marks that point on the wire
# itself: one UDP datagram to the client's port 9 (discard), "tour: lesson NN". The
# recording is cut at those markers (by frame number: the guests' clocks and the
# capture's time stamps are not the same clock) into one capture per lesson, each checked
# like a capture of its own (scripts/capture.sh LESSON --recorded). One boot instead of
# six saves five boots and power-offs, each several seconds under software emulation.
lab_tour() {
  local dir=$1 lesson cmds="$1/cmds"
  mkdir -p "$cmds"
  for lesson in "${lessons[@]}"; do
    (
      # shellcheck source=/dev/null
      source "$ROOT/captures/$lesson/scenario.sh"
      printf "export BUILD_DIR='%s'\n%s\n" "$BUILD_DIR" "$SERVER_CMD" >"$cmds/$lesson.server.sh"
      printf "export BUILD_DIR='%s'\n%s\n" "$BUILD_DIR" "$CLIENT_CMD" >"$cmds/$lesson.client.sh"
    )
  done
  # Run inside the guests. A lesson that fails is recorded (its rc file) and the next one
  # still runs; the barrier waits at most 300 s.
  cat >"$cmds/server.sh" <<EOF
out=\$LAB_OUT sync=\$LAB_SYNC status=0
for lesson in ${lessons[*]}; do
  export LAB_OUT=\$out/\$lesson LAB_SYNC=\$sync/\$lesson
  mkdir -p "\$LAB_OUT" "\$LAB_SYNC"
  echo "tour: lesson \$lesson" >/dev/udp/\$LAB_CLIENT_IP/9
  bash "$cmds/\$lesson.server.sh"; rc=\$?
  echo \$rc >"\$LAB_OUT/rc"; [ \$rc -eq 0 ] || status=1
  lab-wait -q --timeout 300 client-done || exit 1
done
exit \$status
EOF
  cat >"$cmds/client.sh" <<EOF
out=\$LAB_OUT sync=\$LAB_SYNC status=0
for lesson in ${lessons[*]}; do
  export LAB_OUT=\$out/\$lesson LAB_SYNC=\$sync/\$lesson
  mkdir -p "\$LAB_OUT" "\$LAB_SYNC"
  bash "$cmds/\$lesson.client.sh"; rc=\$?
  echo \$rc >"\$LAB_OUT/rc"; [ \$rc -eq 0 ] || status=1
  lab-ready -q client-done
done
exit \$status
EOF
  "$ROOT/scripts/lab/lab.sh" run --out "$dir/lab" --timeout 600 --capture "$dir/lab/wire.pcap" \
    --server "bash '$cmds/server.sh'" --client "bash '$cmds/client.sh'" >"$dir/lab.log" 2>&1
}

# What this tour writes under $BUILD_DIR/tour (the userspace tour has its own
# subdirectory there, userspace-roce/, left alone).
tour="$BUILD_DIR/tour"
rm -rf "$tour/lab" "$tour/lab.log" "$tour/cmds" "$tour/01-userspace-roce" "${lessons[@]/#/$tour/}"
for lesson in "${lessons[@]}"; do rm -f "$tour/$lesson.report" "$tour/$lesson.status"; done
mkdir -p "$tour"
step "the lab: boot the two guests once; run lessons 01-07 between them (server 10.0.0.1, client 10.0.0.2), wire recorded"
t0=$SECONDS
labrc=0
lab_tour "$tour" || labrc=$?
took_lab=$((SECONDS - t0))
sed -n -E 's/^(lab: (booting|guests done))/    \1/p' "$tour/lab.log"
# check_lesson N LESSON: cut lesson N's part out of the recording, check it as a capture
# of its own and draw its ladder; its report goes to $tour/LESSON.report (printed in
# order below), its exit status says whether it passed. Two run at a time: each is a
# few seconds of tshark and Python, and this host has CPUs to spare once the guests are
# off.
check_lesson() {
  local n=$1 lesson=$2 out="$tour/$2" src crc until_next
  src=$(cat "$tour/lab/server/$lesson/rc" 2>/dev/null || echo "none (not run)")
  crc=$(cat "$tour/lab/client/$lesson/rc" 2>/dev/null || echo "none (not run)")
  if [ "$src" != 0 ] || [ "$crc" != 0 ]; then
    for log in "$tour/lab/server/$lesson"/*.log "$tour/lab/client/$lesson"/*.log; do
      [ -f "$log" ] && { echo "--- $log"; tail -n 15 "$log"; }
    done
    echo "    FAILED: server exit $src, client exit $crc (lab log: $tour/lab.log)"
    return 1
  fi
  # This lesson's part of the recording: from its start to the next lesson's.
  mkdir -p "$out"
  ln -sfn "$tour/lab/server/$lesson" "$out/server"
  ln -sfn "$tour/lab/client/$lesson" "$out/client"
  if [ -z "${starts[$((n - 1))]:-}" ]; then
    echo "    FAILED: no marker of this lesson's start in $tour/lab/wire.pcap (${#starts[@]} found; $tour/markers.log)"
    return 1
  fi
  until_next=${starts[$n]:-}
  if ! tshark -r "$tour/lab/wire.pcap" -F pcap -w "$out/wire.pcap" \
         -Y "frame.number > ${starts[$((n - 1))]}${until_next:+ && frame.number < $until_next}" 2>"$out/cut.log"; then
    cat "$out/cut.log"
    echo "    FAILED: cutting this lesson's frames out of $tour/lab/wire.pcap"
    return 1
  fi
  if ! "$ROOT/scripts/capture.sh" "$lesson" --out "$out" --recorded >"$out/check.log" 2>&1; then
    tail -n 30 "$out/check.log"
    echo "    FAILED: the capture check (full log: $out/check.log)"
    return 1
  fi
  # The ladder diagram of this run, drawn as the committed walkthrough's is.
  if ! (
    # shellcheck source=/dev/null
    source "$ROOT/captures/$lesson/scenario.sh"
    python3 "$ROOT/tests/tools/roce_ladder.py" "$out/$PCAP_NAME" --steps "$ROOT/captures/$lesson/steps" \
      --port "$PORT" -o "$out/ladder.svg" >"$out/ladder.log" 2>&1
  ); then
    cat "$out/ladder.log"
    echo "    FAILED: drawing the ladder diagram of $out"
    return 1
  fi
  # The programs' summary lines (lesson 06 has one client log per technique: client-*.log;
  # lesson 07 one log per case and side, its smoke's tally in smoke-*.log).
  local summary_logs=() log
  for log in "$out/server.log" "$out"/client*.log "$out"/*-client.log "$out"/*-server.log; do
    [ -f "$log" ] && summary_logs+=("$log")
  done
  [ ${#summary_logs[@]} -eq 0 ] || sed -n -E '/^(server|client): /s/^/    /p' "${summary_logs[@]}"
  for log in "$tour/lab/server/$lesson"/smoke-*.log "$tour/lab/client/$lesson"/smoke-*.log; do
    if [ -f "$log" ]; then sed -n -E '/^smoke: lesson [0-9]+: /s/^/    /p' "$log"; fi
  done
  sed -n -E '/^capture: .* bytes/s/^/    /p' "$out/check.log"
}

t0=$SECONDS
failed=""
# The frame numbers of the markers, one per lesson that started, in order.
starts=()
if [ -s "$tour/lab/wire.pcap" ]; then
  mapfile -t starts < <(tshark -r "$tour/lab/wire.pcap" -Y "udp.dstport == 9 && !icmp" \
                          -T fields -e frame.number 2>"$tour/markers.log")
fi
# Each check in a subshell of its own, its exit status in $tour/LESSON.status.
for n in $(seq 1 ${#lessons[@]}); do
  lesson=${lessons[$((n - 1))]}
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  ( set +e; check_lesson "$n" "$lesson" >"$tour/$lesson.report" 2>&1; echo $? >"$tour/$lesson.status" ) &
done
wait
for n in $(seq 1 ${#lessons[@]}); do
  lesson=${lessons[$((n - 1))]}
  step "[$n/${#lessons[@]}] lesson $lesson"
  cat "$tour/$lesson.report"
  [ "$(cat "$tour/$lesson.status" 2>/dev/null)" = 0 ] || failed+=" $lesson"
done
took_checks=$((SECONDS - t0))
if [ $labrc -ne 0 ] || [ -n "$failed" ]; then
  tail -n 40 "$tour/lab.log"
  echo "tour: failed:${failed:- the lab run (exit $labrc)} (lab log: $tour/lab.log; each guest's output: $tour/lab/)" >&2
  exit 1
fi

step "lesson 01 again, on the userspace RoCE runtime: no VM, no kernel module"
# Both sides on this host, each process with its own 127.0.0.x; the same binaries. The
# client is started with the server and retries its TCP connect until the server listens,
# as lesson 01's client does (connect_with_retry, here for at most 60 s).
urt="$tour/01-userspace-roce"
mkdir -p "$urt"
t0=$SECONDS
"$ROOT/scripts/userspace-roce.sh" -- "$BUILD_DIR/lessons/01-verbs-send-recv/server" -p 18599 \
  >"$urt/server.log" 2>&1 &
uspid=$!
if ! "$ROOT/scripts/userspace-roce.sh" -- "$BUILD_DIR/lessons/01-verbs-send-recv/client" 127.0.0.1 \
       -p 18599 -n 3 --connect-timeout 60 >"$urt/client.log" 2>&1 || ! wait "$uspid"; then
  kill "$uspid" 2>/dev/null || echo "tour: the server had already stopped"
  tail -n 15 "$urt/server.log" "$urt/client.log"
  echo "tour: lesson 01 on the userspace runtime failed (logs in $urt)" >&2
  exit 1
fi
sed -n -E '/^(server|client): /s/^/    /p' "$urt/server.log" "$urt/client.log"
sed -n -E '/GID\[0\].*chosen/s/^/    /p' "$urt/client.log"
took_urt=$((SECONDS - t0))
echo "    ok in $took_urt s (userspace-roce/README.md: how, and how to capture it)"

step "done in $((SECONDS - start)) s"
for lesson in "${lessons[@]}"; do
  pcap=$(ls "$tour/$lesson"/lesson*.pcap)
  logs=""
  for log in "$tour/$lesson/server.log" "$tour/$lesson"/client*.log "$tour/$lesson"/*-server.log "$tour/$lesson"/*-client.log; do
    [ -f "$log" ] && logs+="$log "
  done
  cat <<EOT
  $lesson
    logs:        $logs
    capture:     $pcap   (the whole boot's wire: $tour/lab/wire.pcap)
    read it:     tshark -r $pcap | less      (or open it in Wireshark)
    ladder:      $tour/$lesson/ladder.svg   (this run; open it in a browser)
    walkthrough: $ROOT/captures/$lesson/walkthrough.md   (the committed run, frame by frame)
    README:      $ROOT/lessons/$lesson/README.md
EOT
done
if [ -f "$BUILD_DIR/docs/html/index.html" ]; then
  echo "  the docs site: $BUILD_DIR/docs/html/index.html (lessons, walkthroughs with ladders, concepts, glossary)"
else
  echo "  the docs site (lessons, walkthroughs with ladders, concepts, glossary):"
  echo "    scripts/install-deps.sh && cmake --build $BUILD_DIR --target docs, then open $BUILD_DIR/docs/html/index.html"
fi
echo "  sit in the lab yourself: scripts/lab/lab.sh shell   (scripts/lab/lab.sh --help)"
echo "  time: packages $took_packages s, build $took_build s, lab image $took_image s," \
     "lab (boot once, seven lessons) $took_lab s, capture checks $took_checks s," \
     "userspace runtime $took_urt s; total $((SECONDS - start)) s"
echo "  (the tour's targets: 60 s with packages, build and lab image in place; 240 s from a" \
     "fresh clone on a fresh machine)"
