#!/usr/bin/env python3
"""Read a lesson's packet capture the way its walkthrough narrates it.

Uses tshark (Wireshark's decoder) for every field, so what this prints is what a learner
sees in Wireshark. Subcommands:

  check PCAP --require OPS [--client-log LOG ...] [--port P]
      Every UDP/4791 packet must decode as RRoCE; each opcode in OPS (comma list of
      SEND_ONLY, SEND_FIRST, SEND_MIDDLE, SEND_LAST, ACK, ...) must appear; for each
      client log, the first SEND the client sent to the server's QP must carry the PSN
      the client logged, and the server's first SEND the PSN the server announced.
      Prints "capture: OK" on success, exits 1 otherwise.
  summary PCAP [--port P] [--exact]
      The lesson's frames, one per line: direction, exchange message or RoCE opcode,
      payload size, PSN (relative to the first PSN of that direction unless --exact).
  compare PCAP_A PCAP_B [--port P]
      Exit 0 when both captures show the same deterministic story (summary without
      --exact), else print a diff and exit 1.
  render TEMPLATE PCAP --log-dir DIR
      Fill a walkthrough template: {{frames}} is the frame table, {{frame:NAME}} one
      frame's line and {{frameno:NAME}} its number (NAME: hello_c, hello_s, ready, send1,
      ack1, echo1, echo_ack1, goodbye, goodbye_ack of the first run; first2, middle2, last2,
      ack2 of the second), {{retries}} the refused connects before the server listened,
      {{log:ROLE:REGEX}} the first line of DIR/ROLE.log matching REGEX, {{value:NAME}} a
      value (client_qpn, client_psn, server_qpn, server_psn, kernel, mtu).
"""
import argparse
import difflib
import re
import struct
import subprocess
import sys

OPCODES = {
    0: "SEND_FIRST", 1: "SEND_MIDDLE", 2: "SEND_LAST", 3: "SEND_LAST_WITH_IMMEDIATE",
    4: "SEND_ONLY", 5: "SEND_ONLY_WITH_IMMEDIATE", 6: "RDMA_WRITE_FIRST", 7: "RDMA_WRITE_MIDDLE",
    8: "RDMA_WRITE_LAST", 9: "RDMA_WRITE_LAST_WITH_IMMEDIATE", 10: "RDMA_WRITE_ONLY",
    11: "RDMA_WRITE_ONLY_WITH_IMMEDIATE", 12: "RDMA_READ_REQUEST", 13: "RDMA_READ_RESPONSE_FIRST",
    14: "RDMA_READ_RESPONSE_MIDDLE", 15: "RDMA_READ_RESPONSE_LAST", 16: "RDMA_READ_RESPONSE_ONLY",
    17: "ACK",
}
# Extended transport headers after the 12-byte BTH, by opcode: RETH 16, AETH 4, ImmDt 4.
EXTRA_HEADER_BYTES = {3: 4, 5: 4, 6: 16, 9: 4, 10: 16, 11: 20, 12: 16, 13: 4, 15: 4, 16: 4, 17: 4}
SEND_OPS = {0, 1, 2, 3, 4, 5}
FIELDS = ["frame.number", "frame.time_relative", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport",
          "tcp.payload", "udp.dstport", "udp.length", "infiniband.bth.opcode",
          "infiniband.bth.destqp", "infiniband.bth.psn", "infiniband.bth.a",
          "infiniband.aeth.syndrome", "_ws.col.Protocol", "frame.len"]
MSG_TYPES = {1: "HELLO", 2: "READY", 3: "ERROR"}
MTU_BYTES = {1: 256, 2: 512, 3: 1024, 4: 2048, 5: 4096}


def tshark_rows(pcap, port):
    """One dict per frame of the lesson: its TCP exchange port and RoCE (UDP 4791)."""
    cmd = ["tshark", "-r", pcap, "-n", "-Y", f"tcp.port == {port} or udp.port == 4791",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        vals = line.split("\t")
        rows.append(dict(zip(FIELDS, vals + [""] * (len(FIELDS) - len(vals)))))
    return rows


def parse_messages(data):
    """Split an exchange byte stream into (type, fields) messages; stops at a partial one."""
    msgs, off = [], 0
    while len(data) - off >= 12:
        magic, ver, mtype, _res, length = struct.unpack("!4sBBHI", data[off:off + 12])
        if magic != b"RDMT" or len(data) - off - 12 < length:
            break
        body = data[off + 12: off + 12 + length]
        info = {"type": MSG_TYPES.get(mtype, f"type{mtype}"), "bytes": 12 + length, "version": ver}
        if info["type"] == "HELLO" and length == 36:
            qpn, psn, lid, mtu, _r = struct.unpack("!IIHBB", body[:12])
            size, count = struct.unpack("!II", body[28:36])
            info.update(qpn=qpn, psn=psn, lid=lid, mtu=MTU_BYTES.get(mtu, mtu), gid=body[12:28],
                        size=size, count=count)
        elif info["type"] == "ERROR":
            info["text"] = body.decode("ascii", "replace")
        msgs.append(info)
        off += 12 + length
    return msgs, off


def story(pcap, port):
    """The lesson's frames as events: exchange messages and RoCE packets, in capture order."""
    rows = tshark_rows(pcap, port)
    server_ips = {r["ip.dst"] for r in rows if r["tcp.dstport"] == str(port)}
    streams = {}  # (client port, direction) -> pending bytes
    events = []
    for r in rows:
        n = int(r["frame.number"])
        if r["tcp.srcport"]:
            to_server = r["tcp.dstport"] == str(port)
            key = (r["tcp.srcport"] if to_server else r["tcp.dstport"], to_server)
            payload = bytes.fromhex(r["tcp.payload"].replace(":", "")) if r["tcp.payload"] else b""
            if not payload:
                continue
            buf = streams.get(key, b"") + payload
            msgs, used = parse_messages(buf)
            streams[key] = buf[used:]
            for m in msgs:
                events.append({"frame": n, "dir": "c>s" if to_server else "s>c", "kind": "tcp",
                               "conn": key[0], **m})
        elif r["udp.dstport"] == "4791":
            ev = {"frame": n, "dir": "c>s" if r["ip.dst"] in server_ips else "s>c", "kind": "roce",
                  "decoded": r["infiniband.bth.opcode"] != ""}
            if ev["decoded"]:
                op = int(r["infiniband.bth.opcode"], 0)
                ev.update(op=op, name=OPCODES.get(op, f"opcode{op}"), destqp=int(r["infiniband.bth.destqp"], 0),
                          psn=int(r["infiniband.bth.psn"], 0), ackreq=r["infiniband.bth.a"] in ("1", "True"),
                          payload=int(r["udp.length"]) - 8 - 12 - 4 - EXTRA_HEADER_BYTES.get(op, 0),
                          syndrome=r["infiniband.aeth.syndrome"])
            events.append(ev)
    return events


def runs(events):
    """Group events by TCP connection; RoCE packets join the run whose QPNs they address."""
    by_conn = {}
    for ev in events:
        if ev["kind"] == "tcp":
            by_conn.setdefault(ev["conn"], []).append(ev)
    result = []
    for conn, evs in by_conn.items():
        hellos = {e["dir"]: e for e in evs if e["type"] == "HELLO"}
        result.append({"conn": conn, "client": hellos.get("c>s"), "server": hellos.get("s>c")})
    return result


def describe(ev, base_psn, exact):
    if ev["kind"] == "tcp":
        if ev["type"] == "HELLO":
            detail = f"size={ev['size']} count={ev['count']} mtu={ev['mtu']}"
            if exact:
                detail = f"QPN=0x{ev['qpn']:06x} PSN=0x{ev['psn']:06x} " + detail
            return f"{ev['dir']}  TCP   {ev['type']:<26} {ev['bytes']:>5} B  {detail}"
        return f"{ev['dir']}  TCP   {ev['type']:<26} {ev['bytes']:>5} B"
    if not ev["decoded"]:
        return f"{ev['dir']}  UDP   NOT DECODED AS RoCE"
    if exact:
        psn = f"PSN=0x{ev['psn']:06x}"
    elif base_psn is None:
        psn = "PSN=?"  # a packet of no exchange we saw
    else:
        psn = f"PSN=announced+{(ev['psn'] - base_psn) & 0xFFFFFF}"
    qp = f" QP=0x{ev['destqp']:06x}" if exact else ""
    ack = " AckReq" if ev["ackreq"] else ""
    return f"{ev['dir']}  RoCE  {ev['name']:<26} {ev['payload']:>5} B  {psn}{qp}{ack}"


def run_index(ev, run_list):
    """Which run (TCP connection) a RoCE packet belongs to, by its destination QP."""
    for i, run in enumerate(run_list):
        c, s = run["client"], run["server"]
        receiver = s if ev["dir"] == "c>s" else c
        if c and s and ev["destqp"] == receiver["qpn"]:
            return i
    return None


def named_frames(events):
    """The frames a walkthrough talks about, by name (see render in the module doc)."""
    run_list = runs(events)
    names = {}
    conns = [r["conn"] for r in run_list]
    for i, conn in enumerate(conns[:2]):
        evs = [e for e in events if (e["kind"] == "tcp" and e["conn"] == conn) or
               (e["kind"] == "roce" and e["decoded"] and run_index(e, run_list) == i)]
        if i == 0:
            pick = {"hello_c": lambda e: e["kind"] == "tcp" and e["type"] == "HELLO" and e["dir"] == "c>s",
                    "hello_s": lambda e: e["kind"] == "tcp" and e["type"] == "HELLO" and e["dir"] == "s>c",
                    "ready": lambda e: e["kind"] == "tcp" and e["type"] == "READY",
                    "send1": lambda e: e["kind"] == "roce" and e["dir"] == "c>s" and e["op"] in SEND_OPS,
                    "ack1": lambda e: e["kind"] == "roce" and e["dir"] == "s>c" and e["op"] == 17,
                    "echo1": lambda e: e["kind"] == "roce" and e["dir"] == "s>c" and e["op"] in SEND_OPS,
                    "echo_ack1": lambda e: e["kind"] == "roce" and e["dir"] == "c>s" and e["op"] == 17}
            for name, test in pick.items():
                names[name] = next((e for e in evs if test(e)), None)
            sends = [e for e in evs if e["kind"] == "roce" and e["dir"] == "c>s" and e["op"] in SEND_OPS]
            names["goodbye"] = sends[-1] if sends else None
            acks = [e for e in evs if e["kind"] == "roce" and e["dir"] == "s>c" and e["op"] == 17]
            names["goodbye_ack"] = acks[-1] if acks else None
        else:
            for name, op in (("first2", 0), ("middle2", 1), ("last2", 2)):
                names[name] = next((e for e in evs if e["kind"] == "roce" and e["dir"] == "c>s" and e["op"] == op), None)
            names["ack2"] = next((e for e in evs if e["kind"] == "roce" and e["dir"] == "s>c" and e["op"] == 17), None)
    return names


def announced_psn(ev, run_list):
    """The PSN the requester of this packet's stream announced in its HELLO.

    Requests from the client (and the server's ACKs of them) count from the client's PSN;
    requests from the server (and the client's ACKs) from the server's PSN."""
    for run in run_list:
        c, s = run["client"], run["server"]
        # The destination QP belongs to the receiving side. Both hosts number their QPs
        # independently (both often start at 0x11), so the direction picks the side.
        receiver = s if ev["dir"] == "c>s" else c
        if not c or not s or ev["destqp"] != receiver["qpn"]:
            continue
        client_stream = (ev["op"] != 17) == (ev["dir"] == "c>s")
        return c["psn"] if client_stream else s["psn"]
    return None


def summary_lines(pcap, port, exact):
    events = story(pcap, port)
    run_list = runs(events)
    lines = []
    for ev in events:
        base = announced_psn(ev, run_list) if ev["kind"] == "roce" and ev["decoded"] else 0
        lines.append((ev, describe(ev, base, exact)))
    return lines


def cmd_summary(a):
    for ev, text in summary_lines(a.pcap, a.port, a.exact):
        print(f"{ev['frame']:>4}  {text}" if a.exact else text)
    return 0


def cmd_compare(a):
    left = [t for _, t in summary_lines(a.pcap_a, a.port, False)]
    right = [t for _, t in summary_lines(a.pcap_b, a.port, False)]
    if left == right:
        print(f"capture: {a.pcap_a} and {a.pcap_b} tell the same story ({len(left)} frames)")
        return 0
    print(f"capture: {a.pcap_a} and {a.pcap_b} differ:")
    sys.stdout.writelines(l + "\n" for l in difflib.unified_diff(left, right, a.pcap_a, a.pcap_b, lineterm=""))
    return 1


def log_values(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    sent = re.search(r"sending HELLO: QPN 0x([0-9a-f]+) PSN 0x([0-9a-f]+)", text)
    got = re.search(r"received HELLO: QPN 0x([0-9a-f]+) PSN 0x([0-9a-f]+)", text)
    if not sent or not got:
        return None
    return {"own_qpn": int(sent[1], 16), "own_psn": int(sent[2], 16),
            "peer_qpn": int(got[1], 16), "peer_psn": int(got[2], 16)}


# Wireshark 4.0 hands every SEND payload to its RPC-over-RDMA heuristic, which throws on
# an empty one and labels a valid zero-length SEND "[Malformed Packet: RPCoRDMA]". With
# that dissector off, any malformed frame or expert error is a real problem.
QUIET_HEURISTIC = ["--disable-protocol", "rpcordma"]


def malformed_frames(pcap):
    cmd = ["tshark", "-r", pcap, "-n", *QUIET_HEURISTIC, "-Y", "_ws.malformed || _ws.expert.severity >= error",
           "-T", "fields", "-e", "frame.number"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()


def cmd_check(a):
    events = story(a.pcap, a.port)
    roce = [e for e in events if e["kind"] == "roce"]
    problems = []
    bad = malformed_frames(a.pcap)
    if bad:
        problems.append(f"frames {bad[:10]} are malformed or carry expert errors in tshark")
    if not roce:
        problems.append("no RoCE packets (UDP port 4791) in the capture")
    undecoded = [e["frame"] for e in roce if not e["decoded"]]
    if undecoded:
        problems.append(f"frames {undecoded[:10]} on UDP 4791 are not decoded as RRoCE")
    seen = {e["name"] for e in roce if e["decoded"]}
    for op in [o for o in a.require.split(",") if o]:
        if op not in seen:
            problems.append(f"no {op} packet (seen: {', '.join(sorted(seen)) or 'none'})")
        else:
            print(f"capture: {op} present")
    for log in a.client_log:
        v = log_values(log)
        if v is None:
            problems.append(f"{log}: no 'sending HELLO' / 'received HELLO' lines")
            continue
        for who, direction, dest, psn in (("client", "c>s", v["peer_qpn"], v["own_psn"]),
                                          ("server", "s>c", v["own_qpn"], v["peer_psn"])):
            first = next((e for e in roce if e["decoded"] and e["op"] in SEND_OPS
                          and e["dir"] == direction and e["destqp"] == dest), None)
            if first is None:
                problems.append(f"{log}: no SEND from the {who} to QP 0x{dest:06x} in the capture")
            elif first["psn"] != psn:
                problems.append(f"{log}: the {who}'s first SEND (frame {first['frame']}) has PSN "
                                f"0x{first['psn']:06x}, but 0x{psn:06x} was logged")
            else:
                print(f"capture: the {who}'s first SEND to QP 0x{dest:06x} (frame {first['frame']}) "
                      f"has PSN 0x{psn:06x}, the PSN it announced")
    for p in problems:
        print(f"capture: FAIL {p}")
    if problems:
        return 1
    print(f"capture: OK ({len(roce)} RoCE packets, {len(events) - len(roce)} exchange messages)")
    return 0


def cmd_render(a):
    lines = summary_lines(a.pcap, a.port, True)
    by_frame = {ev["frame"]: text for ev, text in lines}
    table = ["| frame | dir | what | size | details |", "|---:|---|---|---:|---|"]
    for ev, text in lines:
        parts = text.split(None, 3)
        d, proto = parts[0], parts[1]
        rest = text.split(proto, 1)[1].strip()
        name, _, tail = rest.partition(" ")
        m = re.match(r"\s*(\d+) B\s*(.*)", tail)
        size, details = (m[1], m[2]) if m else ("", tail)
        table.append(f"| {ev['frame']} | {d} | {proto} {name} | {size} | {details} |")
    events = story(a.pcap, a.port)
    names = named_frames(events)
    syn = subprocess.run(["tshark", "-r", a.pcap, "-n", "-Y", f"tcp.flags.reset == 1 && tcp.srcport == {a.port}",
                          "-T", "fields", "-e", "frame.number"], check=True, capture_output=True, text=True)
    first_hello = names["hello_c"]["frame"] if names.get("hello_c") else 0
    retries = len([f for f in syn.stdout.split() if int(f) < first_hello])
    first_run = runs(events)[0]
    values = {"client_qpn": f"0x{first_run['client']['qpn']:06x}", "client_psn": f"0x{first_run['client']['psn']:06x}",
              "server_qpn": f"0x{first_run['server']['qpn']:06x}", "server_psn": f"0x{first_run['server']['psn']:06x}",
              "mtu": str(min(first_run["client"]["mtu"], first_run["server"]["mtu"]))}
    try:
        values["kernel"] = open(f"{a.log_dir}/kernel-version").read().strip()
    except OSError:
        values["kernel"] = "unknown"
    logs = {}

    def log_line(role, pattern):
        if role not in logs:
            logs[role] = open(f"{a.log_dir}/{role}.log", encoding="utf-8", errors="replace").read().splitlines()
        for line in logs[role]:
            if re.search(pattern, line):
                return line
        raise SystemExit(f"render: no line matching /{pattern}/ in {a.log_dir}/{role}.log")

    def fill(m):
        kind, _, arg = m[1].partition(":")
        if kind == "frames":
            return "\n".join(table)
        if kind in ("frame", "frameno"):
            ev = names.get(arg)
            if ev is None:
                raise SystemExit(f"render: no frame named {arg} in {a.pcap}")
            return str(ev["frame"]) if kind == "frameno" else by_frame[ev["frame"]]
        if kind == "retries":
            return str(retries)
        if kind == "log":
            role, _, pattern = arg.partition(":")
            return log_line(role, pattern)
        if kind == "value":
            return values[arg]
        raise SystemExit(f"render: unknown placeholder {{{{{m[1]}}}}}")

    sys.stdout.write(re.sub(r"\{\{(.+?)\}\}", fill, open(a.template, encoding="utf-8").read()))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check"); c.add_argument("pcap"); c.add_argument("--require", default="")
    c.add_argument("--client-log", action="append", default=[])
    s = sub.add_parser("summary"); s.add_argument("pcap"); s.add_argument("--exact", action="store_true")
    k = sub.add_parser("compare"); k.add_argument("pcap_a"); k.add_argument("pcap_b")
    r = sub.add_parser("render"); r.add_argument("template"); r.add_argument("pcap"); r.add_argument("--log-dir", required=True)
    for p in (c, s, k, r):
        p.add_argument("--port", type=int, default=18515, help="TCP port of the exchange")
    a = ap.parse_args()
    return {"check": cmd_check, "summary": cmd_summary, "compare": cmd_compare, "render": cmd_render}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
