#!/usr/bin/env bash
# Record a lesson's packets in the lab VMs and check them against its walkthrough.
#
#   scripts/capture.sh LESSON [--out DIR]   run the lesson between the two lab guests,
#                                           keep the lesson's own frames, check them
#   scripts/capture.sh LESSON --update      ... and replace the committed capture, logs
#                                           and walkthrough in captures/LESSON/
#   scripts/capture.sh LESSON --check       ... and check that the committed walkthrough
#                                           still matches: it renders from the committed
#                                           capture, and a fresh run shows the same frames
#                                           (opcodes, order, sizes, PSN offsets)
#
# LESSON is a directory under captures/ (e.g. 01-verbs-send-recv, or interop) holding
# scenario.sh (what to run: PORT, REQUIRE, CHECK_LOGS, PCAP_NAME, SERVER_CMD, CLIENT_CMD,
# and optionally LOGS: the programs' logs as ROLE/NAME.log, default server/server.log
# client/client.log; LAB_ARGS: an array of extra `lab.sh run` options, default none, e.g.
# (--client-runtime userspace); README: the lesson README, relative to the repository,
# whose quoted log lines must be lines of this run's logs, default
# lessons/LESSON/README.md, empty for no such check) and walkthrough.md.in (the
# narration, with {{...}} placeholders filled from the capture and the logs by
# tests/tools/roce_capture.py render).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lesson=${1:?usage: capture.sh LESSON [--out DIR] [--update|--check]}
shift
mode=run out=""
while [ $# -gt 0 ]; do
  case $1 in
    --update) mode=update ;;
    --check) mode=check ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    *) echo "capture.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
dir="$ROOT/captures/$lesson"
[ -f "$dir/scenario.sh" ] || { echo "capture.sh: no $dir/scenario.sh" >&2; exit 2; }
LOGS="server/server.log client/client.log"
LAB_ARGS=()
README="lessons/$lesson/README.md"
source "$dir/scenario.sh"
tool="$ROOT/tests/tools/roce_capture.py"
: "${out:=$BUILD_DIR/captures/$lesson}"
rm -rf "$out"
mkdir -p "$out"

# 1. Run the scenario between the two guests; qemu records the wire.
"$ROOT/scripts/lab/lab.sh" run --out "$out" --timeout 180 --capture "$out/wire.pcap" "${LAB_ARGS[@]}" \
  --server "export BUILD_DIR='$BUILD_DIR'; $SERVER_CMD" \
  --client "export BUILD_DIR='$BUILD_DIR'; $CLIENT_CMD"
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
    python3 "$tool" render "$dir/walkthrough.md.in" "$dir/$PCAP_NAME" --port "$PORT" --log-dir "$dir" \
      >"$dir/walkthrough.md"
    echo "capture: updated $dir (commit $PCAP_NAME, the logs and walkthrough.md)"
    ;;
  check)
    # The committed walkthrough is exactly what the committed capture and logs render to.
    python3 "$tool" render "$dir/walkthrough.md.in" "$dir/$PCAP_NAME" --port "$PORT" --log-dir "$dir" \
      >"$out/walkthrough.md"
    diff -u "$dir/walkthrough.md" "$out/walkthrough.md" \
      || { echo "capture: $dir/walkthrough.md is stale: run scripts/capture.sh $lesson --update" >&2; exit 1; }
    mapfile -t committed_logs < <(check_logs "$dir")
    python3 "$tool" check "$dir/$PCAP_NAME" --port "$PORT" --require "$REQUIRE" "${committed_logs[@]}" >/dev/null
    # A fresh run shows the same frames as the committed one.
    python3 "$tool" compare "$dir/$PCAP_NAME" "$out/$PCAP_NAME" --port "$PORT"
    ;;
esac
