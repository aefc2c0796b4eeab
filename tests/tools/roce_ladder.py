#!/usr/bin/env python3
"""Draw a lesson's capture as a ladder diagram (SVG): who sent what to whom, frame by frame.

  roce_ladder.py PCAP --steps FILE -o OUT.svg [--port P]

Two lifelines, the client's on the left and the server's on the right, each labelled
with its role and the IP address(es) it used (a role, not an address: a client may come
from several). One arrow per frame of the capture, in capture order, at a constant
vertical pitch, labelled with the frame number and what the frame carries:

  RoCE packets         opcode, PSN, destination QP, payload size, and what the packet
                       adds: RETH (va, rkey, len), ImmDt (imm), AETH (MSN of an ACK, the
                       syndrome of a NAK or RNR NAK), AckReq
  CM messages          REQ, REP (QPN, Starting PSN), RTU, REJ (reason), DREQ, DREP, MRA
  exchange messages    HELLO (QPN, PSN, MTU), READY, DONE ... (lesson 01's TCP exchange);
                       QP_INFO (QPN, PSN, MTU) and TEST (the next measurement), lesson 06's;
                       BREAK (the case lesson 07 runs next)
  TLS records          by name and length (several per frame possible)
  bare TCP segments    SYN, ACK, FIN, RST (thin and grey)

Each kind has its own colour and line style, explained by a legend at the top. Frames a
sender sent again (a RoCE request with a PSN it already sent, a TCP retransmission, a CM
message resent) are marked "resent"; connects refused before the server listened
"refused". The left margin gives each frame's step of the lesson, from the capture's
steps file (lesson_steps.py), which also gives the key of steps under the legend.

The picture is a function of the capture and the steps file only: no time, no random
order, integer coordinates, so regenerating it gives the same bytes. It is
self-contained (no script, no external font or image; the generic monospace family).
"""
import argparse
import os
import sys
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lesson_steps  # noqa: E402  (beside this file)
import roce_capture as rc  # noqa: E402

PITCH = 22            # vertical distance between two arrows (every frame, constant)
FONT = 11             # label font size (px); monospace is about 0.6 em wide per character
CHAR = 6.6            # so: width of one label character
WIDTH = 1180          # the whole picture; the height grows with the frames
STEP_X = 28           # centre of the step column
FRAME_X = 86          # right edge of the frame-number column
CLIENT_X = 190        # the client's lifeline
SERVER_X = 1070       # the server's lifeline
LABEL_CHARS = int((SERVER_X - CLIENT_X - 24) / CHAR)  # a longer label is cut, ending in "..."

# kind -> (stroke colour, stroke width, dash pattern or "", label colour, legend text)
STYLES = {
    "roce": ("#1f5fbf", 1.6, "", "#123a75", "RoCE data packet (BTH opcode, PSN, QP)"),
    "nak": ("#c62828", 1.6, "", "#a31515", "RoCE NAK or RNR NAK (AETH syndrome)"),
    "cm": ("#b85c00", 1.6, "8 4", "#8a4500", "RDMA CM message (a MAD to QP 1)"),
    "tcp": ("#2e7d32", 1.6, "10 3 2 3", "#1b5e20", "exchange message over TCP (HELLO, READY, DONE ...)"),
    "tls": ("#7b1fa2", 1.6, "10 3 2 3", "#5c1380", "TLS record over TCP (encrypted after ServerHello)"),
    "tcp-bare": ("#a8a8a8", 0.8, "", "#8a8a8a", "TCP segment without a message (handshake, ACK, FIN, RST)"),
}
MARK_COLOUR = "#d50000"
CM_SHORT = {"ConnectRequest": "REQ", "ConnectReply": "REP", "ReadyToUse": "RTU", "ConnectReject": "REJ",
            "DisconnectRequest": "DREQ", "DisconnectReply": "DREP", "MRA": "MRA"}


def roce_label(ev, msn):
    if not ev["decoded"]:
        return "UDP 4791, not decoded as RoCE"
    parts = [ev["nak"] or ev["name"], f"PSN 0x{ev['psn']:06x}", f"QP 0x{ev['destqp']:06x}"]
    # Packets that may carry data say how much, even none (lesson 01's goodbye is a
    # zero-length SEND); ACKs and READ requests carry none by definition.
    if ev["payload"] or ev["op"] not in (rc.ACK_OP, 12):
        parts.append(f"{ev['payload']} B")
    if ev["op"] in rc.RETH_OPS and ev["dmalen"] is not None:
        parts.append(f"va=0x{ev['va']:x} rkey=0x{ev['rkey']:x} len={ev['dmalen']}")
    if ev["imm"] is not None:
        parts.append(f"imm=0x{ev['imm']:x}")
    if ev["nak"]:
        parts.append(f"syndrome 0x{rc.number(ev['syndrome']):02x}")
    elif ev["op"] == rc.ACK_OP and msn is not None:
        parts.append(f"MSN {msn}")
    if ev["ackreq"]:
        parts.append("AckReq")
    return " ".join(parts)


def cm_label(ev):
    parts = [f"{CM_SHORT.get(ev['name'], ev['name'])} {ev['name']}"]
    if ev["attr"] in (0x10, 0x13):
        parts.append(f"QPN 0x{ev['qpn']:06x} StartPSN 0x{ev['start_psn']:06x}")
    if ev["attr"] == 0x12:
        parts.append(f"reason {ev['reason']} ({rc.REJECT_REASONS.get(ev['reason'], 'see IBA REJ reasons')})")
    return " ".join(parts)


def tcp_label(ev):
    if ev["type"] in ("HELLO", "QP_INFO") and "qpn" in ev:
        return f"{ev['type']} QPN 0x{ev['qpn']:06x} PSN 0x{ev['psn']:06x} MTU {ev['mtu']} {ev['bytes']} B"
    if ev["type"] == "TEST" and "op" in ev:  # lesson 06: what the next measurement posts
        flags = "".join(f" {f}" for f in ev["flags"])
        return f"TEST {ev['test']}: {ev['op']} {ev['pattern']} {ev['size']} B x {ev['iters']}, window {ev['window']}{flags}"
    if ev["type"] == "BREAK" and "case" in ev:  # lesson 07: the case the client runs next
        return f"BREAK {ev['case']}"
    return f"{ev['type']} {ev['bytes']} B"


def tls_label(events):
    """A frame's TLS records: runs of the same name are counted ("3 x ApplicationData")."""
    groups = []
    for ev in events:
        if groups and groups[-1][0] == ev["name"] and ev["name"] not in rc.HELLO_NAMES:
            groups[-1][1].append(ev)
        else:
            groups.append((ev["name"], [ev]))
    parts = []
    for name, evs in groups:
        sizes = "/".join(str(e["length"]) for e in evs)
        text = f"{len(evs)} x {name} {sizes} B" if len(evs) > 1 else f"{name} {sizes} B"
        if evs[0]["negotiated"]:
            text += f" {evs[0]['negotiated']}"
        # Encrypted records look alike; the steps file says what each one is (the part of
        # its meaning before the first colon: "the client's QP_INFO", "READY" ...).
        # (Every ApplicationData record is encrypted: the label need not say so again.)
        meanings = {e.get("meaning", "").split(":")[0].removesuffix(" (encrypted)") for e in evs}
        if name == "ApplicationData" and len(meanings) == 1 and "" not in meanings:
            text += f" ({meanings.pop()})"
        parts.append(text)
    return " + ".join(parts)


def frame_label(f):
    evs = f["events"]
    if f["kind"] == "roce":
        return roce_label(evs[0], f["msn"])
    if f["kind"] == "cm":
        return cm_label(evs[0])
    if f["kind"] == "tls":
        return tls_label(evs)
    if f["kind"] == "tcp":
        return " + ".join(tcp_label(ev) for ev in evs)
    if f["kind"] == "tcp-bare":
        return f"TCP [{f['flags']}]" + (f" {f['tcp_len']} B" if f["tcp_len"] else "")
    return "frame outside the lesson's ports"


def style_of(f):
    if f["kind"] == "roce" and f["events"] and f["events"][0].get("nak"):
        return "nak"
    return f["kind"] if f["kind"] in STYLES else "tcp-bare"


def fit(text, chars):
    return text if len(text) <= chars else text[:chars - 3] + "..."


def line(x1, y1, x2, y2, colour, width, dash="", extra=""):
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" stroke-width="{width}"{d}{extra}/>')


def arrowhead(x, y, direction, colour, size):
    """A filled triangle whose tip is at (x, y), pointing right (+1) or left (-1)."""
    back = x - direction * size * 2
    return f'<path d="M{x} {y} L{back} {y - size} L{back} {y + size} Z" fill="{colour}"/>'


def text(x, y, body, colour="#222", size=FONT, anchor="start", weight=""):
    w = f' font-weight="{weight}"' if weight else ""
    return (f'<text x="{x}" y="{y}" fill="{colour}" font-size="{size}" text-anchor="{anchor}"{w}>'
            f'{body}</text>')


def addresses(frames, role):
    """The IP addresses a role used, in order of first appearance."""
    seen = []
    for f in frames:
        ip = f["src"] if (f["dir"] == "c>s") == (role == "client") else f["dst"]
        if ip and ip not in seen:
            seen.append(ip)
    return seen


def draw(cap, title):
    frames = cap.frames
    out = []
    y = 24
    out.append(text(12, y, escape(title), size=13, weight="bold"))
    # Legend: a short sample of each line style, with what it stands for.
    y += 12
    legend = [k for k in ("roce", "nak", "cm", "tcp", "tls", "tcp-bare") if any(style_of(f) == k for f in frames)]
    for i, kind in enumerate(legend):
        colour, width, dash, label_colour, what = STYLES[kind]
        col, row = i % 2, i // 2
        lx, ly = 16 + col * 540, y + 16 + row * 18
        out.append(line(lx, ly - 4, lx + 44, ly - 4, colour, width, dash))
        out.append(arrowhead(lx + 52, ly - 4, 1, colour, 4 if width > 1 else 3))
        out.append(text(lx + 62, ly, escape(what), colour=label_colour))
    y += 16 + ((len(legend) + 1) // 2) * 18
    marks = [m for m in ("resent", "refused") if any(f[m] for f in frames)]
    notes = {"resent": "[resent]: sent again (same PSN, TCP retransmission, CM resend)",
             "refused": "[refused]: a connect tried before the server listened"}
    note = "Left margin: the lesson's step (README, code, logs); then the frame number."
    out.append(text(16, y, escape(note)))
    for m in marks:
        y += 16
        out.append(text(16, y, escape(notes[m]), colour=MARK_COLOUR))
    # Key of steps, from the steps file's titles, in two columns.
    titles = sorted(cap.titles.items())
    if titles:
        y += 22
        out.append(text(16, y, "Steps:", weight="bold"))
        per_column = (len(titles) + 1) // 2
        for i, (n, t) in enumerate(titles):
            col, row = i // per_column, i % per_column
            out.append(text(70 + col * 525, y + row * 16, escape(fit(f"{n:>2}  {t}", 78))))
        y += 16 * ((len(titles) + 1) // 2) - 16
    # Lifeline heads.
    y += 22
    head_h = 40
    for x, role in ((CLIENT_X, "client"), (SERVER_X, "server")):
        ips = addresses(frames, role)
        out.append(f'<rect x="{x - 100}" y="{y}" width="200" height="{head_h}" rx="4" fill="#f3f3f3" '
                   f'stroke="#555" stroke-width="1"/>')
        out.append(text(x, y + 16, role, size=13, anchor="middle", weight="bold"))
        out.append(text(x, y + 32, escape(fit(", ".join(ips) or "no address", 30)), anchor="middle"))
    out.append(text(STEP_X, y + head_h - 4, "step", anchor="middle", colour="#555"))
    out.append(text(FRAME_X, y + head_h - 4, "frame", anchor="end", colour="#555"))
    top = y + head_h + 8
    bottom = top + PITCH * len(frames) + 6
    # Bands: one shade per run of frames of the same step, the step number where it begins.
    rows = []
    previous = None
    shade = 0
    for i, f in enumerate(frames):
        label = ",".join(dict.fromkeys(str(s) for s, _ in f["steps"])) or "?"
        if label != previous:
            shade ^= 1
            rows.append((i, label, shade))
            previous = label
    for n, (i, label, band) in enumerate(rows):
        end = rows[n + 1][0] if n + 1 < len(rows) else len(frames)
        y0 = top + PITCH * i
        if band:
            out.append(f'<rect x="0" y="{y0}" width="{WIDTH}" height="{PITCH * (end - i)}" fill="#f4f7fb"/>')
        out.append(line(0, y0, WIDTH, y0, "#d8dde6", 1))
        out.append(text(STEP_X, y0 + PITCH - 7, escape(label), anchor="middle", weight="bold", size=12))
    out.append(line(CLIENT_X, top - 8, CLIENT_X, bottom, "#555", 1.2))
    out.append(line(SERVER_X, top - 8, SERVER_X, bottom, "#555", 1.2))
    # The arrows.
    for i, f in enumerate(frames):
        kind = style_of(f)
        colour, width, dash, label_colour, _ = STYLES[kind]
        ya = top + PITCH * i + PITCH - 6
        start, end, direction = (CLIENT_X, SERVER_X, 1) if f["dir"] == "c>s" else (SERVER_X, CLIENT_X, -1)
        head = 5 if width > 1 else 3
        out.append(line(start, ya, end - direction * head * 2, ya, colour, width, dash))
        out.append(arrowhead(end, ya, direction, colour, head))
        out.append(text(FRAME_X, ya + 4, str(f["number"]), colour="#555", anchor="end"))
        tags = [t for t in ("resent", "refused") if f[t]]
        body = frame_label(f)
        tag_text = " ".join(f"[{t}]" for t in tags)
        body = fit(body, LABEL_CHARS - len(tag_text) - 1)
        size = FONT if kind != "tcp-bare" else FONT - 1
        # dx, not a leading space: SVG collapses white space at the start of a tspan.
        label = escape(body) + (f'<tspan dx="{int(CHAR)}" fill="{MARK_COLOUR}" font-weight="bold">'
                                f'{escape(tag_text)}</tspan>' if tags else "")
        out.append(text((CLIENT_X + SERVER_X) // 2, ya - 5, label, colour=label_colour, size=size,
                        anchor="middle"))
    height = bottom + 12
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="monospace">')
    return "\n".join([head, f"<title>{escape(title)}</title>",
                      f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>', *out,
                      "</svg>"]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pcap")
    ap.add_argument("--steps", required=True, help="the capture's steps file (captures/LESSON/steps)")
    ap.add_argument("--port", type=int, required=True, help="TCP port of the exchange (PORT in scenario.sh)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    try:
        cap = lesson_steps.Capture(a.pcap, a.port, a.steps)
        cap.require_complete()
    except lesson_steps.StepsError as e:
        print(f"ladder: {e}", file=sys.stderr)
        return 1
    name = os.path.basename(a.pcap)
    svg = draw(cap, f"{name}: {len(cap.frames)} frames, client left, server right, time downwards")
    with open(a.output, "w", encoding="utf-8") as f:
        f.write(svg)
    print(f"ladder: wrote {a.output} ({len(cap.frames)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
