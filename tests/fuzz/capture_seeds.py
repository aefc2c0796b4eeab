#!/usr/bin/env python3
"""Write fuzz seeds taken from the committed lab recordings (captures/*/), so that every
fuzz target starts from bytes that really crossed the wire between the lessons' programs.

    tests/fuzz/capture_seeds.py TARGET OUT_DIR

TARGET is one of run_fuzz.sh's targets; each gets the bytes its harness decodes, in the
layout of that harness's input (see the comment at the top of each *_fuzz.cpp):

  exchange          lesson 01's TCP exchange, one stream per connection and direction
                    (HELLO, READY, DONE as recorded in lesson01.pcap), and lesson 05's
                    QP_INFO conversations rebuilt from its logs (below)
  private_data      the private data of every ConnectRequest, ConnectReply and
                    ConnectReject in the lesson 02, 03 and 04 captures, at the length the
                    CM delivered (zero-padded to the field size)
  lesson04_protocol every RDMA WRITE_WITH_IMMEDIATE of lesson04.pcap: the immediate value
                    (4 bytes, big-endian) and the payload, requests and responses alike
  lesson05_framing  lesson 05's QP_INFO / READY / DONE streams: its exchange is TLS, so the
                    pcap holds only ciphertext; the QP_INFO fields come from the
                    "sending QP_INFO" / "received QP_INFO" lines of the recorded logs (QPN,
                    PSN, MTU, GID, slot addr/rkey/length) and the message size from the
                    server's "slots of N bytes" line. Each stream is prefixed with the
                    harness's two control bytes 00 00: the connection stays open, one TLS
                    record per message, as TlsChannel::send writes them.

Needs tshark (scripts/install-deps.sh installs it) for the pcaps.
"""
import ipaddress
import pathlib
import re
import shutil
import struct
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
MTU_CODES = {256: 1, 512: 2, 1024: 3, 2048: 4, 4096: 5}


def scenario_port(lesson):
    text = (CAPTURES / lesson / "scenario.sh").read_text()
    return int(re.search(r"^PORT=(\d+)", text, re.M).group(1))


def tshark(pcap, display_filter, fields):
    if shutil.which("tshark") is None:
        sys.exit("capture_seeds: tshark is missing (it reads the pcaps): run scripts/install-deps.sh")
    cmd = ["tshark", "-r", str(pcap), "-n", "-Y", display_filter, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def unhex(text):
    return bytes.fromhex(text.replace(":", "")) if text else b""


def pcap_of(lesson):
    return next((CAPTURES / lesson).glob("*.pcap"))


def exchange_streams():
    """Lesson 01: the bytes of each TCP connection on the exchange port, per direction."""
    lesson = "01-verbs-send-recv"
    port = scenario_port(lesson)
    streams = {}
    rows = tshark(pcap_of(lesson), f"tcp.port == {port} && tcp.len > 0 && !tcp.analysis.retransmission",
                  ["tcp.srcport", "tcp.dstport", "tcp.payload"])
    for src, dst, payload in rows:
        to_server = dst == str(port)
        key = (src if to_server else dst, "c2s" if to_server else "s2c")
        streams[key] = streams.get(key, b"") + unhex(payload)
    return {f"lesson01-{conn}-{way}": data for (conn, way), data in streams.items()}


def qp_info(fields, msg_size):
    """A QP_INFO message (header and body) with the values of one logged line."""
    qpn, psn, mtu, gid, addr, rkey, length = fields
    body = struct.pack("!IIHBB", qpn, psn, 0, MTU_CODES[mtu], 0) + ipaddress.IPv6Address(gid).packed
    body += struct.pack("!IIQII", msg_size, 0, addr, rkey, length)
    return b"RDMT" + struct.pack("!BBHI", 1, 4, 0, len(body)) + body


def header(mtype):
    return b"RDMT" + struct.pack("!BBHI", 1, mtype, 0, 0)


READY, DONE = header(2), header(5)
QP_INFO_LINE = re.compile(r"(sending|received) QP_INFO: QPN 0x([0-9a-f]+) PSN 0x([0-9a-f]+) MTU (\d+) "
                          r"GID (\S+) slot addr=0x([0-9a-f]+) rkey=0x([0-9a-f]+) length=(\d+)")


def lesson05_streams():
    """Lesson 05's conversations, one stream per QP_INFO a side sent (see the docstring)."""
    logs = CAPTURES / "05-tls-psn"
    size = int(re.search(r"slots of (\d+) bytes", (logs / "server.log").read_text()).group(1))
    streams = {}
    for log in sorted(logs.glob("*.log")):
        for n, m in enumerate(QP_INFO_LINE.finditer(log.read_text())):
            if m.group(1) != "sending":
                continue
            fields = (int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)), m.group(5),
                      int(m.group(6), 16), int(m.group(7), 16), int(m.group(8)))
            message = qp_info(fields, size)
            # The server answers QP_INFO, READY, later DONE; a client sends QP_INFO, later DONE.
            if log.stem == "server":
                streams[f"lesson05-server-{n}"] = message + READY + DONE
            else:
                streams[f"lesson05-{log.stem}-{n}"] = message + DONE
    return streams


def private_data():
    out = {}
    for lesson in ("02-cm-write-read", "03-write-with-imm", "04-lambda"):
        rows = tshark(pcap_of(lesson), "infiniband.cm.req.ip_cm.private || infiniband.cm.rep.private || "
                                       "infiniband.cm.rej.private",
                      ["frame.number", "infiniband.cm.req.ip_cm.private", "infiniband.cm.rep.private",
                       "infiniband.cm.rej.private"])
        for frame, req, rep, rej in rows:
            for kind, data in (("req", req), ("rep", rep), ("rej", rej)):
                if data:
                    out[f"{lesson[:2]}-frame{frame}-{kind}"] = unhex(data)
    return out


def lambda_messages():
    lesson = "04-lambda"
    rows = tshark(pcap_of(lesson), "infiniband.bth.opcode == 11", ["frame.number", "infiniband.immdt", "data.data"])
    return {f"04-frame{frame}": unhex(imm) + unhex(payload) for frame, imm, payload in rows}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: capture_seeds.py TARGET OUT_DIR")
    target, out = sys.argv[1], pathlib.Path(sys.argv[2])
    if target == "exchange":
        seeds = {**exchange_streams(), **lesson05_streams()}
    elif target == "private_data":
        seeds = private_data()
    elif target == "lesson04_protocol":
        seeds = lambda_messages()
    elif target == "lesson05_framing":
        seeds = {name: b"\x00\x00" + data for name, data in lesson05_streams().items()}
    else:
        sys.exit(f"capture_seeds: no capture seeds for target '{target}'")
    if not seeds:
        sys.exit(f"capture_seeds: the captures gave no seeds for {target}")
    out.mkdir(parents=True, exist_ok=True)
    written = set()
    for name, data in seeds.items():
        if data in written:  # the same bytes recorded twice (a retried connect): one seed
            continue
        written.add(data)
        (out / f"capture-{name}.bin").write_bytes(data)
    print(f"capture_seeds: {len(written)} seeds for {target}")


if __name__ == "__main__":
    main()
