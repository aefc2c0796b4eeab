#!/usr/bin/env bash
# A TCP segment sent twice tells the same story: tests/tools/roce_capture.py reads the
# exchange messages (lessons 01, 04, 06, 07; lesson 05's TLS records come from tshark)
# from each connection's byte stream by sequence number, so a retransmission, or a tail
# loss probe (TCP resends its last segment when no ACK came within about two round trips;
# seen ~9 ms after the original on a lab guest), adds no message. For each chosen data
# segment of a committed capture, a copy of it goes in 5 ms later (editcap, mergecap);
# tshark must flag more segments as sent again (retransmission, or out of order when a
# later segment came in between) than in the committed capture, and `roce_capture.py
# compare` must find the doctored capture and the committed one the same story. And a
# segment that arrives after the one behind it (the first two the client sent in lesson
# 07's capture, swapped) is held until the gap fills: the same story again.
#   usage: tests/capture_tcp_resend.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tool="$ROOT/tests/tools/roce_capture.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for cmd in tshark editcap mergecap; do
  command -v $cmd >/dev/null || { echo "capture_tcp_resend: $cmd missing: run scripts/install-deps.sh" >&2; exit 1; }
done

checked=0
# LESSON PORT HOW-MANY: the first data segments of lessons 01 (both directions, and the
# second connection's first one), 05 (TLS records) and 07 (its first case's connection).
for spec in "01-verbs-send-recv 18515 6" "05-tls-psn 4433 4" "07-when-it-breaks 18517 4"; do
  read -r lesson port most <<<"$spec"
  pcap=$(ls "$ROOT/captures/$lesson/"*.pcap)
  mapfile -t frames < <(tshark -r "$pcap" -n -Y "tcp.port == $port && tcp.len > 0" -T fields -e frame.number |
                        head -n "$most")
  [ ${#frames[@]} -gt 0 ] || { echo "capture_tcp_resend: no TCP data segment in $pcap" >&2; exit 1; }
  # Segments the committed capture itself has sent twice: the doctored one must have more.
  before=$(tshark -r "$pcap" -n -Y "tcp.port == $port && (tcp.analysis.retransmission || tcp.analysis.out_of_order)" \
           -T fields -e frame.number | wc -l)
  for f in "${frames[@]}"; do
    editcap -r "$pcap" "$work/one.pcap" "$f" 2>/dev/null
    editcap -t 0.005 "$work/one.pcap" "$work/later.pcap" 2>/dev/null
    mergecap -F pcap -w "$work/doctored.pcap" "$pcap" "$work/later.pcap"
    flagged=$(tshark -r "$work/doctored.pcap" -n -Y "tcp.port == $port && (tcp.analysis.retransmission || tcp.analysis.out_of_order)" \
              -T fields -e frame.number | wc -l)
    if [ "$flagged" -le "$before" ]; then
      echo "capture_tcp_resend: $lesson frame $f: tshark sees no segment sent again in the doctored capture" >&2
      exit 1
    fi
    if ! python3 "$tool" compare "$pcap" "$work/doctored.pcap" --port "$port" >"$work/compare.out"; then
      echo "capture_tcp_resend: $lesson: frame $f sent again 5 ms later changed the story:" >&2
      cat "$work/compare.out" >&2
      exit 1
    fi
    checked=$((checked + 1))
  done
  echo "capture_tcp_resend: $lesson: ${#frames[@]} TCP segments, each sent twice: the same story"
done
# Swapped: the first client data segment of lesson 07 moved to just after the second, both
# of the first connection (BREAK and QP_INFO).
pcap=$(ls "$ROOT/captures/07-when-it-breaks/"*.pcap)
mapfile -t first < <(tshark -r "$pcap" -n -Y "tcp.stream == 0 && tcp.dstport == 18517 && tcp.len > 0" \
                     -T fields -e frame.number -e frame.time_relative | head -n 2)
read -r a ta <<<"${first[0]}"
read -r b tb <<<"${first[1]}"
[ $((b - a)) -le 3 ] || { echo "capture_tcp_resend: frames $a and $b are not near: nothing to swap" >&2; exit 1; }
editcap -r "$pcap" "$work/one.pcap" "$a" 2>/dev/null
editcap -t "$(python3 -c "print(f'{$tb - $ta + 0.0001:.6f}')")" "$work/one.pcap" "$work/later.pcap" 2>/dev/null
editcap "$pcap" "$work/without.pcap" "$a" 2>/dev/null
mergecap -F pcap -w "$work/doctored.pcap" "$work/without.pcap" "$work/later.pcap"
order=$(tshark -r "$work/doctored.pcap" -n -Y "tcp.stream == 0 && tcp.dstport == 18517 && tcp.len > 0" -T fields -e tcp.seq | head -n 2 | xargs)
[ "$order" = "$(tshark -r "$pcap" -n -Y "tcp.stream == 0 && tcp.dstport == 18517 && tcp.len > 0" -T fields -e tcp.seq | sed -n 2p) 1" ] ||
  { echo "capture_tcp_resend: the doctored capture's first two client segments are not swapped (seq $order)" >&2; exit 1; }
if ! python3 "$tool" compare "$pcap" "$work/doctored.pcap" --port 18517 >"$work/compare.out"; then
  echo "capture_tcp_resend: 07-when-it-breaks: frames $a and $b swapped changed the story:" >&2
  cat "$work/compare.out" >&2
  exit 1
fi
checked=$((checked + 1))
echo "capture_tcp_resend: 07-when-it-breaks: frames $a and $b swapped: the same story"
echo "capture_tcp_resend: $checked doctored captures tell their committed story"
