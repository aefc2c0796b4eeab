#!/usr/bin/env python3
"""Byte-by-byte tables of RoCE v2 frames from the committed captures, for the docs.

docs/concepts/roce-packet.md is generated from docs/concepts/roce-packet.md.in: every
line of the form

    @ANATOMY captures/01-verbs-send-recv/lesson01.pcap 10@

becomes that frame's hex dump and a table of its bytes -- offset, bytes, header, field
(as tshark names it), value, and what the ICRC does with them -- read from the pcap by
tshark (-T pdml: every field's position and size). The script also recomputes each
frame's ICRC the way the kernel's rxe_icrc.c does and stops if it differs from the
frame's, so the page can only show ICRCs that check out.

  packet_anatomy.py --update   rewrite docs/concepts/roce-packet.md
  packet_anatomy.py --check    exit 1 if the committed page differs from what the
                               committed captures give today (the ctest
                               docs_packet_anatomy_current)
Run from the repository root. Needs tshark.
"""
import argparse
import binascii
import difflib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TEMPLATE = Path("docs/concepts/roce-packet.md.in")
PAGE = Path("docs/concepts/roce-packet.md")
MARKER = re.compile(r"^@ANATOMY (\S+) (\d+)@$")

HEADERS = {"eth": "Ethernet", "ip": "IPv4", "udp": "UDP", "infiniband": "IB transport",
           "data": "payload"}
# Fields tshark reports twice or as containers of the ones listed: not rows of their own.
SKIP = {"eth.addr", "eth.dst.lg", "eth.dst.ig", "eth.src.lg", "eth.src.ig", "ip.addr",
        "ip.src_host", "ip.dst_host", "ip.host", "ip.flags", "ip.checksum.status",
        "udp.port", "udp.checksum.status", "udp.payload", "udp.stream", "infiniband.bth",
        "infiniband.reth", "infiniband.aeth", "infiniband.aeth.syndrome", "data.len",
        "eth.stream", "ip.stream"}
# Bytes the ICRC covers with every bit set to 1 instead of their value, because a router
# may change them on the way (rxe_icrc.c: rxe_icrc_hdr for IPv4).
MASKED = {"ip.dsfield", "ip.dsfield.dscp", "ip.dsfield.ecn", "ip.ttl", "ip.checksum",
          "udp.checksum", "infiniband.reserved"}


def tshark_frame(pcap, number):
    """(raw bytes, [(name, showname, pos, size)]) of one frame."""
    pdml = subprocess.run(
        ["tshark", "-r", pcap, "-Y", f"frame.number=={number}", "-T", "pdml"],
        check=True, capture_output=True, text=True).stdout
    root = ET.fromstring(pdml)
    packet = root.find("packet")
    if packet is None:
        raise SystemExit(f"packet_anatomy: {pcap} has no frame {number}")
    fields = []
    for f in packet.iter("field"):
        name, size = f.get("name", ""), int(f.get("size", "0"))
        if not name or size == 0 or name in SKIP or name.split(".")[0] not in HEADERS:
            continue
        if "resolved" in name or "oui" in name or name in ("eth.lg", "eth.ig"):
            continue  # tshark's readings of a MAC address, beside the address itself
        if f.get("showname", "").endswith("Extended Transport Header"):
            continue  # a header as a whole (IMMDT): its field is listed on its own
        fields.append((name, f.get("showname", ""), int(f.get("pos")), size))
    raw = subprocess.run(
        ["tshark", "-r", pcap, "-Y", f"frame.number=={number}", "-x"],
        check=True, capture_output=True, text=True).stdout
    data = bytearray()
    for line in raw.splitlines():
        m = re.match(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} )+)", line)
        if m:
            data += bytes.fromhex(m.group(1))
    return bytes(data), fields


def icrc(frame, pad):
    """The ICRC as rxe computes it: CRC-32 over 8 bytes of 0xff (the LRH an InfiniBand
    packet would have), the IPv4 header with TOS, TTL and checksum as 1s, the UDP header
    with its checksum as 1s, the BTH with its reserved byte (resv8a) as 1s, then the rest
    of the headers, the payload and the pad: everything after the Ethernet header except
    the ICRC itself."""
    ip = bytearray(frame[14:34])
    ip[1] = 0xFF                 # TOS (DSCP + ECN)
    ip[8] = 0xFF                 # TTL
    ip[10:12] = b"\xff\xff"      # header checksum
    udp = bytearray(frame[34:42])
    udp[6:8] = b"\xff\xff"       # UDP checksum
    bth = bytearray(frame[42:54])
    bth[4] = 0xFF                # resv8a, the byte before the destination QP
    covered = b"\xff" * 8 + ip + udp + bth + frame[54:-4]
    return binascii.crc32(covered) & 0xFFFFFFFF


def value_of(showname):
    text = showname.split(": ", 1)[1] if ": " in showname else showname
    return text.replace("|", "/").replace("&#x27;", "'")


def field_name(name, showname):
    label = showname.split(": ", 1)[0] if ": " in showname else name
    label = re.sub(r"^[.01 ]+= ", "", label)  # the bit picture is in the value column
    return f"{label} (`{name}`)"


def bits_of(showname):
    m = re.match(r"^([.01 ]+) = ", showname)
    return f"`{m.group(1).strip()}` " if m else ""


def icrc_role(name, pos, frame_len):
    if name.startswith("eth."):
        return "not covered"
    if pos >= frame_len - 4:
        return "the ICRC itself"
    if name in MASKED:
        return "**as 1s**"
    return "covered"


def hexdump(frame):
    lines = []
    for off in range(0, len(frame), 16):
        chunk = frame[off:off + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:04x}  {' '.join(f'{b:02x}' for b in chunk):<47}   {text}")
    return lines


def short_hex(data, limit=8):
    shown = " ".join(f"{b:02x}" for b in data[:limit])
    return shown + (f" … ({len(data)} bytes)" if len(data) > limit else "")


def anatomy(pcap, number):
    frame, fields = tshark_frame(pcap, number)
    pad = 0
    for name, show, _, _ in fields:
        if name == "infiniband.bth.padcnt":
            pad = int(show.rsplit(": ", 1)[1])
    rows, by_span = [], {}
    for name, show, pos, size in fields:
        if name == "data.data":  # the payload, then the pad the BTH's PadCnt announces
            body = size - pad
            rows.append(((pos, body), ["payload"], [f"the message's bytes: "
                         f"`{frame[pos:pos + min(body, 24)].decode('ascii', 'replace')}`"
                         + ("…" if body > 24 else "")], "covered", "data.data"))
            if pad:
                rows.append(((pos + body, pad), ["pad"], [f"{pad} zero bytes to a multiple "
                             "of 4 (BTH PadCnt)"], "covered", "pad"))
            continue
        key = (pos, size)
        if key in by_span:
            row = by_span[key]
            row[1].append(field_name(name, show))
            row[2].append(bits_of(show) + value_of(show))
            if name in MASKED:
                row[3] = "**as 1s**"
            continue
        row = [key, [field_name(name, show)], [bits_of(show) + value_of(show)],
               icrc_role(name, pos, len(frame)), name]
        by_span[key] = row
        rows.append(row)
    rows.sort(key=lambda r: (r[0][0], -r[0][1]))
    computed = icrc(frame, pad)
    carried = int.from_bytes(frame[-4:], "little")
    if computed != carried:
        raise SystemExit(f"packet_anatomy: {pcap} frame {number}: ICRC computed 0x{computed:08x}"
                         f" but the frame carries 0x{carried:08x}: the masking rules here are "
                         "wrong, or the frame is damaged")
    out = [f"`tshark -r {pcap} -Y frame.number=={number} -x` ({len(frame)} bytes):", "",
           "```", *hexdump(frame), "```", "",
           "| bytes | on the wire | header | field (tshark name) | value | ICRC |",
           "|---:|---|---|---|---|---|"]
    for (pos, size), names, values, role, name in rows:
        span = f"{pos}" if size == 1 else f"{pos}-{pos + size - 1}"
        header = HEADERS.get(name.split(".")[0], "payload")
        if name.startswith("infiniband."):
            header = name.split(".")[1].upper() if name.split(".")[1] in (
                "bth", "reth", "aeth", "immdt") else "BTH"
            if name == "infiniband.invariant.crc":
                header = "ICRC"
            if name == "infiniband.reserved":
                header = "BTH"
        if name == "pad":
            header = "pad"
        out.append(f"| {span} | `{short_hex(frame[pos:pos + size])}` | {header} | "
                   f"{'<br>'.join(names)} | {'<br>'.join(values)} | {role} |")
    out += ["", f"The ICRC recomputed from these bytes (CRC-32 over 8 bytes of `ff`, then "
            f"bytes 14-{len(frame) - 5} with the **as 1s** fields set to `ff`) is "
            f"0x{computed:08x}; the frame carries it least significant byte first, "
            f"`{short_hex(frame[-4:])}`, which tshark shows as 0x{frame[-4:].hex()}. They "
            "match."]
    return out


def render():
    lines = []
    for line in TEMPLATE.read_text().splitlines():
        m = MARKER.match(line.strip())
        lines += anatomy(m.group(1), int(m.group(2))) if m else [line]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--update", action="store_true", help=f"rewrite {PAGE}")
    mode.add_argument("--check", action="store_true", help=f"fail if {PAGE} is stale")
    args = ap.parse_args()
    page = render()
    if args.update:
        PAGE.write_text(page)
        print(f"packet_anatomy: wrote {PAGE}")
        return 0
    committed = PAGE.read_text() if PAGE.exists() else ""
    if committed == page:
        print(f"packet_anatomy: {PAGE} matches {TEMPLATE} and the captures")
        return 0
    diff = difflib.unified_diff(committed.splitlines(), page.splitlines(),
                                str(PAGE), "generated", lineterm="", n=1)
    print("\n".join(list(diff)[:40]))
    print(f"packet_anatomy: {PAGE} is stale: run tests/tools/packet_anatomy.py --update",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
