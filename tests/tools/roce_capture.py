#!/usr/bin/env python3
"""Read a lesson's packet capture the way its walkthrough narrates it.

Uses tshark (Wireshark's decoder) for every field, so what this prints is what a learner
sees in Wireshark. A lesson connects either over a TCP side channel (lesson 01: QP
details in HELLO messages on --port; lesson 06: in QP_INFO messages, then a TEST before
each measurement; lesson 07: a BREAK naming its case, shown as "BREAK name", then
QP_INFO messages), over TLS 1.3 on --port (lesson 05: QP_INFO messages, encrypted), or
with RDMA CM (librdmacm: ConnectRequest, ConnectReply, ReadyToUse MADs on UDP 4791, to
QP 1). All become "runs": a client QP and a server QP with the first PSN each side's
requests carry. A TCP connection on --port is TLS when
the client's first bytes are a TLS handshake record; its events are then TLS records
(one per record, several per frame possible), named by what tshark sees without the
keys: ClientHello, ServerHello, HelloRetryRequest, ChangeCipherSpec, Alert (plaintext
only), ApplicationData (in TLS 1.3 every record after the ServerHello: the encrypted
handshake, session tickets, the exchange messages and the close_notify alerts alike).
A TLS run's QPNs and PSNs come from the RoCE packets after its handshake (see tls_runs).

Subcommands:

  check PCAP --require NAMES [--client-log LOG ...] [--server-log LOG ...] [--port P]
      Every UDP/4791 packet must decode as RRoCE and tshark must report no malformed
      frame or expert error. Each name in NAMES (comma list of RoCE opcodes such as
      SEND_ONLY, RDMA_WRITE_ONLY, RDMA_READ_REQUEST, ACK; CM messages such as
      ConnectRequest, ConnectReply, ReadyToUse, ConnectReject, DisconnectRequest,
      DisconnectReply; NAKs such as RNR_NAK, NAK_REMOTE_ACCESS_ERROR; TLS records such
      as ClientHello, ServerHello, ApplicationData) must appear (a connect refused before
      the server listened does not count).
      For each client log (lesson 01's "sending HELLO: QPN 0x.. PSN 0x.." and "received
      HELLO: ..." lines, or lesson 05's "sending QP_INFO: ..." and "received QP_INFO:
      ..."), the first request (SEND, RDMA WRITE, RDMA READ, atomic) the client sent to
      the server's QP must carry the PSN the client logged, and the server's first
      request, if it sends any, the PSN the server announced: from the logged values
      alone, so it works under TLS too. For each CM connection, the client's first
      request (SEND, RDMA WRITE, RDMA READ) must carry the ConnectReply's Starting PSN,
      and the server's first request, if it sends any, the ConnectRequest's (see
      cm_runs() for why).
      For each server log, every line matching `addr=0x.. rkey=0x.. length=N` advertises
      a buffer; every RETH (RDMA WRITE, RDMA READ) must name one of those rkeys and stay
      inside its buffer, unless the responder refused it with NAK_REMOTE_ACCESS_ERROR.
      Prints one "capture: ..." line per verified fact and "capture: OK" on success,
      exits 1 otherwise.
  summary PCAP [--port P] [--exact] [--by-direction]
      The lesson's frames, one per line: direction, exchange message, TLS record, CM
      message or RoCE opcode, payload size (a TLS record's length field: the bytes after
      its 5-byte header), PSN (relative to the first PSN of that stream unless
      --exact). Without --exact only what is the same in every run of a scenario:
      RETH length (len=), immediate data (imm=) and NAK names, but not addresses,
      rkeys, QPNs or resend counts (an ACK with PSN 0xffffff that answers no request
      with that PSN shows it as it is: kernel rxe's answer to a duplicate on a new QP,
      lesson 07's psn-behind, the same in every run); CM lines are direction and name only, and neither
      an MRA nor a ConnectRequest refused before the server listened is shown (both
      depend on timing). --exact adds QPNs, raw PSNs, va= rkey=, CM Starting PSNs, the
      service port, reject reasons and "(resent N)" for retransmitted CM messages.
      TLS lines always name the ServerHello's version and cipher suite and a plaintext
      Alert's level and description; --exact adds the record-layer version of the
      hellos (record=0x0301: a ClientHello's record says TLS 1.0 by convention).
      Without --exact, ApplicationData records have no size and a TLS connection's
      records after the client's first ApplicationData are listed client's first, then
      server's, within each stretch not interrupted by other frames (tls_story_order
      says why: certificates, ECDSA signatures and session tickets).
      --by-direction (without --exact): each stretch of consecutive RoCE packets between
      two exchange messages lists the client's packets first, then the server's, each
      side in capture order (lesson 06: with many requests in flight, where the ACKs fall
      between the requests is timing; see roce_direction_order).
      --without-resends (without --exact): a request resent although the first one had
      arrived (no NAK asked for it, and the responder answered twice), and repeated ACKs
      and READ responses, are left out (a resend that only a slow ACK caused; see
      without_resends).
  compare PCAP_A PCAP_B [--port P] [--by-direction] [--without-resends]
      Exit 0 when both captures show the same deterministic story (summary without
      --exact, and with --by-direction and --without-resends if given), else print a
      diff and exit 1.
  render TEMPLATE PCAP --log-dir DIR [--port P]
      Fill a walkthrough template's {{...}} placeholders; one that cannot be resolved
      is an error (exit 1 with a message), never an empty string:
        {{frames}}              the frame table (summary --exact as markdown)
        {{frame:SEL}}           the --exact summary line of one frame
        {{frameno:SEL}}         its frame number
        {{field:FIELD@SEL}}     tshark's value of FIELD (e.g. infiniband.reth.va) in
                                that frame, first occurrence, as `tshark -T fields`
                                prints it (many integers in hex: 0x1c06); a frame
                                with several TLS records gives its first record's
        {{bytes:N:FIELD@SEL}}   the first N bytes of a bytes FIELD as "aa bb cc ..."
                                (e.g. infiniband.cm.req.ip_cm.private, data.data)
        {{count:[c>s:|s>c:]NAME}}  how many events have that name (and direction)
        {{count:[c>s:|s>c:]NAME@SEL}}  ... on SEL's connection only (its TCP
                                connection and its QPs; e.g. @TEST#2: lesson 06's
                                second measurement)
        {{roce_of:SEL}}         every RoCE packet of SEL's connection in capture order,
                                one per line: frame number and --exact summary line
        {{in_flight:SEL}}       the most requests the client sent on SEL's connection
                                that the capture shows unanswered at once (no ACK or
                                READ response with their PSN or a later one yet)
        {{retries}}             connection attempts refused before the server listened
                                (TCP RSTs from --port before the first HELLO or
                                ClientHello; CM ConnectRequests rejected with reason 8,
                                Invalid Service ID)
        {{log:ROLE:REGEX}}      the first line of DIR/ROLE.log matching REGEX; within one
                                fenced code block, the lines of one log must come in
                                that log's order (an excerpt never reorders a story)
        {{value:NAME}}          a value of the first connection: client_qpn,
                                server_qpn, client_psn, server_psn, client_send_psn,
                                server_send_psn, mtu, kernel (DIR/kernel-version);
                                with no plaintext or CM run (TLS) from DIR/client.log
      Per direction (DIR is c>s or s>c; DIR:NAME only the events called NAME), over the
      decoded RoCE packets, for comparing two senders (captures/interop):
        {{values:FIELD@DIR[:NAME]}}  the distinct values of tshark's FIELD (ip.id,
                                ip.ttl, ip.flags.df, udp.srcport ...) in those packets,
                                in order of first appearance, comma-separated
        {{sequence:FIELD@DIR[:NAME]}}  the same, but every packet's value, in order
        {{requests:DIR[:NAME]}} how many of them are requests (SEND, WRITE, READ ...)
        {{ackreq:DIR[:NAME]}}   the frame numbers of those with AckReq set
        {{acked:DIR}}           for each positive ACK sent in DIR, the frame number of
                                the request it acknowledges (the latest earlier one of
                                its connection, in the other direction, with its PSN)
        {{ackreq_answered:DIR}} the frames of the other direction with AckReq set, when
                                the ACKs sent in DIR answer exactly those, one each, in
                                order ({{acked:DIR}} equals {{ackreq:OTHER}}); an error
                                otherwise
        {{wire_check:KEY}}      a number from /usr/bin/python3
                                tests/tools/roce_wire_check.py PCAP --json (exit 0
                                required): roce_packets, icrc_ok (ICRCs right, computed
                                by hand), scapy_cross_checked (ICRCs scapy.contrib.roce
                                recomputed too), retransmissions ...; an error unless
                                every ICRC is right
        {{icrc_id:SEL}}         the IPv4 ID that makes the frame's ICRC right, solved
                                from the ICRC alone (icrc_ip_id), as 0x....; an error
                                unless it is the ID in the frame's IPv4 header
        {{icrc_ids:DIR[:NAME]}} how many packets were so solved, all of them (any
                                mismatch is an error)
        {{rxe_sport:SEL}}       "QPN 0x000011 to QPN 0x000011: port 49441 (0xc121)":
                                the UDP source port Linux's rdma_get_udp_sport gives the
                                frame's sender from its QPN (from its connection's
                                exchange) and the destination QPN (rdma_udp_sport); an
                                error unless every packet its sender sent on that
                                connection comes from that port
      SEL is [c>s:|s>c:]NAME[#K]: the K-th (1-based, default 1) event called NAME,
      optionally only in that direction. NAME is a RoCE opcode (RDMA_WRITE_ONLY,
      RDMA_READ_RESPONSE_FIRST, ACK, ...), a CM message (ConnectRequest, ...), a NAK
      (RNR_NAK, NAK_REMOTE_ACCESS_ERROR, ...), an exchange message (HELLO, READY) or a
      TLS record (ClientHello, ServerHello, ChangeCipherSpec, ApplicationData, ...).
      Select ApplicationData with a direction (s>c:ApplicationData#5): the order of the
      two sides' encrypted records may change from run to run, each side's may not.
      ACK means a positive acknowledgement: an Acknowledge packet carrying a NAK is
      named by its syndrome. Retransmitted CM messages count once; selectors and
      counts skip what only --exact shows (refused connects, MRAs). Lesson 01's names
      of its first connection stay: hello_c, hello_s, ready, send1, ack1, echo1,
      echo_ack1, goodbye, goodbye_ack; and of its second: first2, middle2, last2, ack2.
      Values: for lesson 01, client_psn and server_psn are the PSNs each side announced
      in its HELLO, the first PSN of its own requests (= *_send_psn). For CM, client_qpn
      and client_psn are the Local QPN and Starting PSN of the ConnectRequest, server_*
      those of the ConnectReply; Linux's CM makes each Starting PSN the first PSN its
      sender expects to *receive*, so the client's requests start at server_psn
      (= client_send_psn) and the server's at client_psn (= server_send_psn). mtu is the
      smaller HELLO MTU, or the ConnectRequest's path MTU.
      TLS (no plaintext or CM run): client_qpn, client_psn and server_qpn, server_psn
      are the QPNs and PSNs of the first "sending QP_INFO" (or HELLO) and "received
      QP_INFO" lines of DIR/client.log, mtu the smaller of their MTUs; client_send_psn
      and server_send_psn the PSNs of each side's first request after the first TLS
      handshake in the capture (check --client-log verifies that they agree).
"""
import argparse
import difflib
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

OPCODES = {
    0: "SEND_FIRST", 1: "SEND_MIDDLE", 2: "SEND_LAST", 3: "SEND_LAST_WITH_IMMEDIATE",
    4: "SEND_ONLY", 5: "SEND_ONLY_WITH_IMMEDIATE", 6: "RDMA_WRITE_FIRST", 7: "RDMA_WRITE_MIDDLE",
    8: "RDMA_WRITE_LAST", 9: "RDMA_WRITE_LAST_WITH_IMMEDIATE", 10: "RDMA_WRITE_ONLY",
    11: "RDMA_WRITE_ONLY_WITH_IMMEDIATE", 12: "RDMA_READ_REQUEST", 13: "RDMA_READ_RESPONSE_FIRST",
    14: "RDMA_READ_RESPONSE_MIDDLE", 15: "RDMA_READ_RESPONSE_LAST", 16: "RDMA_READ_RESPONSE_ONLY",
    17: "ACK", 18: "ATOMIC_ACKNOWLEDGE", 19: "COMPARE_SWAP", 20: "FETCH_ADD",
    22: "SEND_LAST_WITH_INVALIDATE", 23: "SEND_ONLY_WITH_INVALIDATE",
    100: "UD_SEND_ONLY", 101: "UD_SEND_ONLY_WITH_IMMEDIATE",
}
# Extended transport headers after the 12-byte BTH, by opcode: RETH 16, AETH 4, ImmDt 4,
# IETH 4, AtomicETH 28, AtomicAckETH 8, DETH 8 (UD).
EXTRA_HEADER_BYTES = {3: 4, 5: 4, 6: 16, 9: 4, 10: 16, 11: 20, 12: 16, 13: 4, 15: 4, 16: 4, 17: 4,
                      18: 12, 19: 28, 20: 28, 22: 4, 23: 4, 100: 8, 101: 12}
SEND_OPS = {0, 1, 2, 3, 4, 5, 22, 23}
# A responder's packets (ACK, READ responses, atomic ACK) belong to the requester's PSN
# stream: they echo the PSNs of the requests they answer.
RESPONSE_OPS = {13, 14, 15, 16, 17, 18}
REQUEST_OPS = SEND_OPS | {6, 7, 8, 9, 10, 11, 12, 19, 20}
# The packets that carry a RETH: the first (or only) packet of an RDMA WRITE, and the
# READ request; later packets of a WRITE follow on from it without one.
RETH_OPS = {6, 10, 11, 12}
ACK_OP = 17
# RDMA CM messages are MADs of the Communication Management class (7), sent as UD SENDs to
# the general services QP (QP 1); the attribute ID says which message it is.
CM_ATTRIBUTES = {0x10: "ConnectRequest", 0x11: "MRA", 0x12: "ConnectReject", 0x13: "ConnectReply",
                 0x14: "ReadyToUse", 0x15: "DisconnectRequest", 0x16: "DisconnectReply"}
CM_MGMT_CLASS = 7
# Reject reasons a lesson meets (IBA table "REJ reason"); others print as a number.
# 8 is what the kernel's CM answers when nobody listens on the service ID (the port).
REJECT_REASONS = {1: "no QP", 3: "no resources", 4: "timeout", 8: "invalid service ID",
                  10: "stale connection", 28: "consumer reject"}
NO_LISTENER = 8
NAK_CODES = {0: "NAK_PSN_SEQUENCE_ERROR", 1: "NAK_INVALID_REQUEST", 2: "NAK_REMOTE_ACCESS_ERROR",
             3: "NAK_REMOTE_OPERATIONAL_ERROR", 4: "NAK_INVALID_RD_REQUEST"}
FIELDS = ["frame.number", "frame.time_relative", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport",
          "tcp.stream", "tcp.seq_raw", "tcp.flags.syn", "tcp.payload", "udp.dstport", "udp.length", "infiniband.bth.opcode",
          "infiniband.bth.destqp", "infiniband.bth.psn", "infiniband.bth.a",
          "infiniband.aeth.syndrome", "_ws.col.Protocol", "frame.len",
          "infiniband.bth.padcnt", "infiniband.reth.va", "infiniband.reth.r_key",
          "infiniband.reth.dmalen", "infiniband.immdt", "infiniband.mad.mgmtclass",
          "infiniband.mad.attributeid", "infiniband.mad.transactionid",
          "infiniband.cm.req.serviceid.dport", "infiniband.cm.req.localqpn",
          "infiniband.cm.req.startpsn", "infiniband.cm.req.pppmtu", "infiniband.cm.rep.localqpn",
          "infiniband.cm.rep.startpsn", "infiniband.cm.rej.reason"]
MSG_TYPES = {1: "HELLO", 2: "READY", 3: "ERROR", 4: "QP_INFO", 5: "DONE", 6: "TEST", 7: "BREAK"}
# A lesson 06 TEST (common/exchange.hpp): the operation and pattern of the next measurement.
TEST_OPS = {1: "SEND", 2: "WRITE", 3: "WRITE_IMM", 4: "READ"}
TEST_PATTERNS = {1: "ping-pong", 2: "stream"}
MTU_BYTES = {1: 256, 2: 512, 3: 1024, 4: 2048, 5: 4096}
# TLS records (lesson 05) are named by what tshark can see without the keys: the record's
# content type, and for a plaintext handshake record its handshake message. TLS 1.3
# encrypts everything after the ServerHello (EncryptedExtensions, Certificate,
# CertificateVerify, Finished, NewSessionTicket, the exchange messages, even the
# close_notify alert) into records whose outer ("opaque") type is application data, so
# all of those are ApplicationData here, as in Wireshark.
TLS_CONTENT_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData",
                     24: "Heartbeat"}
TLS_HANDSHAKE_TYPES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
                       5: "EndOfEarlyData", 8: "EncryptedExtensions", 11: "Certificate",
                       12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone",
                       15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished", 24: "KeyUpdate",
                       254: "MessageHash"}
TLS_VERSIONS = {0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3"}
HELLO_NAMES = ("ClientHello", "ServerHello", "HelloRetryRequest")


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


def tls_connections(rows, port):
    """The exchange connections (by client port) that speak TLS: the client's first bytes
    are a TLS handshake record (content type 22, version 3.x), where lesson 01's would be
    an exchange header ("RDMT")."""
    first, tls = set(), set()
    for r in rows:
        if not r["tcp.srcport"] or not r["tcp.payload"]:
            continue
        to_server = r["tcp.dstport"] == str(port)
        conn = r["tcp.srcport"] if to_server else r["tcp.dstport"]
        if conn in first:
            continue
        first.add(conn)
        if to_server and (hex_bytes(r["tcp.payload"]) or b"")[:2] == b"\x16\x03":
            tls.add(conn)
    return tls


def showname_value(field):
    """The value part of a PDML showname without its code: "Level: Fatal (2)" -> "Fatal",
    "Cipher Suite: TLS_AES_256_GCM_SHA384 (0x1302)" -> "TLS_AES_256_GCM_SHA384"."""
    text = field.get("showname", "").partition(": ")[2]
    return re.sub(r"\s*\((?:0x[0-9a-fA-F]+|\d+)\)$", "", text)


def tls_record(rec):
    """One record of tshark's PDML tree as the fields a TLS event needs."""
    fields = {}
    for f in rec.iter("field"):
        fields.setdefault(f.get("name"), f)
    plain, opaque = fields.get("tls.record.content_type"), fields.get("tls.record.opaque_type")
    outer = plain if plain is not None else opaque
    ctype = number(outer.get("show")) if outer is not None else None
    info = {"length": number(fields["tls.record.length"].get("show")) if "tls.record.length" in fields else 0,
            "version": number(fields["tls.record.version"].get("show")) if "tls.record.version" in fields else None,
            "ctype": ctype, "also": [], "alert": None,
            "negotiated": None, "suite": None}
    name = TLS_CONTENT_TYPES.get(ctype, f"TLS_CONTENT_{ctype}")
    if ctype == 22:
        # A record may carry several handshake messages (not in TLS 1.3's plaintext part):
        # it is named by the first, the others are listed.
        msgs = []
        for h in rec.iter("field"):
            if h.get("name") != "tls.handshake":
                continue
            htype = next((c for c in h.iter("field") if c.get("name") == "tls.handshake.type"), None)
            if htype is None:
                msgs.append("EncryptedHandshake" if "Encrypted" in h.get("showname", "") else "Handshake")
            elif number(htype.get("show")) == 2 and "Hello Retry Request" in h.get("showname", ""):
                msgs.append("HelloRetryRequest")
            else:
                t = number(htype.get("show"))
                msgs.append(TLS_HANDSHAKE_TYPES.get(t, f"Handshake_{t}"))
        name, info["also"] = (msgs[0], msgs[1:]) if msgs else ("Handshake", [])
        if name in ("ServerHello", "HelloRetryRequest"):
            # (An Element without children is false: no "or" between them.)
            chosen = fields.get("tls.handshake.extensions.supported_version")
            if chosen is None:
                chosen = fields.get("tls.handshake.version")
            if chosen is not None:
                v = number(chosen.get("show"))
                info["negotiated"] = TLS_VERSIONS.get(v, f"0x{v:04x}")
            if "tls.handshake.ciphersuite" in fields:
                info["suite"] = showname_value(fields["tls.handshake.ciphersuite"])
    elif ctype == 21:
        level, desc = fields.get("tls.alert_message.level"), fields.get("tls.alert_message.desc")
        if desc is not None:
            info["alert"] = (f"{showname_value(level).lower()} " if level is not None else "") + \
                            showname_value(desc).lower().replace(" ", "_")
        else:
            info["alert"] = "encrypted"
    info["name"] = name
    return info


def tls_records(pcap, port):
    """frame number -> the TLS records tshark decodes in it on the exchange port, in wire
    order. A record split over TCP segments belongs to the frame that completes it.

    PDML, not -T fields: tshark puts a plaintext record's type in tls.record.content_type
    but a TLS 1.3 encrypted record's in tls.record.opaque_type, so with -E occurrence=a
    the two lists lose their order within a frame (ServerHello, ChangeCipherSpec and four
    encrypted records share one). "Decode As" TLS, since tshark only recognises TLS on
    its well-known ports (4433 is one, most are not). Retransmitted segments would repeat
    records the original segment already had."""
    cmd = ["tshark", "-r", pcap, "-n", "-d", f"tcp.port=={port},tls", "-J", "tls", "-T", "pdml",
           "-Y", f"tcp.port == {port} && tls && !tcp.analysis.retransmission"]
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    by_frame = {}
    for pkt in ET.fromstring(out).iter("packet"):
        n = int(pkt.find("proto[@name='geninfo']/field[@name='num']").get("show"))
        for proto in pkt.findall("proto[@name='tls']"):
            by_frame.setdefault(n, []).extend(tls_record(rec) for rec in proto.findall("field[@name='tls.record']"))
    return by_frame


def number(text):
    """A tshark integer field (decimal or 0x hex); None when the field is absent."""
    return int(text, 0) if text else None


def hex_bytes(text):
    """A tshark bytes field ("0a1b..." or "0a:1b:...") as bytes; None when absent."""
    return bytes.fromhex(text.replace(":", "")) if text else None


def parse_messages(data):
    """Split an exchange byte stream into (type, fields) messages; stops at a partial one."""
    msgs, off = [], 0
    while len(data) - off >= 12:
        magic, ver, mtype, _res, length = struct.unpack("!4sBBHI", data[off:off + 12])
        if magic != b"RDMT" or len(data) - off - 12 < length:
            break
        body = data[off + 12: off + 12 + length]
        info = {"type": MSG_TYPES.get(mtype, f"type{mtype}"), "bytes": 12 + length, "version": ver}
        if (info["type"], length) in (("HELLO", 36), ("QP_INFO", 52)):
            # QP_INFO (lesson 06's, in plaintext) is a HELLO followed by one buffer.
            qpn, psn, lid, mtu, _r = struct.unpack("!IIHBB", body[:12])
            size, count = struct.unpack("!II", body[28:36])
            info.update(qpn=qpn, psn=psn, lid=lid, mtu=MTU_BYTES.get(mtu, mtu), gid=body[12:28],
                        size=size, count=count)
            if length == 52:
                info["addr"], info["rkey"], info["length"] = struct.unpack("!QII", body[36:52])
        elif info["type"] == "TEST" and length == 20:
            op, pattern, flags, _r, size, iters, window, test = struct.unpack("!BBBBIIII", body)
            info.update(op=TEST_OPS.get(op, f"op{op}"), pattern=TEST_PATTERNS.get(pattern, f"pattern{pattern}"),
                        flags=[f for bit, f in ((1, "inline"), (2, "event")) if flags & bit],
                        size=size, iters=iters, window=window, test=test)
        elif info["type"] == "ERROR":
            info["text"] = body.decode("ascii", "replace")
        elif info["type"] == "BREAK":
            # Lesson 07: the name of the failure the client reproduces next, in ASCII.
            info["case"] = body.decode("ascii", "replace")
        msgs.append(info)
        off += 12 + length
    return msgs, off


def is_cm(row):
    """A CM MAD: a UD SEND to QP 1 whose MAD header says Communication Management."""
    return row["infiniband.mad.attributeid"] != "" and number(row["infiniband.mad.mgmtclass"]) == CM_MGMT_CLASS


def server_addresses(rows, port):
    """Who the server is: the destination of the TCP exchange (lesson 01) or of a CM
    ConnectRequest (the active side, the client, always sends the request)."""
    ips = {r["ip.dst"] for r in rows if r["tcp.dstport"] == str(port)}
    ips |= {r["ip.dst"] for r in rows if is_cm(r) and number(r["infiniband.mad.attributeid"]) == 0x10}
    return ips


def aeth_name(syndrome):
    """The AETH syndrome of an Acknowledge packet, named: its top 3 bits say ACK (000),
    RNR NAK (001: receiver not ready, no RECV posted) or NAK (011, low 5 bits the code);
    the low bits of an ACK (credits) and RNR NAK (timer) vary and are not part of the name."""
    kind = syndrome >> 5
    if kind == 0:
        return "ACK"
    if kind == 1:
        return "RNR_NAK"
    if kind == 3:
        return NAK_CODES.get(syndrome & 0x1F, f"NAK_CODE_{syndrome & 0x1F}")
    return f"AETH_RESERVED_0x{syndrome:02x}"


def tcp_events(r, to_server, streams, n):
    """The exchange messages completed by this TCP segment (a message may span segments).
    Each connection (tshark's tcp.stream) and direction is one byte stream, put in order by
    the segments' sequence numbers as sent (tcp.seq_raw, so no Wireshark preference
    changes them): it starts after the SYN's number, or, in a capture without the SYN, at
    the first data segment. A segment sent again (a retransmission, or a tail loss probe:
    the sender's TCP resends its last segment when no ACK came within about two round
    trips, which a slow lab guest can take) adds nothing already taken, and a segment
    that arrives ahead of a gap waits for the gap to fill (unfilled_gaps names any left)."""
    key = (r["tcp.stream"], to_server)
    conn = r["tcp.srcport"] if to_server else r["tcp.dstport"]
    seq = int(r["tcp.seq_raw"])
    stream = streams.setdefault(key, {"base": None, "next": 0, "buf": b"", "ahead": {}, "conn": conn})
    if r["tcp.flags.syn"] in ("1", "True"):
        stream["base"] = (seq + 1) % (1 << 32)
        return []
    payload = hex_bytes(r["tcp.payload"]) or b""
    if not payload:
        return []
    if stream["base"] is None:
        stream["base"] = seq
    # The segment's offset from the stream's first byte; a segment from before it (only
    # possible without the SYN) counts as already taken.
    offset = (seq - stream["base"]) % (1 << 32)
    if offset >= 1 << 31:
        offset -= 1 << 32
    stream["ahead"][offset] = max(stream["ahead"].get(offset, b""), payload, key=len)
    progressed = True
    while progressed:  # take every held segment that now starts at or before the next byte
        progressed = False
        for start in sorted(stream["ahead"]):
            if start > stream["next"]:
                break
            data = stream["ahead"].pop(start)
            new = data[stream["next"] - start:]
            stream["buf"] += new
            stream["next"] += len(new)
            progressed = True
    msgs, used = parse_messages(stream["buf"])
    stream["buf"] = stream["buf"][used:]
    return [{"frame": n, "dir": "c>s" if to_server else "s>c", "kind": "tcp", "conn": conn, **m}
            for m in msgs]


def unfilled_gaps(streams):
    """After the last frame: each byte stream whose held segments never became contiguous
    (a segment the capture lacks), as 'client port P, c>s: from byte N'."""
    return [f"client port {st['conn']}, {'c>s' if to_server else 's>c'}: bytes from {st['next']} missing"
            for (_, to_server), st in streams.items() if st["ahead"]]


def roce_event(r, n, direction):
    """One RoCE packet: BTH fields, the payload size, and whichever of RETH, ImmDt, AETH
    its opcode carries."""
    ev = {"frame": n, "dir": direction, "kind": "roce", "decoded": r["infiniband.bth.opcode"] != ""}
    if not ev["decoded"]:
        return ev
    op = number(r["infiniband.bth.opcode"])
    # UDP length - UDP header 8 - BTH 12 - ICRC 4 - extended headers - pad bytes.
    payload = (int(r["udp.length"]) - 8 - 12 - 4 - EXTRA_HEADER_BYTES.get(op, 0)
               - (number(r["infiniband.bth.padcnt"]) or 0))
    ev.update(op=op, name=OPCODES.get(op, f"opcode{op}"), destqp=number(r["infiniband.bth.destqp"]),
              psn=number(r["infiniband.bth.psn"]), ackreq=r["infiniband.bth.a"] in ("1", "True"),
              payload=payload, syndrome=r["infiniband.aeth.syndrome"], nak=None,
              va=number(r["infiniband.reth.va"]), rkey=number(r["infiniband.reth.r_key"]),
              dmalen=number(r["infiniband.reth.dmalen"]), imm=None)
    immdt = hex_bytes(r["infiniband.immdt"])
    if immdt is not None:
        ev["imm"] = int.from_bytes(immdt, "big")
    if op == ACK_OP and r["infiniband.aeth.syndrome"]:
        name = aeth_name(number(r["infiniband.aeth.syndrome"]))
        ev["nak"] = None if name == "ACK" else name
    return ev


def cm_event(r, n, direction):
    """One CM message with the fields a run needs: QPN and Starting PSN (REQ, REP), the
    service's port and path MTU (REQ), the reason (REJ)."""
    attr = number(r["infiniband.mad.attributeid"])
    ev = {"frame": n, "dir": direction, "kind": "cm", "attr": attr,
          "name": CM_ATTRIBUTES.get(attr, f"CM_0x{attr:04x}"),
          "tid": number(r["infiniband.mad.transactionid"]), "resent": 0, "refused": False}
    if attr == 0x10:
        mtu = number(r["infiniband.cm.req.pppmtu"])
        ev.update(qpn=number(r["infiniband.cm.req.localqpn"]), start_psn=number(r["infiniband.cm.req.startpsn"]),
                  port=number(r["infiniband.cm.req.serviceid.dport"]), mtu=MTU_BYTES.get(mtu, mtu))
    elif attr == 0x13:
        ev.update(qpn=number(r["infiniband.cm.rep.localqpn"]), start_psn=number(r["infiniband.cm.rep.startpsn"]))
    elif attr == 0x12:
        ev["reason"] = number(r["infiniband.cm.rej.reason"])
    return ev


def collapse_resends(events):
    """A CM sender resends a MAD (same transaction ID, attribute, direction) when the
    answer is late, e.g. on a slow guest; keep the first and count the others, so two
    runs of one scenario tell the same story."""
    first, kept = {}, []
    for ev in events:
        if ev["kind"] == "cm":
            key = (ev["tid"], ev["attr"], ev["dir"])
            if key in first:
                first[key]["resent"] += 1
                continue
            first[key] = ev
        kept.append(ev)
    return kept


def mark_refused(events):
    """Both lab guests start together, so a client may knock before the server listens
    (at the start, or while a persistent server is between two connections): its kernel
    then rejects the ConnectRequest with reason 8 (invalid service ID) and rdma_cm reports
    REJECTED, like the TCP RST of lesson 01, and the client tries again. Mark such attempts
    (a reason-8 reject followed by another ConnectRequest); they are timing, not the
    scenario."""
    requests = [e["frame"] for e in events if e["kind"] == "cm" and e["attr"] == 0x10]
    rejected = {e["tid"] for e in events if e["kind"] == "cm" and e["attr"] == 0x12
                and e["reason"] == NO_LISTENER and any(f > e["frame"] for f in requests)}
    for e in events:
        if e["kind"] == "cm" and e["tid"] in rejected and e["attr"] in (0x10, 0x11, 0x12):
            e["refused"] = True


def story(pcap, port):
    """The lesson's frames as events: exchange messages, CM messages and RoCE packets, in
    capture order."""
    rows = tshark_rows(pcap, port)
    server_ips = server_addresses(rows, port)
    streams = {}  # (tcp.stream, direction) -> that byte stream's reassembly (tcp_events)
    tls_conns = tls_connections(rows, port)
    records = tls_records(pcap, port) if tls_conns else {}
    events = []
    for r in rows:
        n = int(r["frame.number"])
        if r["tcp.srcport"]:
            to_server = r["tcp.dstport"] == str(port)
            conn = r["tcp.srcport"] if to_server else r["tcp.dstport"]
            if conn in tls_conns:
                events += [{"frame": n, "dir": "c>s" if to_server else "s>c", "kind": "tls", "conn": conn, **rec}
                           for rec in records.get(n, [])]
            else:
                events += tcp_events(r, to_server, streams, n)
        elif r["udp.dstport"] == "4791":
            direction = "c>s" if r["ip.dst"] in server_ips else "s>c"
            events.append(cm_event(r, n, direction) if is_cm(r) else roce_event(r, n, direction))
    for gap in unfilled_gaps(streams):
        print(f"capture: {pcap}: the TCP exchange has a gap ({gap}): the messages after it are not read",
              file=sys.stderr)
    events = collapse_resends(events)
    mark_refused(events)
    return events


def label(ev):
    """The name selectors, --require and {{count}} know an event by."""
    if ev["kind"] == "tcp":
        return ev["type"]
    if ev["kind"] in ("cm", "tls"):
        return ev["name"]
    if not ev["decoded"]:
        return None
    return ev["nak"] or ev["name"]


def tcp_runs(events):
    """Lesson 01: one run per TCP connection; each HELLO (lesson 06: QP_INFO) announces
    the QPN of its sender and the PSN its sender's requests start at."""
    by_conn = {}
    for ev in events:
        if ev["kind"] == "tcp":
            by_conn.setdefault(ev["conn"], []).append(ev)
    result = []
    for conn, evs in by_conn.items():
        hellos = {e["dir"]: e for e in evs if e["type"] in ("HELLO", "QP_INFO") and "qpn" in e}
        result.append({"kind": "tcp", "conn": conn, "start": evs[0]["frame"],
                       "client": hellos.get("c>s"), "server": hellos.get("s>c")})
    return result


def cm_runs(events):
    """RDMA CM: one run per ConnectRequest, joined to its ConnectReply by the transaction
    ID (the passive side answers in the requester's transaction).

    Linux's CM (drivers/infiniband/core/cm.c) sets the active side's rq_psn from the
    REQ's Starting PSN and its sq_psn from the REP's, and the passive side the other way
    round: each Starting PSN is the first PSN its sender expects to receive. So the
    client's requests start at the ConnectReply's Starting PSN and the server's at the
    ConnectRequest's; "psn" below is, as for a HELLO, where that side's requests start."""
    replies = {e["tid"]: e for e in events if e["kind"] == "cm" and e["attr"] == 0x13}
    result = []
    for req in (e for e in events if e["kind"] == "cm" and e["attr"] == 0x10):
        rep = replies.get(req["tid"])
        client = {"qpn": req["qpn"], "psn": rep["start_psn"] if rep else None, "cm": req, "mtu": req["mtu"]}
        server = {"qpn": rep["qpn"], "psn": req["start_psn"], "cm": rep} if rep else None
        result.append({"kind": "cm", "conn": req["tid"], "start": req["frame"], "client": client, "server": server})
    return result


def tls_runs(events):
    """TLS (lesson 05): one run per TLS connection. Its QP details travel encrypted, so
    the capture cannot show what each side announced; the run is read from the RoCE
    packets between this connection's first record and the next TLS connection's (one
    session at a time): every packet of the client goes to the server's QP and vice
    versa, and each side's requests start at the PSN it announced (check --client-log
    verifies that against the logged QP_INFO lines). "psn" is None for a side that sent
    no request."""
    starts = {}
    for ev in events:
        if ev["kind"] == "tls":
            starts.setdefault(ev["conn"], ev["frame"])
    order = sorted(starts.items(), key=lambda item: item[1])
    roce = [e for e in events if e["kind"] == "roce" and e["decoded"]]
    result = []
    for i, (conn, start) in enumerate(order):
        end = order[i + 1][1] if i + 1 < len(order) else None
        window = [e for e in roce if e["frame"] > start and (end is None or e["frame"] < end)]
        to_server = next((e for e in window if e["dir"] == "c>s"), None)
        to_client = next((e for e in window if e["dir"] == "s>c"), None)
        client = server = None
        if to_server and to_client:
            sides = {}
            for who, direction, qpn in (("client", "c>s", to_server["destqp"]), ("server", "s>c", to_client["destqp"])):
                first = next((e for e in window if e["dir"] == direction and e["op"] in REQUEST_OPS
                              and e["destqp"] == qpn), None)
                sides[who] = first["psn"] if first else None
            client = {"qpn": to_client["destqp"], "psn": sides["client"], "mtu": None}
            server = {"qpn": to_server["destqp"], "psn": sides["server"], "mtu": None}
        result.append({"kind": "tls", "conn": conn, "start": start, "client": client, "server": server})
    return result


def runs(events):
    """Every connection of the capture, in the order it started."""
    return sorted(tcp_runs(events) + cm_runs(events) + tls_runs(events), key=lambda run: run["start"])


def run_index(ev, run_list):
    """Which run a RoCE packet belongs to, by its destination QP. The destination QP
    belongs to the receiving side; both hosts number their QPs independently (both often
    start at 0x11), so the direction picks the side. When separate processes reuse QPNs,
    the latest run that started before the packet wins."""
    found = None
    for i, run in enumerate(run_list):
        c, s = run["client"], run["server"]
        receiver = s if ev["dir"] == "c>s" else c
        if c and s and ev["destqp"] == receiver["qpn"]:
            if found is None or run["start"] < ev["frame"]:
                found = i
    return found


def run_of(ev, run_list):
    """Which connection (index into run_list) any event belongs to: an exchange message or
    TLS record by its TCP connection, a RoCE packet by its QPs (run_index), a CM message
    by the ConnectRequest it follows; None for none."""
    if ev["kind"] in ("tcp", "tls"):
        return next((i for i, r in enumerate(run_list) if r["kind"] == ev["kind"] and r["conn"] == ev["conn"]), None)
    if ev["kind"] == "roce":
        return run_index(ev, run_list) if ev["decoded"] else None
    found = [i for i, r in enumerate(run_list) if r["kind"] == "cm" and r["start"] <= ev["frame"]]
    return found[-1] if found else None


def announced_psn(ev, run_list):
    """The PSN where this packet's stream started, as its run announced it.

    Requests from the client (and the server's responses to them: ACKs, READ responses)
    count from the client's first PSN; requests from the server (and the client's
    responses) from the server's."""
    i = run_index(ev, run_list)
    if i is None:
        return None
    run = run_list[i]
    client_stream = (ev["op"] not in RESPONSE_OPS) == (ev["dir"] == "c>s")
    return run["client"]["psn"] if client_stream else run["server"]["psn"]


def describe_tcp(ev, exact):
    if ev["type"] in ("HELLO", "QP_INFO") and "qpn" in ev:
        detail = f"size={ev['size']} count={ev['count']} mtu={ev['mtu']}"
        if exact:
            detail = f"QPN=0x{ev['qpn']:06x} PSN=0x{ev['psn']:06x} " + detail
        if "length" in ev:  # QP_INFO's buffer: where it is varies from run to run, its size not
            detail += (f" addr=0x{ev['addr']:x} rkey=0x{ev['rkey']:08x}" if exact else "") + f" length={ev['length']}"
        return f"{ev['dir']}  TCP   {ev['type']:<26} {ev['bytes']:>5} B  {detail}"
    if ev["type"] == "TEST" and "op" in ev:
        detail = (f"test={ev['test']} {ev['op']} {ev['pattern']} size={ev['size']} iters={ev['iters']} "
                  f"window={ev['window']}") + "".join(f" {f}" for f in ev["flags"])
        return f"{ev['dir']}  TCP   {ev['type']:<26} {ev['bytes']:>5} B  {detail}"
    if ev["type"] == "BREAK" and "case" in ev:
        return f"{ev['dir']}  TCP   {ev['type'] + ' ' + ev['case']:<26} {ev['bytes']:>5} B"
    return f"{ev['dir']}  TCP   {ev['type']:<26} {ev['bytes']:>5} B"


def describe_cm(ev, exact):
    """A CM message: direction and name; --exact adds what this run's values were."""
    if not exact:
        return f"{ev['dir']}  CM    {ev['name']}"
    detail = []
    if ev["attr"] == 0x10:
        detail.append(f"port={ev['port']} QPN=0x{ev['qpn']:06x} StartPSN=0x{ev['start_psn']:06x}")
    elif ev["attr"] == 0x13:
        detail.append(f"QPN=0x{ev['qpn']:06x} StartPSN=0x{ev['start_psn']:06x}")
    elif ev["attr"] == 0x12:
        detail.append(f"reason={ev['reason']} ({REJECT_REASONS.get(ev['reason'], 'see IBA REJ reasons')})")
    if ev["resent"]:
        detail.append(f"(resent {ev['resent']})")
    return f"{ev['dir']}  CM    {ev['name']:<26} {' '.join(detail)}".rstrip()


def roce_details(ev, exact):
    """What RETH, ImmDt and a NAK add to a RoCE line (nothing for lesson 01's packets)."""
    extra = ""
    if ev["op"] in RETH_OPS and ev["dmalen"] is not None:
        extra += f" va=0x{ev['va']:x} rkey=0x{ev['rkey']:08x}" if exact else ""
        extra += f" len={ev['dmalen']}"
    if ev["imm"] is not None:
        extra += f" imm=0x{ev['imm']:08x}"
    if ev["nak"]:
        extra += f" {ev['nak']}" + (f" syndrome=0x{number(ev['syndrome']):02x}" if exact else "")
    return extra


def describe_tls(ev, exact):
    """A TLS record: direction, name, record length (the bytes after its 5-byte header).
    Without --exact an ApplicationData record has no size: tshark cannot tell TLS 1.3's
    encrypted handshake from the exchange messages, and the handshake's sizes are not the
    scenario's (see tls_story_order)."""
    detail = []
    if exact and ev["name"] in HELLO_NAMES and ev["version"] is not None:
        detail.append(f"record=0x{ev['version']:04x}")
    if ev["negotiated"]:
        detail.append(f"version={ev['negotiated']}")
    if ev["suite"]:
        detail.append(f"suite={ev['suite']}")
    if ev["alert"]:
        detail.append(ev["alert"])
    if ev["also"]:
        detail.append("+" + " +".join(ev["also"]))
    if not exact and ev["name"] == "ApplicationData":
        return f"{ev['dir']}  TLS   {ev['name']:<26} {' '.join(detail)}".rstrip()
    return f"{ev['dir']}  TLS   {ev['name']:<26} {ev['length']:>5} B  {' '.join(detail)}".rstrip()


# The PSN of an ACK that acknowledges nothing yet: kernel rxe (6.1) answers a duplicate
# request with the PSN before the last one it ACKed, and that starts at 0 on a new QP, so
# a QP's first answer to a request from before its expected PSN (lesson 07's psn-behind)
# carries 0xffffff, whatever the announced PSN was.
NOTHING_ACKED_PSN = 0xFFFFFF


def unanchored(ev, request_psns, run_list):
    """A response carrying NOTHING_ACKED_PSN when no request of its stream had that PSN:
    its PSN is not relative to the stream's first PSN, so the summary without --exact
    shows it as it is (relative, it would differ in every run)."""
    if ev["kind"] != "roce" or not ev["decoded"] or ev["op"] not in RESPONSE_OPS or ev["psn"] != NOTHING_ACKED_PSN:
        return False
    other = "s>c" if ev["dir"] == "c>s" else "c>s"
    return NOTHING_ACKED_PSN not in request_psns.get((run_index(ev, run_list), other), set())


def describe(ev, base_psn, exact, absolute=False):
    if ev["kind"] == "tcp":
        return describe_tcp(ev, exact)
    if ev["kind"] == "tls":
        return describe_tls(ev, exact)
    if ev["kind"] == "cm":
        return describe_cm(ev, exact)
    if not ev["decoded"]:
        return f"{ev['dir']}  UDP   NOT DECODED AS RoCE"
    if exact or absolute:
        psn = f"PSN=0x{ev['psn']:06x}"
    elif base_psn is None:
        psn = "PSN=?"  # a packet of no exchange we saw
    else:
        psn = f"PSN=announced+{(ev['psn'] - base_psn) & 0xFFFFFF}"
    qp = f" QP=0x{ev['destqp']:06x}" if exact else ""
    ack = " AckReq" if ev["ackreq"] else ""
    return f"{ev['dir']}  RoCE  {ev['name']:<26} {ev['payload']:>5} B  {psn}{qp}{roce_details(ev, exact)}{ack}"


def named_frames(events):
    """Lesson 01's frames by name (see render in the module doc): its first two TCP runs."""
    run_list = runs(events)
    names = {}
    tcp = [(i, r["conn"]) for i, r in enumerate(run_list) if r["kind"] == "tcp"]
    for nth, (i, conn) in enumerate(tcp[:2]):
        evs = [e for e in events if (e["kind"] == "tcp" and e["conn"] == conn) or
               (e["kind"] == "roce" and e["decoded"] and run_index(e, run_list) == i)]
        if nth == 0:
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


SELECTOR = re.compile(r"^(?:(c>s|s>c):)?([A-Za-z_][A-Za-z0-9_]*)(?:#([1-9][0-9]*))?$")


def parse_selector(sel):
    """[c>s:|s>c:]NAME[#K] -> (direction or None, NAME, K or None)."""
    m = SELECTOR.match(sel.strip())
    if not m:
        raise SystemExit(f"render: bad frame selector '{sel}' (want [c>s:|s>c:]NAME[#K])")
    return m[1], m[2], int(m[3]) if m[3] else None


def timing_only(ev):
    """Events that depend on timing rather than on the scenario: a ConnectRequest refused
    before the server listened (and its reject), and an MRA (a CM receiver's "wait", sent
    when a message arrives again before it has answered). Only --exact output and
    {{frames}} show them; compare, selectors and counts ignore them."""
    return ev["kind"] == "cm" and (ev["refused"] or ev["attr"] == 0x11)


def matching(events, direction, name):
    return [e for e in events if label(e) == name and not timing_only(e)
            and (direction is None or e["dir"] == direction)]


def select(events, legacy, sel, pcap):
    """The event a selector names: a lesson-01 name, else the K-th event called NAME."""
    direction, name, k = parse_selector(sel)
    if direction is None and k is None and name in legacy:
        if legacy[name] is None:
            raise SystemExit(f"render: no frame named {name} in {pcap}")
        return legacy[name]
    found = matching(events, direction, name)
    if len(found) < (k or 1):
        raise SystemExit(f"render: {sel}: {len(found)} event(s) called {name}"
                         f"{' ' + direction if direction else ''} in {pcap}, wanted #{k or 1}")
    return found[(k or 1) - 1]


def tls_story_order(events):
    """Without --exact: the order of a TLS connection's records once the client encrypts.

    A TLS 1.3 server sends its session tickets (NewSessionTicket, encrypted, so
    ApplicationData here; OpenSSL sends two unless the server turns them off) as soon as
    it has the client's Finished, while the client already sends its first message:
    whether a ticket goes out before or after the client's QP_INFO is timing (seen both
    ways on loopback). At the end both sides send their close_notify on their own, after
    the goodbye. Nothing else can tell which encrypted record answers which, so from the
    client's first ApplicationData on, each stretch of a connection's consecutive records lists the client's records
    first, then the server's, each side in capture order. What each side sent, and in
    which order, is unchanged. Sizes: the encrypted handshake records carry the
    certificates (made per machine by scripts/make-certs.sh, with random serial numbers
    and ECDSA signatures) and a CertificateVerify whose ECDSA signature is 70 to 72 bytes
    long, different in every handshake; tshark cannot tell them from the exchange
    messages, so describe_tls prints no size for ApplicationData. The plaintext records
    (ClientHello, ServerHello, ChangeCipherSpec, a plaintext Alert) keep theirs."""
    started, out, stretch = set(), [], []

    def flush():
        out.extend(e for e in stretch if e["dir"] == "c>s")
        out.extend(e for e in stretch if e["dir"] == "s>c")
        stretch.clear()

    for ev in events:
        if ev["kind"] == "tls" and ev["dir"] == "c>s" and ev["name"] == "ApplicationData":
            started.add(ev["conn"])
        reorder = ev["kind"] == "tls" and ev["conn"] in started
        if not (reorder and stretch and stretch[0]["conn"] == ev["conn"]):
            flush()
        if reorder:
            stretch.append(ev)
        else:
            out.append(ev)
    flush()
    return out


def roce_direction_order(events):
    """With --by-direction (lesson 06): each stretch of consecutive RoCE packets (between
    two exchange messages, e.g. one measurement between READY and DONE) lists the client's
    packets first, then the server's, each side in capture order.

    With many requests in flight, where the responder's ACKs (or READ responses) fall
    between the requests depends on timing: the requester sends the next request while
    the earlier ones are still being answered. What each side sent, in which order, and
    which exchange messages come before and after, do not; those are what is compared."""
    out, stretch = [], []

    def flush():
        out.extend(e for e in stretch if e["dir"] == "c>s")
        out.extend(e for e in stretch if e["dir"] == "s>c")
        stretch.clear()

    for ev in events:
        if ev["kind"] == "roce":
            stretch.append(ev)
        else:
            flush()
            out.append(ev)
    flush()
    return out


def without_resends(events):
    """With --without-resends: a request packet the requester resent although the first
    one had arrived, and the answers repeated for it, are left out. A resend counts as
    such when it repeats an earlier request (same direction, destination QP, opcode and
    PSN), no NAK in the other direction since then asked for it (a sequence error NAK
    names the first PSN to resend, an RNR NAK the request itself), and the responder
    answered twice: some ACK or READ response in the other direction, for this PSN or a
    later one, came again (a responder answers a duplicate by repeating its answer). A
    repeated ACK or READ response is left out. NAKs stay, and so do resends a NAK asked
    for, and resends of a request that had not arrived (lost, or dropped by a responder
    not yet ready: then nothing is answered twice): those are the story.

    Kernel rxe arms its retransmission timer when it sends with the timer idle and does
    not restart it for later requests (rxe_req.c: mod_timer only if !timer_pending), so
    when an ACK is slow (an emulated guest on a busy host took 44 ms), the timer armed for
    an earlier request can expire a few milliseconds after a later one was sent, and rxe
    resends that one although its ACK is on its way. (rxe_comp.c restarts the timer only
    while packets are outstanding, and says "we still might get spurious timeouts".)
    Whether that happens is timing; what each side sent first is not."""
    def roce(ev, ops):
        return ev["kind"] == "roce" and ev["decoded"] and ev["op"] in ops
    def other(direction):
        return "s>c" if direction == "c>s" else "c>s"
    def at_or_after(psn, first):  # 24-bit PSN order
        return (psn - first) % (1 << 24) < (1 << 23)
    answers = [ev for ev in events if roce(ev, RESPONSE_OPS) and not ev["nak"]]
    seen_answers, repeated = set(), []  # (direction, PSN) of each answer that came again
    for ev in answers:
        key = (ev["dir"], ev["destqp"], ev["op"], ev["psn"])
        if key in seen_answers:
            repeated.append((ev["dir"], ev["psn"]))
        seen_answers.add(key)
    seen = {}  # request key -> index in `out` of its last instance
    naks = []  # (index in `out`, direction of the requests it concerns, PSN)
    answered, out = set(), []
    for ev in events:
        if roce(ev, RESPONSE_OPS):
            if ev["nak"]:
                naks.append((len(out), other(ev["dir"]), ev["psn"]))
            else:
                key = (ev["dir"], ev["destqp"], ev["op"], ev["psn"])
                if key in answered:
                    continue
                answered.add(key)
        elif roce(ev, REQUEST_OPS):
            key = (ev["dir"], ev["destqp"], ev["op"], ev["psn"])
            if key in seen:
                asked = any(i > seen[key] and d == ev["dir"] and at_or_after(ev["psn"], psn)
                            for i, d, psn in naks)
                arrived = any(d == other(ev["dir"]) and at_or_after(psn, ev["psn"]) for d, psn in repeated)
                if not asked and arrived:
                    continue
            seen[key] = len(out)
        out.append(ev)
    return out


def summary_lines(pcap, port, exact, events=None, by_direction=False, no_resends=False):
    if events is None:
        events = story(pcap, port)
    run_list = runs(events)
    if not exact:
        events = tls_story_order(events)
        if no_resends:
            events = without_resends(events)
        if by_direction:
            events = roce_direction_order(events)
    request_psns = {}  # (run index, direction) -> the PSNs of the requests sent that way
    for ev in events:
        if ev["kind"] == "roce" and ev["decoded"] and ev["op"] in REQUEST_OPS:
            request_psns.setdefault((run_index(ev, run_list), ev["dir"]), set()).add(ev["psn"])
    lines = []
    for ev in events:
        if not exact and timing_only(ev):
            continue
        base = announced_psn(ev, run_list) if ev["kind"] == "roce" and ev["decoded"] else 0
        lines.append((ev, describe(ev, base, exact, absolute=unanchored(ev, request_psns, run_list))))
    return lines


def cmd_summary(a):
    for ev, text in summary_lines(a.pcap, a.port, a.exact, by_direction=a.by_direction,
                                  no_resends=a.without_resends):
        print(f"{ev['frame']:>4}  {text}" if a.exact else text)
    return 0


def cmd_compare(a):
    left = [t for _, t in summary_lines(a.pcap_a, a.port, False, by_direction=a.by_direction,
                                        no_resends=a.without_resends)]
    right = [t for _, t in summary_lines(a.pcap_b, a.port, False, by_direction=a.by_direction,
                                         no_resends=a.without_resends)]
    if left == right:
        print(f"capture: {a.pcap_a} and {a.pcap_b} tell the same story ({len(left)} frames)")
        return 0
    print(f"capture: {a.pcap_a} and {a.pcap_b} differ:")
    sys.stdout.writelines(l + "\n" for l in difflib.unified_diff(left, right, a.pcap_a, a.pcap_b, lineterm=""))
    return 1


LOGGED = {"sent": re.compile(r"sending (?:HELLO|QP_INFO): QPN 0x([0-9a-f]+) PSN 0x([0-9a-f]+)(?:.*? MTU (\d+))?"),
          "got": re.compile(r"received (?:HELLO|QP_INFO): QPN 0x([0-9a-f]+) PSN 0x([0-9a-f]+)(?:.*? MTU (\d+))?")}


def log_values(path):
    """What one side logged of the first exchange: its own QPN and PSN ("sending HELLO:",
    lesson 01; "sending QP_INFO:", lesson 05) and its peer's ("received ..."), and both
    MTUs when logged; None without both lines."""
    text = open(path, encoding="utf-8", errors="replace").read()
    sent, got = LOGGED["sent"].search(text), LOGGED["got"].search(text)
    if not sent or not got:
        return None
    return {"own_qpn": int(sent[1], 16), "own_psn": int(sent[2], 16),
            "peer_qpn": int(got[1], 16), "peer_psn": int(got[2], 16),
            "own_mtu": int(sent[3]) if sent[3] else None, "peer_mtu": int(got[3]) if got[3] else None}


# Wireshark 4.0 hands every SEND payload to its RPC-over-RDMA heuristic, which throws on
# an empty one and labels a valid zero-length SEND "[Malformed Packet: RPCoRDMA]". With
# that dissector off, any malformed frame or expert error is a real problem. (Valid CM
# MADs, RDMA WRITE/READ/WRITE_WITH_IMM, RNR NAKs and NAKs raise no expert info at all in
# tshark 4.0, so nothing else needs excusing.)
QUIET_HEURISTIC = ["--disable-protocol", "rpcordma"]


def malformed_frames(pcap):
    cmd = ["tshark", "-r", pcap, "-n", *QUIET_HEURISTIC, "-Y", "_ws.malformed || _ws.expert.severity >= error",
           "-T", "fields", "-e", "frame.number"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()


def check_required(events, require, problems):
    """Each required name (opcode, CM message, NAK, TLS record) appears at least once; a connect
    refused before the server listened does not count (see mark_refused)."""
    seen = {label(e) for e in events if e["kind"] in ("roce", "tls") or (e["kind"] == "cm" and not e["refused"])} - {None}
    for name in [o for o in require.split(",") if o]:
        if name not in seen:
            problems.append(f"no {name} packet (seen: {', '.join(sorted(seen)) or 'none'})")
        else:
            print(f"capture: {name} present")


def check_hello_logs(roce, logs, problems, starts=()):
    """A client log (lesson 01's HELLO, lesson 05's QP_INFO): the first request (SEND,
    RDMA WRITE, RDMA READ, atomic) the client sent to the server's QP carries the PSN the
    client logged, and the server's first request, if it sends any, the server's. Only
    the logged values are used: under TLS the capture cannot show them.

    Logs are given in the order their connections ran, and each connection is looked for
    from the start (`starts`: the first frames of the capture's connections) of the one
    after the previous log's: a QP number may come back in a later connection (the
    userspace runtime numbers each process's QPs from 0x11 again)."""
    after = 0  # frame of the previous connection's first client request
    for log in logs:
        v = log_values(log)
        if v is None:
            problems.append(f"{log}: no 'sending HELLO|QP_INFO' / 'received HELLO|QP_INFO' lines")
            continue
        client_first = after
        for who, direction, dest, psn in (("client", "c>s", v["peer_qpn"], v["own_psn"]),
                                          ("server", "s>c", v["own_qpn"], v["peer_psn"])):
            first = next((e for e in roce if e["decoded"] and e["op"] in REQUEST_OPS
                          and e["dir"] == direction and e["destqp"] == dest
                          and e["frame"] > after), None)
            if first is not None and who == "client":
                client_first = first["frame"]
            if first is None:
                if who == "client":
                    problems.append(f"{log}: no request from the client to QP 0x{dest:06x} in the capture")
                else:
                    print(f"capture: the server sent no requests to QP 0x{dest:06x}")
                continue
            # Lesson 01's wording ("first SEND") when that request is a SEND.
            what = "SEND" if first["op"] in SEND_OPS else f"request ({first['name']})"
            if first["psn"] != psn:
                problems.append(f"{log}: the {who}'s first {what} (frame {first['frame']}) has PSN "
                                f"0x{first['psn']:06x}, but 0x{psn:06x} was logged")
            else:
                print(f"capture: the {who}'s first {what} to QP 0x{dest:06x} (frame {first['frame']}) "
                      f"has PSN 0x{psn:06x}, the PSN it announced")
        # The next log's connection starts after this one's first request.
        after = next((f - 1 for f in sorted(starts) if f > client_first), client_first)


def check_cm_psns(events, problems):
    """RDMA CM: each side's first request (SEND, RDMA WRITE, RDMA READ, atomic) carries
    the Starting PSN its peer announced (see cm_runs for why the peer's)."""
    run_list = runs(events)
    roce = [e for e in events if e["kind"] == "roce" and e["decoded"] and e["op"] in REQUEST_OPS]
    for i, run in enumerate(run_list):
        if run["kind"] != "cm" or not run["server"]:
            continue
        for who, direction, receiver, peer_msg in (("client", "c>s", run["server"], run["server"]["cm"]),
                                                   ("server", "s>c", run["client"], run["client"]["cm"])):
            sender = run["client"] if who == "client" else run["server"]
            first = next((e for e in roce if e["dir"] == direction and run_index(e, run_list) == i), None)
            if first is None:
                # A connection may carry no request at all (a client that leaves at once);
                # the other checks (--require) say whether the capture shows enough.
                print(f"capture: the {who} sent no requests on the connection of frame {run['start']}")
            elif first["psn"] != sender["psn"]:
                problems.append(f"the {who}'s first request (frame {first['frame']}, {first['name']}) has PSN "
                                f"0x{first['psn']:06x}, but the {peer_msg['name']} (frame {peer_msg['frame']}) "
                                f"announced Starting PSN 0x{sender['psn']:06x}")
            else:
                print(f"capture: the {who}'s first request to QP 0x{receiver['qpn']:06x} (frame {first['frame']}, "
                      f"{first['name']}) has PSN 0x{sender['psn']:06x}, the Starting PSN of the "
                      f"{peer_msg['name']} (frame {peer_msg['frame']})")


ADVERTISED = re.compile(r"addr=0x([0-9a-f]+) rkey=0x([0-9a-f]+) length=([0-9]+)")


def advertised_buffers(logs, problems):
    """rkey -> [(addr, length)] from every `addr=0x.. rkey=0x.. length=N` in the logs."""
    buffers = {}
    for log in logs:
        text = open(log, encoding="utf-8", errors="replace").read()
        found = ADVERTISED.findall(text)
        if not found:
            problems.append(f"{log}: no line advertises a buffer (addr=0x.. rkey=0x.. length=N)")
        for addr, rkey, length in found:
            buffers.setdefault(int(rkey, 16), []).append((int(addr, 16), int(length)))
    return buffers


def refusal(ev, events, run_list):
    """The NAK_REMOTE_ACCESS_ERROR with which the responder refused this RETH, if any: it
    travels back on the same connection and carries the PSN of the refused packet (the
    responder checks rkey and bounds on the packet that carries the RETH)."""
    i = run_index(ev, run_list)
    return next((e for e in events if e["kind"] == "roce" and e["decoded"] and e["frame"] > ev["frame"]
                 and e["dir"] != ev["dir"] and e["nak"] == "NAK_REMOTE_ACCESS_ERROR"
                 and e["psn"] == ev["psn"] and run_index(e, run_list) == i), None)


def check_reths(events, logs, problems):
    """Every RETH names an advertised rkey and stays inside that buffer, or was refused."""
    buffers = advertised_buffers(logs, problems)
    run_list = runs(events)
    shown = set()
    for ev in (e for e in events if e["kind"] == "roce" and e["decoded"] and e["op"] in RETH_OPS):
        what = f"frame {ev['frame']} RETH va=0x{ev['va']:x} rkey=0x{ev['rkey']:08x} len={ev['dmalen']}"
        inside = next(((addr, length) for addr, length in buffers.get(ev["rkey"], [])
                       if addr <= ev["va"] and ev["va"] + ev["dmalen"] <= addr + length), None)
        if inside:
            if ev["rkey"] not in shown:
                shown.add(ev["rkey"])
                print(f"capture: {what} lies inside the buffer the server advertised "
                      f"(addr=0x{inside[0]:x} length={inside[1]})")
            continue
        nak = refusal(ev, events, run_list)
        why = "names an rkey no log advertised" if ev["rkey"] not in buffers else "reaches outside the advertised buffer"
        if nak:
            print(f"capture: {what} {why}, and the responder correctly refused it "
                  f"with NAK_REMOTE_ACCESS_ERROR (frame {nak['frame']})")
        else:
            problems.append(f"{what} {why}, and no NAK_REMOTE_ACCESS_ERROR refused it")


def cmd_check(a):
    events = story(a.pcap, a.port)
    roce = [e for e in events if e["kind"] == "roce"]
    cm = [e for e in events if e["kind"] == "cm"]
    tls = [e for e in events if e["kind"] == "tls"]
    problems = []
    bad = malformed_frames(a.pcap)
    if bad:
        problems.append(f"frames {bad[:10]} are malformed or carry expert errors in tshark")
    if not roce:
        problems.append("no RoCE packets (UDP port 4791) in the capture")
    undecoded = [e["frame"] for e in roce if not e["decoded"]]
    if undecoded:
        problems.append(f"frames {undecoded[:10]} on UDP 4791 are not decoded as RRoCE")
    check_required(events, a.require, problems)
    check_hello_logs(roce, a.client_log, problems, [run["start"] for run in runs(events)])
    check_cm_psns(events, problems)
    if a.server_log:
        check_reths(events, a.server_log, problems)
    for p in problems:
        print(f"capture: FAIL {p}")
    if problems:
        return 1
    counts = [f"{len(roce)} RoCE packets"]
    if cm:
        counts.append(f"{len(cm)} CM messages")
    if tls:
        counts.append(f"{len(tls)} TLS records")
    exchange = len(events) - len(roce) - len(cm) - len(tls)
    if (not cm and not tls) or exchange:
        counts.append(f"{exchange} exchange messages")
    print(f"capture: OK ({', '.join(counts)})")
    return 0


def frame_table(lines):
    table = ["| frame | dir | what | size | details |", "|---:|---|---|---:|---|"]
    for ev, text in lines:
        parts = text.split(None, 3)
        d, proto = parts[0], parts[1]
        rest = text.split(proto, 1)[1].strip()
        name, _, tail = rest.partition(" ")
        if ev.get("kind") == "tcp" and ev.get("type") == "BREAK" and "case" in ev:  # "BREAK NAME": two words
            name, tail = f"BREAK {ev['case']}", rest[len("BREAK ") + len(ev["case"]):]
        m = re.match(r"\s*(\d+) B\s*(.*)", tail)
        size, details = (m[1], m[2]) if m else ("", tail.strip())
        table.append(f"| {ev['frame']} | {d} | {proto} {name} | {size} | {details} |")
    return table


def retries(a, events, names):
    """Connection attempts refused before the server listened: TCP RSTs from the exchange
    port before the first HELLO (TLS: ClientHello), plus CM ConnectRequests rejected for
    want of a listener."""
    rst = subprocess.run(["tshark", "-r", a.pcap, "-n", "-Y", f"tcp.flags.reset == 1 && tcp.srcport == {a.port}",
                          "-T", "fields", "-e", "frame.number"], check=True, capture_output=True, text=True)
    first_hello = names["hello_c"]["frame"] if names.get("hello_c") else 0
    if not first_hello:  # lesson 06: before the first QP_INFO; TLS: before the first ClientHello
        first_hello = next((e["frame"] for e in events if (e["kind"] == "tcp" and e["type"] == "QP_INFO")
                            or (e["kind"] == "tls" and e["name"] == "ClientHello")), 0)
    tcp = len([f for f in rst.stdout.split() if int(f) < first_hello])
    return tcp + len([e for e in events if e["kind"] == "cm" and e["attr"] == 0x10 and e["refused"]])


def logged_values(run_list, log_dir):
    """TLS hides the QP details, so {{value:...}} comes from what the client logged:
    client_* from its "sending QP_INFO" (or HELLO) line, server_* from "received ...",
    mtu the smaller of the two; client_send_psn and server_send_psn are the PSNs of each
    side's first request on the first TLS connection (the logged PSNs if it has none;
    check --client-log verifies that they agree)."""
    try:
        v = log_values(f"{log_dir}/client.log")
    except OSError:
        v = None
    if v is None:
        return {}
    nums = {"client_qpn": v["own_qpn"], "server_qpn": v["peer_qpn"], "client_psn": v["own_psn"],
            "server_psn": v["peer_psn"], "client_send_psn": v["own_psn"], "server_send_psn": v["peer_psn"]}
    run = next((r for r in run_list if r["kind"] == "tls" and r["client"] and r["server"]), None)
    if run:
        for who in ("client", "server"):
            if run[who]["psn"] is not None:
                nums[f"{who}_send_psn"] = run[who]["psn"]
    values = {k: f"0x{n:06x}" for k, n in nums.items()}
    mtus = [m for m in (v["own_mtu"], v["peer_mtu"]) if m is not None]
    if mtus:
        values["mtu"] = str(min(mtus))
    return values


def run_values(run_list, log_dir):
    """{{value:NAME}}: the first plaintext or CM connection that got both sides' details;
    without one (TLS), the client log's first exchange and the first TLS run (module doc)."""
    values = {}
    run = next((r for r in run_list if r["kind"] in ("tcp", "cm") and r["client"] and r["server"]), None)
    if run is None:
        values = logged_values(run_list, log_dir)
    if run:
        c, s = run["client"], run["server"]
        if run["kind"] == "tcp":
            psns = {"client_psn": c["psn"], "server_psn": s["psn"]}
            mtu = min(c["mtu"], s["mtu"])
        else:
            psns = {"client_psn": c["cm"]["start_psn"], "server_psn": s["cm"]["start_psn"]}
            mtu = c["mtu"]
        psns.update(client_send_psn=c["psn"], server_send_psn=s["psn"], client_qpn=c["qpn"], server_qpn=s["qpn"])
        values = {k: f"0x{v:06x}" for k, v in psns.items()}
        if mtu is not None:
            values["mtu"] = str(mtu)
    try:
        values["kernel"] = open(f"{log_dir}/kernel-version").read().strip()
    except OSError:
        values["kernel"] = "unknown"
    return values


def tshark_error(stderr):
    """tshark's complaint without its "Running as root" warning."""
    return " ".join(l.strip() for l in stderr.splitlines() if l.strip() and not l.startswith("Running as"))


def frame_field(pcap, frame, field, decode_as=()):
    """tshark's value of FIELD in one frame (first occurrence); an error when absent.
    decode_as: "Decode As" rules (TLS on the exchange port, see tls_records)."""
    rules = [arg for rule in decode_as for arg in ("-d", rule)]
    cmd = ["tshark", "-r", pcap, "-n", *QUIET_HEURISTIC, *rules, "-Y", f"frame.number == {frame}",
           "-T", "fields", "-E", "occurrence=f", "-e", field]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"render: tshark cannot read field {field}: {tshark_error(res.stderr)}")
    value = res.stdout.strip()
    if not value:
        raise SystemExit(f"render: frame {frame} of {pcap} has no {field}")
    return value


def field_type(field):
    """tshark's type of a field (FT_BYTES, FT_UINT32, ...), from its field list."""
    out = subprocess.run(["tshark", "-G", "fields"], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) > 3 and cols[0] == "F" and cols[2] == field:
            return cols[3]
    return None


def first_bytes(value, n, field):
    """The first N bytes of a bytes field's value as "aa bb cc"."""
    if field_type(field) != "FT_BYTES":
        raise SystemExit(f"render: {field} is not a bytes field (tshark type {field_type(field)})")
    data = bytes.fromhex(value.replace(":", ""))
    if len(data) < n:
        raise SystemExit(f"render: {field} has {len(data)} bytes, fewer than {n}")
    return " ".join(f"{b:02x}" for b in data[:n])


WIRE_CHECK = "roce_wire_check.py"  # beside this script: decode, ICRC (by hand and scapy)


def wire_check_module():
    """tests/tools/roce_wire_check.py as a module, for its capture reader and its ICRC code
    (written from IBA Annex A17 and rxe_icrc.c's masks, owing nothing to either sender)."""
    import importlib
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        return importlib.import_module(WIRE_CHECK[:-3])
    finally:
        sys.path.pop(0)


def roce_packets(pcap):
    """frame number -> (frame bytes, IP offset, UDP offset, end of the IP packet) for every
    IPv4 frame to or from UDP port 4791, read by roce_wire_check.py's reader."""
    wc = wire_check_module()
    found = {}
    for n, (linktype, frame) in enumerate(wc.read_frames(pcap), 1):
        ip = wc.ip_offset(linktype, frame)
        if ip is None or frame[ip] >> 4 != 4:
            continue
        where = wc.udp_offsets(frame, ip)
        if where is None:
            continue
        udp, end, _fragmented = where
        if 4791 in struct.unpack_from("!HH", frame, udp):
            found[n] = (frame, ip, udp, end)
    return found


def icrc_ip_id(packet):
    """The IPv4 Identification that makes a packet's ICRC right, found from the ICRC alone,
    as a receiver that cannot see the ID must (userspace-roce/README.md, "Receiving from
    rxe"); None when no ID does. The ICRC is affine in the ID's 16 bits: with ID 0 it is
    c0, and each ID bit k flips a fixed set of its bits, col[k]. The received ICRC xor c0
    must be the xor of the columns of the ID's 1 bits: found here by meeting in the middle
    (256 low bytes x 256 high bytes), not by the runtime's elimination."""
    wc = wire_check_module()
    frame, ip, udp, end = packet

    def icrc_with(ip_id):
        data = bytearray(frame)
        struct.pack_into("!H", data, ip + 4, ip_id)
        return int.from_bytes(wc.icrc(bytes(data), ip, udp, end), "little")

    c0 = icrc_with(0)
    diff = c0 ^ int.from_bytes(frame[end - 4:end], "little")
    cols = [icrc_with(1 << k) ^ c0 for k in range(16)]

    def combos(bits):
        table = {}
        for v in range(256):
            x = 0
            for k in range(8):
                if v >> k & 1:
                    x ^= bits[k]
            table[x] = v
        return table

    low = combos(cols[:8])
    for high, x in combos(cols[8:]).items():
        if diff ^ high in low:
            return x << 8 | low[diff ^ high]
    return None


def rdma_udp_sport(lqpn, rqpn):
    """The UDP source port Linux gives a RoCE v2 QP whose address carries flow label 0:
    include/rdma/ib_verbs.h, rdma_get_udp_sport(0, lqpn, rqpn), which rxe_modify_qp
    (drivers/infiniband/sw/rxe/rxe_verbs.c) calls when the address (IB_QP_AV) is set:
    rdma_calc_flow_label folds the product of both QP numbers to 20 bits, and
    rdma_flow_label_to_udp_sport folds those to 14 bits above 0xC000."""
    v = lqpn * rqpn
    v ^= v >> 20
    v ^= v >> 40
    fl = v & 0xFFFFF
    return ((fl & 0x3FFF) ^ ((fl & 0xFC000) >> 14)) | 0xC000


def parse_direction(arg, what):
    """DIR[:NAME] of the per-direction placeholders -> (DIR, NAME or None)."""
    direction, _, name = arg.partition(":")
    if direction not in ("c>s", "s>c") or (name and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name)):
        raise SystemExit(f"render: {{{{{what}}}}} wants c>s or s>c, optionally :NAME, got '{arg}'")
    return direction, name or None


class Template:
    """Everything a walkthrough template's placeholders draw from."""

    def __init__(self, a):
        self.a = a
        self.events = story(a.pcap, a.port)
        lines = summary_lines(a.pcap, a.port, True, self.events)
        # By event, not frame: one frame may hold several TLS records.
        self.by_event = {id(ev): text for ev, text in lines}
        self.table = frame_table(lines)
        self.decode_as = [f"tcp.port=={a.port},tls"] if any(e["kind"] == "tls" for e in self.events) else []
        self.names = named_frames(self.events)
        self.values = run_values(runs(self.events), a.log_dir)
        self.logs = {}
        self.block = None       # the fenced code block being filled: its first line, or None
        self.last_line = {}     # (block, role) -> (index in ROLE.log, pattern) of the last line shown
        self.fields = {}        # tshark field -> {frame: value} over the RoCE frames
        self.wire = None        # roce_wire_check.py's JSON verdict, once asked for
        self.packets = None     # frame -> raw IPv4 RoCE packet, once asked for

    def event(self, sel):
        return select(self.events, self.names, sel, self.a.pcap)

    def log_line(self, role, pattern):
        if role not in self.logs:
            self.logs[role] = open(f"{self.a.log_dir}/{role}.log", encoding="utf-8",
                                   errors="replace").read().splitlines()
        for index, line in enumerate(self.logs[role]):
            if re.search(pattern, line):
                if self.block is not None:
                    before = self.last_line.get((self.block, role))
                    if before is not None and before[0] > index:
                        raise SystemExit(
                            f"render: in the code block at line {self.block} of the template, /{pattern}/ is "
                            f"line {index + 1} of {role}.log but comes after /{before[1]}/ (line {before[0] + 1}): "
                            f"quote a log's lines in the order it printed them")
                    self.last_line[(self.block, role)] = (index, pattern)
                return line
        raise SystemExit(f"render: no line matching /{pattern}/ in {self.a.log_dir}/{role}.log")

    def field_at(self, arg):
        field, at, sel = arg.partition("@")
        if not at or not field:
            raise SystemExit(f"render: want FIELD@SEL, got '{arg}'")
        return field, frame_field(self.a.pcap, self.event(sel)["frame"], field, self.decode_as)

    def count(self, arg):
        spec, at, sel = arg.partition("@")
        direction, name, k = parse_selector(spec)
        if k is not None:
            raise SystemExit(f"render: {{{{count:{arg}}}}} takes no #K")
        found = matching(self.events, direction, name)
        if at:
            run_list = runs(self.events)
            i = run_of(self.event(sel), run_list)
            found = [e for e in found if run_of(e, run_list) == i]
        return str(len(found))

    def in_flight(self, sel):
        """The most requests of the client on SEL's connection that the capture shows
        unanswered at once: sent, and not yet covered by a positive ACK or a READ
        response of the server carrying their PSN or a later one."""
        run_list = runs(self.events)
        i = run_of(self.event(sel), run_list)
        outstanding, most = [], 0
        for e in self.events:
            if e["kind"] != "roce" or not e["decoded"] or run_index(e, run_list) != i:
                continue
            if e["dir"] == "c>s" and e["op"] in REQUEST_OPS:
                outstanding.append(e["psn"])
                most = max(most, len(outstanding))
            elif e["dir"] == "s>c" and e["op"] in RESPONSE_OPS and not e["nak"]:
                outstanding = [p for p in outstanding if (e["psn"] - p) & 0xFFFFFF >= 0x800000]
        if not most:
            raise SystemExit(f"render: in_flight:{sel}: the client sent no request on that connection")
        return str(most)

    def value(self, name):
        if name == "mtu" and "mtu" not in self.values and "client_qpn" in self.values:
            raise SystemExit(f"render: {self.a.pcap} does not say the path MTU (no MTU in its ConnectRequest)")
        if name not in self.values:
            raise SystemExit(f"render: no value {name} in {self.a.pcap} "
                             f"(have: {', '.join(sorted(self.values))})")
        return self.values[name]

    def roce_in(self, arg, what):
        """The decoded RoCE packets of a direction (and name), in capture order; never none."""
        direction, name = parse_direction(arg, what)
        found = [e for e in self.events if e["kind"] == "roce" and e["decoded"] and e["dir"] == direction
                 and (name is None or label(e) == name)]
        if not found:
            raise SystemExit(f"render: no RoCE packet {arg} in {self.a.pcap}")
        return found

    def field_values(self, field):
        """frame -> tshark's value of FIELD (first occurrence) in every RoCE frame."""
        if field not in self.fields:
            cmd = ["tshark", "-r", self.a.pcap, "-n", *QUIET_HEURISTIC, "-Y", "udp.port == 4791",
                   "-T", "fields", "-E", "occurrence=f", "-e", "frame.number", "-e", field]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"render: tshark cannot read field {field}: {tshark_error(res.stderr)}")
            self.fields[field] = dict((line.split("\t") + [""])[:2] for line in res.stdout.splitlines())
        return self.fields[field]

    def distinct_values(self, arg, every=False):
        """values: each distinct value once; sequence (every): every packet's, in order."""
        what = "sequence" if every else "values"
        field, at, where = arg.partition("@")
        if not at or not field:
            raise SystemExit(f"render: want {what}:FIELD@DIR[:NAME], got '{arg}'")
        got = self.field_values(field)
        seen = []
        for ev in self.roce_in(where, f"{what}:FIELD@DIR[:NAME]"):
            value = got.get(str(ev["frame"]), "")
            if value and (every or value not in seen):
                seen.append(value)
        if not seen:
            raise SystemExit(f"render: no packet {where} of {self.a.pcap} has {field}")
        return ", ".join(seen)

    def acked(self, arg):
        """The frames whose PSNs the positive ACKs sent in this direction name: for each,
        the latest request before it, in the other direction, on the same connection, with
        the ACK's PSN."""
        run_list = runs(self.events)
        frames = []
        for ack in self.roce_in(arg + ":ACK", "acked:DIR"):
            i = run_index(ack, run_list)
            req = [e for e in self.events if e["kind"] == "roce" and e["decoded"] and e["op"] in REQUEST_OPS
                   and e["dir"] != ack["dir"] and e["frame"] < ack["frame"] and e["psn"] == ack["psn"]
                   and run_index(e, run_list) == i]
            if not req:
                raise SystemExit(f"render: the ACK of frame {ack['frame']} names PSN 0x{ack['psn']:06x}, "
                                 f"which no earlier request of its connection carries")
            frames.append(str(req[-1]["frame"]))
        return ", ".join(frames)

    def ackreq_answered(self, arg):
        """The AckReq packets of the other direction, when the ACKs sent in this direction
        answer exactly those, one ACK each, in order; an error otherwise."""
        direction, _ = parse_direction(arg, "ackreq_answered:DIR")
        other = "s>c" if direction == "c>s" else "c>s"
        asked = [f.strip() for f in self.fill_text(f"{{{{ackreq:{other}}}}}").split(",")]
        answered = [f.strip() for f in self.acked(direction).split(",")]
        if asked != answered:
            raise SystemExit(f"render: the ACKs sent {direction} answer frames {', '.join(answered)}, "
                             f"but the packets that asked for one (AckReq) are frames {', '.join(asked)}")
        return ", ".join(asked)

    def fill_text(self, text):
        return re.sub(r"\{\{(.+?)\}\}", self.fill, text)

    def wire_check(self):
        """roce_wire_check.py's verdict on the capture (run once, with /usr/bin/python3,
        which has scapy); a failure is an error: a walkthrough says its ICRCs check."""
        if self.wire is None:
            import json
            import os
            import tempfile
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), WIRE_CHECK)
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "check.json")
                res = subprocess.run(["/usr/bin/python3", script, self.a.pcap, "--json", out],
                                     capture_output=True, text=True)
                if res.returncode != 0 or not os.path.exists(out):
                    raise SystemExit(f"render: {WIRE_CHECK} {self.a.pcap} failed (exit {res.returncode}):\n"
                                     f"{res.stdout}{res.stderr}")
                self.wire = json.load(open(out))
            if self.wire["icrc_bad"] or self.wire["icrc_ok"] != self.wire["roce_packets"]:
                raise SystemExit(f"render: {self.a.pcap}: {len(self.wire['icrc_bad'])} wrong ICRCs")
        return self.wire

    def wire_check_value(self, key):
        value = self.wire_check().get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            numbers = sorted(k for k, v in self.wire_check().items() if isinstance(v, int) and not isinstance(v, bool))
            raise SystemExit(f"render: want wire_check:KEY with KEY one of {', '.join(numbers)}; got '{key}'")
        return str(value)

    def solved_id(self, ev):
        """An event's IPv4 ID as its ICRC alone gives it; an error unless it is the header's."""
        if self.packets is None:
            self.packets = roce_packets(self.a.pcap)
        packet = self.packets.get(ev["frame"])
        if packet is None:
            raise SystemExit(f"render: frame {ev['frame']} of {self.a.pcap} is not an IPv4 RoCE packet")
        solved = icrc_ip_id(packet)
        frame, ip = packet[0], packet[1]
        header = struct.unpack_from("!H", frame, ip + 4)[0]
        if solved != header:
            raise SystemExit(f"render: frame {ev['frame']}: the ICRC gives IPv4 ID "
                             f"{'none' if solved is None else f'0x{solved:04x}'}, the header says 0x{header:04x}")
        return solved

    def rxe_sport(self, sel):
        """The UDP source port rdma_get_udp_sport gives the sender of SEL (its QPN and its
        peer's, from the connection's exchange); an error unless the frame carries it."""
        ev = self.event(sel)
        if ev["kind"] != "roce" or not ev["decoded"]:
            raise SystemExit(f"render: rxe_sport:{sel} is not a RoCE packet")
        run_list = runs(self.events)
        i = run_index(ev, run_list)
        if i is None:
            raise SystemExit(f"render: frame {ev['frame']} belongs to no connection of {self.a.pcap}")
        sender = run_list[i]["server" if ev["dir"] == "s>c" else "client"]
        port = rdma_udp_sport(sender["qpn"], ev["destqp"])
        ports = self.field_values("udp.srcport")
        same_side = [e for e in self.events if e["kind"] == "roce" and e["decoded"] and e["dir"] == ev["dir"]
                     and run_index(e, run_list) == i]
        for e in same_side:
            seen = int(ports.get(str(e["frame"])) or -1)
            if seen != port:
                raise SystemExit(f"render: frame {e['frame']} comes from UDP port {seen}, not {port} "
                                 f"(rdma_get_udp_sport(0, 0x{sender['qpn']:06x}, 0x{ev['destqp']:06x}))")
        return f"QPN 0x{sender['qpn']:06x} to QPN 0x{ev['destqp']:06x}: port {port} (0x{port:04x})"

    def fill(self, m):
        kind, _, arg = m[1].partition(":")
        if kind == "frames":
            return "\n".join(self.table)
        if kind == "frame":
            return self.by_event[id(self.event(arg))]
        if kind == "frameno":
            return str(self.event(arg)["frame"])
        if kind == "field":
            return self.field_at(arg)[1]
        if kind == "bytes":
            n, _, rest = arg.partition(":")
            if not n.isdigit() or int(n) == 0:
                raise SystemExit(f"render: want bytes:N:FIELD@SEL, got '{m[1]}'")
            field, value = self.field_at(rest)
            return first_bytes(value, int(n), field)
        if kind == "count":
            return self.count(arg)
        if kind == "in_flight":
            return self.in_flight(arg)
        if kind == "roce_of":
            run_list = runs(self.events)
            i = run_of(self.event(arg), run_list)
            lines = [f"{e['frame']:>4}  {self.by_event[id(e)]}" for e in self.events
                     if e["kind"] == "roce" and e["decoded"] and run_index(e, run_list) == i]
            if not lines:
                raise SystemExit(f"render: roce_of:{arg}: no RoCE packet on that connection")
            return "\n".join(lines)
        if kind == "retries":
            return str(retries(self.a, self.events, self.names))
        if kind == "log":
            role, _, pattern = arg.partition(":")
            return self.log_line(role, pattern)
        if kind == "value":
            return self.value(arg)
        if kind == "values":
            return self.distinct_values(arg)
        if kind == "sequence":
            return self.distinct_values(arg, every=True)
        if kind == "ackreq_answered":
            return self.ackreq_answered(arg)
        if kind == "requests":
            return str(len([e for e in self.roce_in(arg, "requests:DIR") if e["op"] in REQUEST_OPS]))
        if kind == "ackreq":
            frames = [str(e["frame"]) for e in self.roce_in(arg, "ackreq:DIR") if e["ackreq"]]
            if not frames:
                raise SystemExit(f"render: no packet {arg} of {self.a.pcap} has AckReq set")
            return ", ".join(frames)
        if kind == "acked":
            return self.acked(arg)
        if kind == "wire_check":
            return self.wire_check_value(arg)
        if kind == "icrc_id":
            return f"0x{self.solved_id(self.event(arg)):04x}"
        if kind == "icrc_ids":
            return str(len([self.solved_id(e) for e in self.roce_in(arg, "icrc_ids:DIR")]))
        if kind == "rxe_sport":
            return self.rxe_sport(arg)
        raise SystemExit(f"render: unknown placeholder {{{{{m[1]}}}}}")


def cmd_render(a):
    template = Template(a)
    out = []
    for number, line in enumerate(open(a.template, encoding="utf-8").read().splitlines(keepends=True), 1):
        if line.lstrip().startswith("```"):
            template.block = None if template.block is not None else number
        out.append(re.sub(r"\{\{(.+?)\}\}", template.fill, line))
    sys.stdout.write("".join(out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check"); c.add_argument("pcap"); c.add_argument("--require", default="")
    c.add_argument("--client-log", action="append", default=[])
    c.add_argument("--server-log", action="append", default=[],
                   help="a log whose 'addr=0x.. rkey=0x.. length=N' lines advertise RDMA buffers")
    s = sub.add_parser("summary"); s.add_argument("pcap"); s.add_argument("--exact", action="store_true")
    k = sub.add_parser("compare"); k.add_argument("pcap_a"); k.add_argument("pcap_b")
    r = sub.add_parser("render"); r.add_argument("template"); r.add_argument("pcap"); r.add_argument("--log-dir", required=True)
    for p in (c, s, k, r):
        p.add_argument("--port", type=int, default=18515, help="TCP port of the exchange")
    for p in (s, k):
        p.add_argument("--by-direction", action="store_true",
                       help="without --exact: each stretch of RoCE packets client's first (roce_direction_order)")
        p.add_argument("--without-resends", action="store_true",
                       help="without --exact: requests resent although they had arrived, and repeated answers, left out (without_resends)")
    a = ap.parse_args()
    return {"check": cmd_check, "summary": cmd_summary, "compare": cmd_compare, "render": cmd_render}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
