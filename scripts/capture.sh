#!/usr/bin/env bash
# Record a lesson's packets in the lab VMs and check them against its walkthrough; or,
# with no lab, regenerate or check what is derived from the committed recording.
#
#   scripts/capture.sh LESSON [--out DIR]   run the lesson between the two lab guests,
#                                           keep the lesson's own frames, check them
#   scripts/capture.sh LESSON --update      ... and replace the committed capture and
#                                           logs in captures/LESSON/, and derive from
#                                           them its walkthrough.md, ladder.svg and
#                                           annotated capture (see below)
#   scripts/capture.sh LESSON --check       ... and check that the committed derived
#                                           files still match (as --check-committed),
#                                           and that a fresh run shows the same frames
#                                           (opcodes, order, sizes, PSN offsets)
#   scripts/capture.sh LESSON --out DIR --recorded
#                                           no lab run: DIR already holds one (wire.pcap,
#                                           server/ and client/ as lab.sh writes them, e.g.
#                                           one lesson of scripts/tour.sh's single boot):
#                                           keep the lesson's frames and check them
#   scripts/capture.sh LESSON --render      no lab: derive the three files again from the
#                                           committed capture, logs and steps file
#   scripts/capture.sh LESSON --check-committed
#                                           no lab: fail, naming each stale file, unless
#                                           the committed derived files are what --render
#                                           makes of the committed capture now, and every
#                                           frame belongs to a step of the steps file
#
# LESSON is a directory under captures/ (01-verbs-send-recv, 02-cm-write-read,
# 03-write-with-imm, 04-lambda, 05-tls-psn, 06-performance, 07-when-it-breaks: a
# selection of its failure cases, run by its smoke script; or interop) holding
# scenario.sh (what to run: PORT, REQUIRE, CHECK_LOGS, PCAP_NAME, SERVER_CMD, CLIENT_CMD,
# and optionally LOGS: the programs' logs as ROLE/NAME.log, default server/server.log
# client/client.log; LAB_ARGS: an array of extra `lab.sh run` options, default none, e.g.
# (--client-runtime userspace); README: the lesson README, relative to the repository,
# whose quoted log lines must be lines of this run's logs, default
# lessons/LESSON/README.md, empty for no such check; COMPARE_ARGS: an array of
# `roce_capture.py compare` options for --check, default (--without-resends): a request
# resent although it had arrived (no NAK asked for it, and the responder answered twice),
# and the repeated answer, are left out (kernel rxe's retransmission timer, armed for an
# earlier request and not restarted for a later one, can expire just after the later one
# was sent when an emulated guest is slow, and rxe then resends it although its ACK is on
# its way: timing, not the lesson's story; NAKs, the resends they ask for, and resends of
# requests that had not arrived stay); e.g. (--by-direction --without-resends): many
# requests in flight, so where the ACKs fall between them is timing),
# walkthrough.md.in (the narration, with {{...}} placeholders filled from the capture and
# the logs by tests/tools/roce_capture.py render) and steps (which step of the lesson each
# frame belongs to, and what it means: format in tests/tools/lesson_steps.py).
#
# Derived from the committed capture PCAP_NAME (lessonNN.pcap), its logs and those two:
#   walkthrough.md          the rendered narration (roce_capture.py render)
#   ladder.svg              the ladder diagram: one arrow per frame, the steps in the
#                           margin (tests/tools/roce_ladder.py)
#   lessonNN.pcapng         the same frames, each with its "step N: meaning" as a packet
#                           comment (tests/tools/lesson_steps.py annotate, with editcap);
#                           checked by content, not bytes: editcap writes its own
#                           version into the file
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  -h|--help) sed -n '2,/^set -euo pipefail/{/^set /d; s/^# \{0,1\}//; p}' "$0"; exit 0 ;;
esac
lesson=${1:?usage: capture.sh LESSON [--out DIR] [--update|--check|--render|--check-committed] (--help: more)}
shift
mode=run out="" recorded=""
while [ $# -gt 0 ]; do
  case $1 in
    --update) mode=update ;;
    --check) mode=check ;;
    --render) mode=render ;;
    --check-committed) mode=check-committed ;;
    --recorded) recorded=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    *) echo "capture.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
dir="$ROOT/captures/$lesson"
[ -f "$dir/scenario.sh" ] || {
  echo "capture.sh: no $dir/scenario.sh; LESSON is one of:" \
       $(cd "$ROOT/captures" && for d in */scenario.sh; do printf ' %s' "${d%/scenario.sh}"; done) >&2
  exit 2
}
LOGS="server/server.log client/client.log"
LAB_ARGS=()
COMPARE_ARGS=(--without-resends)
README="lessons/$lesson/README.md"
source "$dir/scenario.sh"
tool="$ROOT/tests/tools/roce_capture.py"
annotated=${PCAP_NAME%.pcap}.pcapng

# derive TO: write walkthrough.md, ladder.svg and the annotated capture into TO, from the
# committed capture, logs, walkthrough.md.in and steps file.
derive() {
  python3 "$tool" render "$dir/walkthrough.md.in" "$dir/$PCAP_NAME" --port "$PORT" --log-dir "$dir" \
    >"$1/walkthrough.md"
  python3 "$ROOT/tests/tools/roce_ladder.py" "$dir/$PCAP_NAME" --steps "$dir/steps" --port "$PORT" \
    -o "$1/ladder.svg" >/dev/null
  python3 "$ROOT/tests/tools/lesson_steps.py" annotate "$dir/$PCAP_NAME" --steps "$dir/steps" --port "$PORT" \
    -o "$1/$annotated" >/dev/null
}

# rederive: replace the derived files in captures/LESSON/, rendered into a scratch
# directory first, so that a template or steps file that fails leaves them as they were.
rederive() {
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  derive "$scratch"
  cp "$scratch/walkthrough.md" "$scratch/ladder.svg" "$scratch/$annotated" "$dir/"
}

# check_derived: the committed walkthrough.md, ladder.svg and annotated capture are what
# the committed capture, logs and steps file derive to now; exit 1 naming each stale one.
check_derived() {
  local stale=()
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  derive "$scratch"
  diff -u "$dir/walkthrough.md" "$scratch/walkthrough.md" || stale+=(walkthrough.md)
  # An SVG diff is long: its first lines say enough.
  diff -u "$dir/ladder.svg" "$scratch/ladder.svg" >"$scratch/ladder.diff" || stale+=(ladder.svg)
  head -40 "$scratch/ladder.diff"
  # The frames and their comments, not the bytes (editcap writes its version into the file).
  [ -f "$dir/$annotated" ] && python3 "$ROOT/tests/tools/lesson_steps.py" verify "$dir/$PCAP_NAME" \
    "$dir/$annotated" --steps "$dir/steps" --port "$PORT" || stale+=("$annotated")
  if [ ${#stale[@]} -gt 0 ]; then
    echo "capture: stale in $dir: ${stale[*]} (not what $PCAP_NAME, the logs, walkthrough.md.in and steps" \
         "give now): run scripts/capture.sh $lesson --render" >&2
    exit 1
  fi
  echo "capture: $dir: walkthrough.md, ladder.svg and $annotated match $PCAP_NAME"
}

case $mode in
  render)
    rederive
    echo "capture: rendered $dir/walkthrough.md, ladder.svg and $annotated from $PCAP_NAME"
    exit 0 ;;
  check-committed)
    check_derived
    exit 0 ;;
esac

: "${out:=$BUILD_DIR/captures/$lesson}"
if [ -n "$recorded" ]; then
  [ $mode = run ] || { echo "capture.sh: --recorded only checks a run; it cannot --update or --check" >&2; exit 2; }
  [ -f "$out/wire.pcap" ] || { echo "capture.sh: --recorded: no $out/wire.pcap (run the lab with --capture first)" >&2; exit 2; }
else
  rm -rf "$out"
  mkdir -p "$out"

  # 1. Run the scenario between the two guests; qemu records the wire.
  "$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 180 --capture "$out/wire.pcap" "${LAB_ARGS[@]}" \
    --server "export BUILD_DIR='$BUILD_DIR'; $SERVER_CMD" \
    --client "export BUILD_DIR='$BUILD_DIR'; $CLIENT_CMD"
fi
for log in $LOGS; do cp "$out/$log" "$out/$(basename "$log")"; done
logs=(); for log in $LOGS; do logs+=("$(basename "$log")"); done
cp "${LAB_IMAGE_DIR:-$ROOT/build/lab/image}/kernel-version" "$out/kernel-version"

# 2. Keep only the lesson's frames (the TCP exchange and RoCE), not ARP or IPv6 chatter.
tshark -r "$out/wire.pcap" -2 -R "tcp.port == $PORT or udp.port == 4791" -F pcap \
  -w "$out/$PCAP_NAME" 2>/dev/null
echo "capture: $out/$PCAP_NAME ($(stat -c %s "$out/$PCAP_NAME") bytes)"

# 3. It must decode as RoCE with the lesson's opcodes and the PSNs the programs logged.
# CHECK_LOGS names logs relative to the log directory (--client-log client.log ...).
check_logs() { local a; for a in $CHECK_LOGS; do case $a in --*) echo "$a" ;; *) echo "$1/$a" ;; esac; done; }
mapfile -t fresh_logs < <(check_logs "$out")
python3 "$tool" check "$out/$PCAP_NAME" --port "$PORT" --require "$REQUIRE" "${fresh_logs[@]}"

# 4. The log lines the lesson README quotes are what the programs print in this run.
if [ -n "$README" ]; then
  python3 "$ROOT/tests/tools/readme_logs.py" "$ROOT/$README" "${logs[@]/#/$out/}"
else
  echo "capture: no README's log lines to check (scenario.sh sets README empty)"
fi

case $mode in
  update)
    cp "$out/$PCAP_NAME" "${logs[@]/#/$out/}" "$out/kernel-version" "$dir/"
    rederive
    echo "capture: updated $dir (commit $PCAP_NAME, the logs, walkthrough.md, ladder.svg and $annotated)"
    ;;
  check)
    # The committed derived files are exactly what the committed capture and logs give.
    check_derived
    mapfile -t committed_logs < <(check_logs "$dir")
    python3 "$tool" check "$dir/$PCAP_NAME" --port "$PORT" --require "$REQUIRE" "${committed_logs[@]}" >/dev/null
    # A fresh run shows the same frames as the committed one.
    python3 "$tool" compare "$dir/$PCAP_NAME" "$out/$PCAP_NAME" --port "$PORT" "${COMPARE_ARGS[@]}"
    ;;
esac
